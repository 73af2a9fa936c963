import CProcessingShims

/// What a frame on a control channel carries.
enum FrameKind: UInt8, Sendable {
    /// Parent → child: the process to run (a `StartRequest`).
    case start = 1
    /// Either way: a `tell`ed message (type name, then the value).
    case message = 2
    /// Parent → child: finish the current run, then `onFinish` and `result`.
    case stop = 3
    /// Child → parent: a `Checkpoint` (the run reached, section timings since the last one,
    /// and, when the process has lives to spare, its state to resume from).
    case checkpoint = 4
    /// Child → parent: the encoded `Output`, then the child exits.
    case result = 5
    /// Child → parent: a `FailureReport`, then the child exits.
    case failure = 6
    /// Child → parent: entering a section the parent times out (section index, then the run
    /// as a varint), or leaving it (the single byte `SectionMarker.left`).
    case section = 7
    /// Parent → pool worker: a work value to keep (`PoolWorkInstall`).
    case work = 8
    /// Parent → pool worker: a batch of items for an installed work (id, work id, encoded items).
    case batch = 9
    /// Pool worker → parent: the outcome of a batch (id, then the work's encoded `BatchReply`).
    case batchReply = 10
}

/// One length-prefixed frame: `[UInt32 LE length of kind + payload][kind][payload]`.
///
/// A frame that carries file descriptors (SCM_RIGHTS, sent with its first byte) has the high
/// bit of its kind byte set, and its payload starts with their count as a varint.
struct Frame: Sendable {
    /// Frames larger than this are refused as malformed rather than allocated.
    static let maximumLength = 1 << 30
    static let headerLength = 4
    static let attachmentsFlag: UInt8 = 0x80

    let kind: FrameKind
    let payload: [UInt8]
    /// How many descriptors came with the frame (read from the wire).
    var attachmentCount = 0
    /// The descriptors that came with the frame, once the channel has matched them.
    var attachments: AttachedDescriptors?

    init(kind: FrameKind, payload: [UInt8], attachmentCount: Int = 0) {
        (self.kind, self.payload, self.attachmentCount) = (kind, payload, attachmentCount)
    }

    /// Builds the wire bytes of a frame with no payload.
    static func encode(_ kind: FrameKind) -> [UInt8] {
        encode(kind) { _ in }
    }

    /// Builds the wire bytes of a frame whose payload `writePayload` appends, with no extra copy.
    /// `attachmentCount` descriptors must be sent with it (`Channel.send(_:attaching:)`).
    static func encode(_ kind: FrameKind, attachmentCount: Int = 0, _ writePayload: (inout [UInt8]) throws -> Void) rethrows -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0, 0, kind.rawValue]
        if attachmentCount > 0 {
            bytes[headerLength] |= attachmentsFlag
            BinaryFormat.appendVarint(UInt64(attachmentCount), to: &bytes)
        }
        try writePayload(&bytes)
        setLength(of: &bytes)
        return bytes
    }

    /// The same frame, announcing `attachmentCount` descriptors (for a frame whose count was
    /// only known once its payload was encoded). Copies the frame; frames with descriptors are rare.
    static func announcing(_ attachmentCount: Int, in frame: [UInt8]) -> [UInt8] {
        guard attachmentCount > 0 else { return frame }
        var bytes = Array(frame[..<(headerLength + 1)])
        bytes[headerLength] |= attachmentsFlag
        BinaryFormat.appendVarint(UInt64(attachmentCount), to: &bytes)
        bytes.append(contentsOf: frame[(headerLength + 1)...])
        setLength(of: &bytes)
        return bytes
    }

    private static func setLength(of bytes: inout [UInt8]) {
        let length = UInt32(bytes.count - headerLength)
        bytes[0] = UInt8(truncatingIfNeeded: length)
        bytes[1] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[3] = UInt8(truncatingIfNeeded: length >> 24)
    }
}

/// A frame ready to send: its bytes and the descriptors that go with it.
struct OutgoingFrame: Sendable {
    let bytes: [UInt8]
    let attachments: AttachedDescriptors?
}

/// A frame that could not be read: what was wrong, for the error the user sees.
struct MalformedFrame: Error, CustomStringConvertible, Sendable {
    let description: String
}

/// Reassembles frames from the bytes a stream socket delivers, in any split.
///
/// A pure state machine: the channel feeds it bytes and gets frames back. Large frames are
/// read straight into their final buffer (`fillBody`) to avoid a second copy.
struct FrameReader {
    /// The length field and the kind byte.
    private static let prefixLength = Frame.headerLength + 1

    private var prefix: [UInt8] = []
    private var kind = FrameKind.message
    private var body: [UInt8] = []
    private var bodyFilled = 0
    private var inFrame = false
    private var hasAttachments = false

    /// Whether the reader is between frames (an EOF here is a clean end).
    var isAtFrameBoundary: Bool { !inFrame && prefix.isEmpty }

    /// How many bytes of the current frame are still missing (0 between frames).
    var missingBodyBytes: Int { inFrame ? body.count - bodyFilled : 0 }

    var partialDescription: String {
        inFrame ? "a truncated frame: \(bodyFilled) of \(body.count) payload bytes arrived"
            : "a truncated frame header: \(prefix.count) of \(Self.prefixLength) bytes arrived"
    }

    /// Feeds bytes in; appends complete frames to `frames`.
    mutating func consume(_ bytes: UnsafeRawBufferPointer, into frames: inout [Frame]) throws(MalformedFrame) {
        var offset = 0
        while offset < bytes.count {
            if !inFrame {
                let taken = min(Self.prefixLength - prefix.count, bytes.count - offset)
                prefix.append(contentsOf: bytes[offset..<offset + taken])
                offset += taken
                guard prefix.count == Self.prefixLength else { return }
                try beginFrame()
                if body.isEmpty { frames.append(try finishFrame()); continue }
            }
            let taken = min(body.count - bodyFilled, bytes.count - offset)
            let filled = bodyFilled
            body.withUnsafeMutableBytes { target in
                target.baseAddress!.advanced(by: filled)
                    .copyMemory(from: bytes.baseAddress!.advanced(by: offset), byteCount: taken)
            }
            bodyFilled += taken
            offset += taken
            if bodyFilled == body.count { frames.append(try finishFrame()) }
        }
    }

    /// Lets a reader fill the current frame's body directly; returns the frame if complete.
    mutating func fillBody(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Frame? {
        let filled = bodyFilled
        let count = try body.withUnsafeMutableBytes { target in
            try read(UnsafeMutableRawBufferPointer(rebasing: target[filled...]))
        }
        bodyFilled += count
        return bodyFilled == body.count ? try finishFrame() : nil
    }

    private mutating func beginFrame() throws(MalformedFrame) {
        let length = Int(prefix[0]) | Int(prefix[1]) << 8 | Int(prefix[2]) << 16 | Int(prefix[3]) << 24
        let rawKind = prefix[4] & ~Frame.attachmentsFlag
        hasAttachments = prefix[4] & Frame.attachmentsFlag != 0
        prefix.removeAll(keepingCapacity: true)
        guard length >= 1, length <= Frame.maximumLength else {
            throw MalformedFrame(description: "a frame header announced \(length) bytes (allowed: 1 to \(Frame.maximumLength))")
        }
        guard let kind = FrameKind(rawValue: rawKind) else {
            throw MalformedFrame(description: "a frame of unknown kind \(rawKind) (announced \(length) bytes)")
        }
        self.kind = kind
        body = [UInt8](repeating: 0, count: length - 1)
        bodyFilled = 0
        inFrame = true
    }

    private mutating func finishFrame() throws(MalformedFrame) -> Frame {
        inFrame = false
        defer { body = [] }
        guard hasAttachments else { return Frame(kind: kind, payload: body) }
        var offset = 0
        guard let count = BinaryFormat.readVarint(body, at: &offset), count > 0, count <= UInt64(PROCESSING_MAX_ATTACHED_FDS) else {
            throw MalformedFrame(description: "a \(kind) frame flagged as carrying descriptors has no valid count of them")
        }
        return Frame(kind: kind, payload: Array(body[offset...]), attachmentCount: Int(count))
    }
}
