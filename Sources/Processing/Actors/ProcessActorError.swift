/// Why a call to an actor of a `ProcessActorSystem` failed, when it was not the actor's own
/// error and not its process's crash (`ProcessCrashError`). Its `description` names the actor
/// and says what to do.
public struct ProcessActorError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure this is.
    public enum Code: String, Sendable, Codable {
        /// The process that hosts the actor has ended (stopped, or killed); the actor is gone.
        case processEnded
        /// The call did not return within its time-out; it was cancelled in the child.
        case callTimedOut
        /// The process hosting the actor is stopping: it finishes the calls it has and takes no
        /// new ones.
        case stopping
        /// No actor with this ID lives in the process the call reached (it was released, or
        /// the ID is from another run).
        case actorNotFound
        /// The ID names an actor this process has no connection to (an actor of a sibling
        /// process, say: a child reaches its own actors and those of its parent).
        case unreachable
        /// The operation needs an actor process spawned by this system (or a child's system).
        case invalidUse
        /// The call or its reply did not cross: a value did not encode or decode, or the
        /// method is not one the other side has (another build of the program).
        case callFailed
    }

    /// What kind of failure this is.
    public let code: Code
    /// What happened, naming the actor, and what to do.
    public let message: String

    /// Creates an error with a code and a message that says what to do.
    public init(_ code: Code, _ message: String) {
        (self.code, self.message) = (code, message)
    }

    /// `ProcessActorError(callTimedOut): …`.
    public var description: String { "ProcessActorError(\(code.rawValue)): \(message)" }
}
