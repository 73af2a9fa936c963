/// How much a log entry matters, from `debug` to `error`.
public enum LogLevel: Int, Sendable, Codable, Comparable, CaseIterable, CustomStringConvertible {
    /// Detail for finding a fault.
    case debug
    /// What happened, in the normal course.
    case info
    /// Worth a look, not wrong.
    case notice
    /// Something unexpected the process recovered from.
    case warning
    /// Something failed.
    case error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The level's name, as the default handler writes it.
    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        }
    }
}
