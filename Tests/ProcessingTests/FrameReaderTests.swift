import Testing
@testable import Processing

/// The frame reader alone: untrusted bytes in any split, no process needed.
@Suite("Frames: reassembly from untrusted bytes")
struct FrameReaderTests {
    private func header(length: Int, kind: FrameKind) -> [UInt8] {
        [UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
         UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24), kind.rawValue]
    }

    @Test("a header announcing 1 GiB costs at most the initial buffer until the bytes arrive")
    func announcedIsNotAllocated() throws {
        var reader = FrameReader()
        var frames: [Frame] = []
        let bytes = header(length: (1 << 30) - 1, kind: .message) + Array(repeating: 9, count: 10)
        try bytes.withUnsafeBytes { try reader.consume($0, into: &frames) }
        #expect(frames.isEmpty)
        #expect(reader.bufferedCapacity <= FrameReader.initialBodyCapacity)
        #expect(reader.missingBodyBytes == (1 << 30) - 2 - 10)
    }

    @Test("a large frame grows its buffer as its bytes arrive, and arrives intact")
    func growsWithTheBytes() throws {
        let payload = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bytes = header(length: payload.count + 1, kind: .message) + payload
        var reader = FrameReader()
        var frames: [Frame] = []
        var offset = 0
        var largest = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + 300_000)
            try bytes[offset..<end].withUnsafeBytes { try reader.consume($0, into: &frames) }
            largest = max(largest, reader.bufferedCapacity)
            if frames.isEmpty { #expect(reader.bufferedCapacity <= max(FrameReader.initialBodyCapacity, 2 * (end - 5))) }
            offset = end
        }
        #expect(frames.count == 1)
        #expect(frames.first?.payload == payload)
        #expect(largest <= payload.count)
    }

    @Test("a header over the limit is refused at once, naming the size and the limit")
    func overTheLimit() throws {
        var reader = FrameReader()
        var frames: [Frame] = []
        let bytes = header(length: ProcessingLimits.maximumMessageSize + 1, kind: .message)
        #expect {
            try bytes.withUnsafeBytes { try reader.consume($0, into: &frames) }
        } throws: { error in
            let text = (error as? MalformedFrame)?.description ?? ""
            return text.contains("\(ProcessingLimits.maximumMessageSize + 1)") && text.contains("maximumMessageSize")
        }
    }
}
