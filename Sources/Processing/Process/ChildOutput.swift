/// What happens to what a child writes to its stdout or its stderr (`ProcessConfig.stdout`,
/// `ProcessConfig.stderr`, and a pool's).
public enum ChildOutput: Sendable, Codable, Equatable {
    /// As the child writes it: stdout straight to this process's stdout (a line at a time: a
    /// worker line-buffers its stdout), stderr forwarded byte for byte to this process's
    /// stderr. Lines of several children can then interleave with the program's own.
    case inherit
    /// Line by line to this process's own stream, each line prefixed by the process's name and
    /// pid (`Worker[4242]: hello`). Lines are never cut or interleaved with another child's.
    /// The default.
    case forward
    /// Kept, up to 1 MiB per stream (what comes after is counted, not kept), and readable once
    /// the process has ended: `ProcessHandle.capturedOutput`, `Pool.capturedOutput`.
    case capture
    /// Thrown away.
    case discard
}

/// What a process (across its retries) or a pool's workers wrote to the streams set to
/// `.capture`.
public struct CapturedOutput: Sendable, Equatable {
    /// The most bytes kept per stream.
    public static let limit = 1 << 20

    /// What was written to stdout, as UTF-8 (invalid bytes replaced).
    public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    /// What was written to stderr, as UTF-8 (invalid bytes replaced).
    public var stderr: String { String(decoding: stderrBytes, as: UTF8.self) }
    /// Bytes written past `limit`, not kept.
    public private(set) var droppedBytes = 0

    private var stdoutBytes: [UInt8] = []
    private var stderrBytes: [UInt8] = []

    /// Nothing captured.
    public init() {}

    mutating func append(_ bytes: UnsafeRawBufferPointer, toStderr: Bool) {
        let count = toStderr ? stderrBytes.count : stdoutBytes.count
        let kept = min(bytes.count, Self.limit - count)
        if toStderr {
            stderrBytes.append(contentsOf: bytes[..<kept])
        } else {
            stdoutBytes.append(contentsOf: bytes[..<kept])
        }
        droppedBytes += bytes.count - kept
    }

    mutating func append(_ other: CapturedOutput) {
        other.stdoutBytes.withUnsafeBytes { append($0, toStderr: false) }
        other.stderrBytes.withUnsafeBytes { append($0, toStderr: true) }
        droppedBytes += other.droppedBytes
    }

    var isEmpty: Bool { stdoutBytes.isEmpty && stderrBytes.isEmpty && droppedBytes == 0 }
}
