import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Logs `message` so that the main process receives it: from any hook of an `Skprocess`, pool
/// work, a pool closure, or the main process itself.
///
/// In a child the entry goes to the main process over the process's control channel, in order
/// with everything else the process sends (its `tell`s, its result); it is written to the
/// socket before `log` returns whenever the socket has room (1 MiB), so entries logged just
/// before a crash still arrive. `log` never waits: if the parent has stopped reading and the
/// socket is full, the entry is queued in the child. The main process hands each entry to
/// its handler (`ProcessLog.setHandler(_:)`); by default a line on stderr:
///
/// ```swift
/// struct Worker: Skprocess {
///     mutating func run() async throws {
///         log("ready")                          // Worker[4242] info: ready
///         log("disk nearly full", level: .warning)
///     }
/// }
/// ```
///
/// Entries below `ProcessLog.minimumLevel` (as it was when the process started) cost one
/// comparison: `message` is not even built.
public func log(_ message: @autoclosure () -> String, level: LogLevel = .info) {
    guard level >= ProcessLog.minimumLevel else { return }
    let entry = LogEntry(process: ProcessLog.ownName, pid: getpid(), level: level, time: Date(), message: message())
    if let context = WorkerContext.active {
        context.post(entry)
    } else {
        LogDelivery.shared.deliver(entry)
    }
}

/// Where the main process sends log entries, and which it keeps.
///
/// ```swift
/// ProcessLog.minimumLevel = .debug
/// ProcessLog.setHandler { entry in
///     myLogger.log(level: entry.level, "\(entry.process)[\(entry.pid)]: \(entry.message)")
/// }
/// ```
///
/// The handler runs on one serial queue of its own, one entry at a time, in the order the
/// entries arrived (so in order per process); a slow handler holds up no process. If it falls
/// more than 4 MiB or 10,000 entries behind, further entries are dropped, counted, and the
/// count is reported once in an entry of `process` `Processing` when it catches up.
public enum ProcessLog {
    /// The default: one line per entry on stderr (`Counter[4242] info: ready`).
    public static let standardError: @Sendable (LogEntry) -> Void = { entry in
        OutputForwarder.standardError.forward(line: entry.line)
    }

    /// Entries below this level are not logged. Set it in the main process before starting
    /// processes: a child keeps the level it was started with. Default `.info`.
    public static var minimumLevel: LogLevel {
        get { LogDelivery.shared.minimumLevel }
        set { LogDelivery.shared.minimumLevel = newValue }
    }

    /// Sends every entry to `handler` from now on (entries of this process and of its
    /// children). `nil` restores the default (`standardError`).
    ///
    /// In a child, entries logged by its own children go to the child's handler if it set
    /// one, and otherwise on to its parent, keeping their process's name and pid.
    public static func setHandler(_ handler: (@Sendable (LogEntry) -> Void)?) {
        LogDelivery.shared.setHandler(handler)
    }

    /// Waits until every entry received so far has been handed to the handler.
    public static func flush() async {
        await LogDelivery.shared.flush()
    }

    /// What this process's own entries are tagged with: its process type's name in a child
    /// that runs one, `pool worker` in a pool worker, `main` in the main process.
    static var ownName: String { LogDelivery.shared.ownName }
}
