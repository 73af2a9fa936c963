import Foundation

/// One `log(_:level:)` call, as the main process receives it.
public struct LogEntry: Sendable, Codable, Equatable {
    /// The name of the process that logged it: its type's name (`Counter`), `pool worker`
    /// for pool work, or `main` for the main process.
    public var process: String
    /// The process id of the process that logged it.
    public var pid: Int32
    public var level: LogLevel
    /// When it was logged, by the clock of the process that logged it.
    public var time: Date
    public var message: String

    /// Creates an entry (for a handler's tests, or to log on a process's behalf).
    public init(process: String, pid: Int32, level: LogLevel, time: Date = Date(), message: String) {
        (self.process, self.pid, self.level, self.time, self.message) = (process, pid, level, time, message)
    }

    /// The line the default handler writes: `Counter[4242] info: ready`.
    public var line: String { "\(process)[\(pid)] \(level): \(message)" }
}
