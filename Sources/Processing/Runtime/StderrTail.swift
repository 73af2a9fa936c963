/// What a child wrote to stderr, kept for the error that reports its crash: the last few KiB,
/// and the line that says why it died (a `fatalError`'s "Fatal error: …"), which a long stack
/// trace after it would otherwise push out of the tail.
///
/// A pure value fed bytes in any split; memory stays bounded whatever the child writes.
struct StderrTail: Sendable {
    /// How much of the end of a child's stderr is kept.
    static let limit = 4096
    /// The longest line kept as the crash message (and the longest partial line held).
    static let lineLimit = 1024

    /// Lines that say why a Swift program died. The runtime prefixes them with the file and
    /// line (`main.swift:12: Fatal error: boom`), so they are matched anywhere in the line.
    private static let crashMarkers = [
        "Fatal error:", "Precondition failed:", "Assertion failed:", "Could not cast value",
        "Simultaneous accesses to", "Program crashed:", "Processing: the reactor",
    ]

    private(set) var bytes: [UInt8] = []
    /// The last line that said why the process died, if any did.
    private(set) var crashLine: String?
    /// How many stack frame lines followed `crashLine`.
    private(set) var framesAfterCrashLine = 0
    private var line: [UInt8] = []

    var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: chunk)
        if bytes.count > Self.limit { bytes.removeFirst(bytes.count - Self.limit) }
        for byte in chunk {
            if byte == UInt8(ascii: "\n") {
                finishLine()
            } else if line.count < Self.lineLimit {
                line.append(byte)
            }
        }
    }

    private mutating func finishLine() {
        defer { line.removeAll(keepingCapacity: true) }
        let text = String(decoding: line, as: UTF8.self)
        if Self.crashMarkers.contains(where: text.contains) {
            crashLine = text.trimmingWhitespace
            framesAfterCrashLine = 0
        } else if crashLine != nil, Self.isStackFrame(text) {
            framesAfterCrashLine += 1
        }
    }

    /// A line of a stack trace: the runtime's ("3    libswiftCore.so    0x… _assertionFailure")
    /// or the backtracer's ("  3 [ra] 0x… in Foo").
    static func isStackFrame(_ line: some StringProtocol) -> Bool {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        guard let first = trimmed.first, first.isASCII, first.isNumber else { return false }
        let afterNumber = trimmed.drop { $0.isASCII && $0.isNumber }
        return afterNumber.first == " " || afterNumber.first == "\t"
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
