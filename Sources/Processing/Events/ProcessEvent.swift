import Foundation

/// Something that happened to a process or a pool worker: its spawn, its start, a crash, a
/// retry, a time-out, a kill, its end.
public struct ProcessEvent: Sendable, CustomStringConvertible {
    /// What happened.
    public enum Kind: Sendable {
        /// A child was spawned for it (the first attempt, a retry, or the child that runs
        /// `error(_:)`).
        case spawned
        /// The child has what it runs: a process's start request was sent, a pool worker said
        /// it is ready.
        case ready
        /// The child died without a result (a signal, or an exit without one): the error has
        /// the cause and its stderr's tail. (A child that broke its channel is killed, and its
        /// process ends with the `ProcessingError` that says why: `exited(error:)`.)
        case crashed(ProcessCrashError)
        /// It was killed on request (`kill()`, a cancelled pool item, `terminate()`).
        case killed
        /// A section ran past its time-out (`ProcessTimeoutError`), a pool batch past its item
        /// time-out (`PoolTimeoutError`), or `joinIn` and its grace passed (`JoinTimeoutError`).
        case timedOut(any Error)
        /// A failure is being retried: attempt `life` of `lives` starts.
        case restarted(life: Int, of: Int)
        /// It ended for good: with its result (`error` nil) or with the error its handle throws.
        /// For a pool worker: its process exited.
        case exited(error: (any Error)?)
        /// `count` events were not delivered to this sequence: its consumer fell 10,000 behind.
        case missed(count: Int)
    }

    /// The process's type name (`Counter`), or `pool worker`.
    public let process: String
    /// The process id of the child the event is about: nil for `restarted` and `exited`
    /// (about the process, not one child), `missed`, and a pool worker not yet spawned.
    public let pid: Int32?
    public let time: Date
    public let kind: Kind

    init(process: String, pid: Int32?, kind: Kind, time: Date = Date()) {
        (self.process, self.pid, self.kind, self.time) = (process, pid, kind, time)
    }

    /// `Counter[4242] crashed: killed by SIGSEGV (signal 11)`.
    public var description: String {
        let who = pid.map { "\(process)[\($0)]" } ?? process
        switch kind {
        case .spawned: return "\(who) spawned"
        case .ready: return "\(who) ready"
        case .crashed(let error): return "\(who) crashed: \(error.cause)"
        case .killed: return "\(who) killed"
        case .timedOut(let error): return "\(who) timed out: \(error)"
        case .restarted(let life, let lives): return "\(who) restarted: life \(life) of \(lives)"
        case .exited(let error?): return "\(who) exited with an error: \(error)"
        case .exited(nil): return "\(who) exited"
        case .missed(let count): return "\(process): \(count) events missed"
        }
    }
}
