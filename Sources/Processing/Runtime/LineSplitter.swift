/// Cuts a stream of bytes into lines, in any split: a pure value fed chunks, handing back each
/// complete line with its newline. A partial line is held until its end comes, up to
/// `lineLimit` bytes; a longer one is handed back in pieces of that size (each ended with a
/// newline), so that memory stays bounded whatever a child writes.
struct LineSplitter {
    static let lineLimit = 64 * 1024

    private var partial: [UInt8] = []

    /// Calls `line` with each line `chunk` completes (newline included).
    mutating func feed(_ chunk: UnsafeRawBufferPointer, line: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        while start < chunk.count {
            let rest = UnsafeRawBufferPointer(rebasing: chunk[start...])
            guard let newline = rest.firstIndex(of: UInt8(ascii: "\n")) else {
                hold(rest, line: line)
                return
            }
            let end = start + newline + 1
            if partial.isEmpty {
                line(UnsafeRawBufferPointer(rebasing: chunk[start..<end]))
            } else {
                hold(UnsafeRawBufferPointer(rebasing: chunk[start..<end]), line: line)
                emitPartial(line)
            }
            start = end
        }
    }

    /// The stream ended: the last line, if it had no newline, with one added.
    mutating func finish(line: (UnsafeRawBufferPointer) -> Void) {
        guard !partial.isEmpty else { return }
        partial.append(UInt8(ascii: "\n"))
        emitPartial(line)
    }

    private mutating func hold(_ bytes: UnsafeRawBufferPointer, line: (UnsafeRawBufferPointer) -> Void) {
        var bytes = bytes
        // A line's own newline does not count against the limit (a line of exactly the limit
        // must not leave an empty one behind).
        let newline = bytes.last == UInt8(ascii: "\n") ? 1 : 0
        while partial.count + bytes.count - newline > Self.lineLimit {
            let take = Self.lineLimit - partial.count
            partial.append(contentsOf: bytes[..<take])
            partial.append(UInt8(ascii: "\n"))
            emitPartial(line)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[take...])
        }
        partial.append(contentsOf: bytes)
    }

    private mutating func emitPartial(_ line: (UnsafeRawBufferPointer) -> Void) {
        partial.withUnsafeBytes { line($0) }
        partial.removeAll(keepingCapacity: partial.count <= 4096)
    }
}
