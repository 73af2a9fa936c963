/// Why a relay failed: the stage that failed first, and how.
///
/// When one stage fails, the relay stops every other one (killed, and reaped) and throws this
/// for the stage whose failure came first; the failures it caused downstream and upstream
/// (connections that ended early) are not reported in its place.
public struct RelayError: Error, Sendable, CustomStringConvertible {
    /// The stage's name: its actor's type, with `#index` in a group of several ("Square#1").
    public let stage: String
    /// The hook that threw (`"recv(_:)"`), or nil when the stage's process crashed or was
    /// killed (a signal, an exit, a time-out).
    public let hook: String?
    /// What the hook threw (a `RemoteError`, whose `value` is the error itself when its type
    /// is `Codable`), or the stage process's failure (a `ProcessError`, such as
    /// `ProcessCrashError` with the signal and the end of its stderr).
    public let underlying: any Error

    /// Creates the error for `stage`.
    public init(stage: String, hook: String?, underlying: any Error) {
        (self.stage, self.hook, self.underlying) = (stage, hook, underlying)
    }

    /// A readable account of the error.
    public var description: String {
        if let hook { return "the relay stage \(stage) failed: its \(hook) threw \(underlying)" }
        return "the relay stage \(stage) failed: \(underlying)"
    }
}
