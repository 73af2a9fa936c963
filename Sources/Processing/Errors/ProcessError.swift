#if canImport(Glibc)
import Glibc
#endif

/// The sections of a process's lifecycle, in the order they run.
public enum ProcessSection: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case prerun, run, postrun, onFinish, result, error

    /// A readable account of the error or value.
    public var description: String { rawValue }
}

/// Why a process failed. Every kind carries the run it failed in and, where the failure was
/// an error thrown by your code, that error (`underlying`).
///
/// Catch the protocol for any failure (`catch let error as ProcessError`) or a kind for one
/// section (`catch let error as RunError`).
public protocol ProcessError: Error, Sendable, CustomStringConvertible {
    /// The run the process was in when it failed (0-based).
    var currentRun: Int { get }
    /// The error your code threw, when there was one.
    var underlying: RemoteError? { get }
}

/// A failure in one lifecycle hook: the hook threw `underlying` during run `currentRun`.
public protocol SectionError: ProcessError {
    /// The hook that threw.
    static var section: ProcessSection { get }
    /// Creates the error for a throw in `section` during run `currentRun`.
    init(currentRun: Int, underlying: RemoteError?)
}

extension SectionError {
    /// A readable account of the error or value.
    public var description: String {
        let cause = underlying.map { ": \($0)" } ?? ""
        return "\(Self.self): \(Self.section)() failed in run \(currentRun)\(cause)"
    }
}

/// `prerun()` threw.
public struct PreRunError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .prerun }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// `run()` threw.
public struct RunError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .run }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// `postrun()` threw.
public struct PostRunError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .postrun }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// `onFinish()` threw.
public struct OnFinishError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .onFinish }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// `result()` threw.
public struct ResultError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .result }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// `error(_:)` threw something other than the `ProcessError` it was given.
public struct ErrorHandlerError: SectionError {
    /// The hook this kind of error comes from.
    public static var section: ProcessSection { .error }
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// The error the hook threw.
    public let underlying: RemoteError?
    /// Creates the error for a throw during run `currentRun`.
    public init(currentRun: Int, underlying: RemoteError?) { (self.currentRun, self.underlying) = (currentRun, underlying) }
}

/// A section ran longer than its `ProcessConfig.timeouts` allowed; the parent killed the child.
public struct ProcessTimeoutError: ProcessError, Codable {
    /// The section that overran.
    public let section: ProcessSection
    /// The limit it overran.
    public let timeout: Duration
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// Always nil: this failure is not an error thrown by your code.
    public var underlying: RemoteError? { nil }

    /// Creates the error for `section` overrunning `timeout` in run `currentRun`.
    public init(section: ProcessSection, timeout: Duration, currentRun: Int) {
        (self.section, self.timeout, self.currentRun) = (section, timeout, currentRun)
    }

    /// A readable account of the error or value.
    public var description: String {
        "ProcessTimeoutError: \(section)() ran past its timeout of \(timeout) in run \(currentRun); the process was killed"
    }
}

/// An operation given a time-out with the `timeout(_:)` modifier did not finish in time
/// (`try await handle.result.timeout(.seconds(10))()`). The operation was cancelled; the
/// process itself keeps running (end it with `kill()`, or bound its sections with
/// `ProcessConfig.timeouts`).
public struct ResultTimeoutError: ProcessError {
    /// The operation that timed out (`"result"`, `"wait"`, `"listen"`, ...).
    public let operation: String
    /// The time-out that passed.
    public let timeout: Duration
    /// The run the process was in when the time-out passed (0-based); 0 where no process applies.
    public let currentRun: Int
    /// Always nil: this failure is not an error thrown by your code.
    public var underlying: RemoteError? { nil }

    /// Creates the error for `operation` outlasting `timeout`.
    public init(operation: String, timeout: Duration, currentRun: Int) {
        (self.operation, self.timeout, self.currentRun) = (operation, timeout, currentRun)
    }

    /// A readable account of the error or value.
    public var description: String {
        "ResultTimeoutError: \(operation) did not finish within \(timeout) (the process was in run \(currentRun))"
    }
}

/// `joinIn` asked the process to stop, and it was still running `grace` later (a run that never
/// ends, a child stopped with SIGSTOP): the parent killed it. Final: no retry follows, and
/// `error(_:)` does not run.
public struct JoinTimeoutError: ProcessError, Codable {
    /// The process's `joinIn`: the most time it had in all.
    public let joinIn: Duration
    /// How long it had to stop after `joinIn` passed (`ProcessConfig.joinGrace`).
    public let grace: Duration
    /// The run the process was in when it was killed (0-based).
    public let currentRun: Int
    /// Always nil: this failure is not an error thrown by your code.
    public var underlying: RemoteError? { nil }

    /// Creates the error for a process still running `grace` after its `joinIn`.
    public init(joinIn: Duration, grace: Duration, currentRun: Int) {
        (self.joinIn, self.grace, self.currentRun) = (joinIn, grace, currentRun)
    }

    /// A readable account of the error.
    public var description: String {
        "JoinTimeoutError: the process was still running \(grace) after its joinIn of \(joinIn) asked it to stop, in run \(currentRun); it was killed"
    }
}

/// The child process ended without a result: it crashed (a signal such as `SIGSEGV`, a
/// `fatalError`'s `SIGILL`/`SIGTRAP`), was killed (by `kill()` or from outside), or exited.
public struct ProcessCrashError: ProcessError, Codable {
    /// How the child ended.
    public enum Cause: Sendable, Equatable, Codable, CustomStringConvertible {
        /// Killed by this signal number.
        case signal(Int32)
        /// Exited with this status without sending a result.
        case exit(Int32)
        /// Ended by `kill()` on its handle.
        case killed
        /// Ended without a result, and how is unknown: the kernel discarded its exit status,
        /// because this program ignores SIGCHLD (`sigchldIgnored`), or something else reaped it.
        case statusUnavailable(sigchldIgnored: Bool)

        /// A readable account of the error or value.
        public var description: String {
            switch self {
            case .signal(let number): "killed by \(Syscall.signalName(number)) (signal \(number))"
            case .exit(let status): "exited with status \(status) without a result"
            case .killed: "ended by kill(); a killed process has no result"
            case .statusUnavailable(true):
                "ended without a result, and its exit status is unknown: this program ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel discards children's exit statuses; leave SIGCHLD at its default to learn how a child ended"
            case .statusUnavailable(false):
                "ended without a result, and its exit status is unknown: something else in this program reaped it (a waitpid(-1, ...))"
            }
        }
    }

    /// How the child ended.
    public let cause: Cause
    /// The last lines the child wrote to stderr (a `fatalError` message, for instance).
    public let stderrTail: String
    /// The line of the child's stderr that said why it died (`…: Fatal error: boom`), if one
    /// did; kept even when a long stack trace followed it.
    public let crashMessage: String?
    /// How many stack frame lines the child printed after `crashMessage`.
    public let stackFrameCount: Int
    /// The process type's name.
    public let processName: String
    /// The run the process was in when it failed (0-based).
    public let currentRun: Int
    /// For a pool worker: the positions in the map's input of the items it was running.
    public internal(set) var items: ClosedRange<Int>?
    /// Always nil: this failure is not an error thrown by your code.
    public var underlying: RemoteError? { nil }

    /// Creates the error for a child that ended without a result.
    public init(cause: Cause, stderrTail: String, processName: String, currentRun: Int) {
        var tail = StderrTail()
        Array(stderrTail.utf8).withUnsafeBytes { tail.append($0) }
        self.init(cause: cause, stderr: tail, processName: processName, currentRun: currentRun)
    }

    init(cause: Cause, stderr: StderrTail, processName: String, currentRun: Int) {
        (self.cause, self.processName, self.currentRun) = (cause, processName, currentRun)
        stderrTail = stderr.text
        crashMessage = stderr.crashLine
        stackFrameCount = stderr.framesAfterCrashLine
    }

    /// The signal that ended the child, if a signal did.
    public var signal: Int32? {
        if case .signal(let number) = cause { return number }
        return nil
    }

    /// A readable account of the error: how the child ended, the message it died with and
    /// the last lines it wrote that are not stack frames.
    public var description: String {
        var text = "ProcessCrashError: \(processName) \(cause) "
        if let items {
            text += items.count == 1 ? "while running item \(items.lowerBound)" : "while running items \(items.lowerBound)–\(items.upperBound)"
        } else {
            text += "during run \(currentRun)"
        }
        if let crashMessage {
            text += ": \(crashMessage)"
            if stackFrameCount > 0 { text += " (then a stack trace of \(stackFrameCount) frames)" }
        }
        let lines = stderrTail.split(separator: "\n", omittingEmptySubsequences: true)
            .filter { !StderrTail.isStackFrame($0) && $0.trimmingWhitespace != crashMessage && $0 != "Current stack trace:" }
            .suffix(5)
        if !lines.isEmpty { text += "; its last stderr lines:\n" + lines.joined(separator: "\n") }
        return text
    }
}
