/// Why an `EventGroup` operation failed. Its `description` says what to do.
public struct EventGroupError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure this is.
    public enum Code: String, Sendable, Codable {
        /// Every event of the group is reserved.
        case exhausted
        /// An index outside the group, or a group size out of range.
        case invalidIndex
        /// The process that was to set the event ended without setting it.
        case setterEnded
        /// A `SyncIndex` was not set within its time-out.
        case timedOut
        /// The shared memory or the events could not be made (descriptors ran out, say).
        case unavailable
    }

    /// What kind of failure this is.
    public let code: Code
    /// What happened and what to do.
    public let message: String

    /// Creates an error with a code and a message that says what to do.
    public init(_ code: Code, _ message: String) {
        (self.code, self.message) = (code, message)
    }

    /// `EventGroupError(exhausted): …`.
    public var description: String { "EventGroupError(\(code.rawValue)): \(message)" }
}
