import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Hands log entries to the handler, on a serial queue of its own, within a bound.
///
/// Entries come from the reactor thread (a child's frames) and from any thread (this process's
/// own `log` calls); neither may wait for a handler, and nothing a child sends may grow this
/// process without bound, so what is queued is bounded in bytes and count, and what is
/// dropped past that is counted and reported once the handler catches up.
final class LogDelivery: Sendable {
    static let shared = LogDelivery()

    /// At most this many bytes of messages wait for the handler…
    static let byteLimit = 4 << 20
    /// …and at most this many entries.
    static let countLimit = 10_000

    private struct State {
        var handler: (@Sendable (LogEntry) -> Void)?
        var minimumLevel = LogLevel.info
        var ownName = "main"
        var pendingBytes = 0
        var pendingCount = 0
        var dropped = 0
    }

    private let state = Mutex(State())
    /// Made on first use (a static is lazy): a child that only logs to its parent never
    /// starts Dispatch for it, which cost a worker's start 0.8 ms (15 %) when it did.
    private static let queue = DispatchQueue(label: "processing.log")

    var minimumLevel: LogLevel {
        get { state.withLock { $0.minimumLevel } }
        set { state.withLock { $0.minimumLevel = newValue } }
    }

    var ownName: String {
        get { state.withLock { $0.ownName } }
        set { state.withLock { $0.ownName = newValue } }
    }

    func setHandler(_ handler: (@Sendable (LogEntry) -> Void)?) {
        state.withLock { $0.handler = handler }
    }

    private enum Route {
        /// In a child whose process set no handler: on to the parent.
        case forward(WorkerContext)
        case queue
        case drop
    }

    /// An entry from a child or from this process: to the handler, or (in a child that set
    /// none) on to the parent.
    func deliver(_ entry: LogEntry) {
        let cost = entry.message.utf8.count + entry.process.utf8.count
        let route: Route = state.withLock { state in
            if state.handler == nil, let context = WorkerContext.active { return .forward(context) }
            guard state.pendingCount < Self.countLimit, state.pendingBytes + cost <= Self.byteLimit else {
                state.dropped += 1
                return .drop
            }
            state.pendingCount += 1
            state.pendingBytes += cost
            return .queue
        }
        switch route {
        case .forward(let context): context.post(entry)
        case .drop: break
        case .queue:
            Self.queue.async { [self] in
                let (handler, dropped) = state.withLock { state in
                    state.pendingCount -= 1
                    state.pendingBytes -= cost
                    defer { state.dropped = 0 }
                    return (state.handler ?? ProcessLog.standardError, state.dropped)
                }
                handler(entry)
                if dropped > 0 {
                    handler(LogEntry(process: "Processing", pid: getpid(), level: .warning, message: """
                        \(dropped) log entries were dropped: the log handler fell more than \
                        \(Self.countLimit) entries or \(Self.byteLimit >> 20) MiB behind
                        """))
                }
            }
        }
    }

    func flush() async {
        await withCheckedContinuation { continuation in
            Self.queue.async { continuation.resume() }
        }
    }
}
