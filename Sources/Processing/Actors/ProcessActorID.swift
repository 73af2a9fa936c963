/// Names a distributed actor of a `ProcessActorSystem`: the system (one per process) that
/// hosts it, and its number there.
///
/// IDs cross between processes as they are, so an actor reference can be passed to, or
/// returned from, a distributed func: the other side resolves it to a proxy whose calls
/// travel back to the host.
public struct ProcessActorID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The hosting system's number: drawn at random when the system is made, so that an ID
    /// never names an actor of a process that has ended and whose pid was reused.
    public let host: UInt64
    /// The actor's number in its host, from 1.
    public let number: UInt64

    /// An ID for actor `number` of the system `host`.
    public init(host: UInt64, number: UInt64) {
        (self.host, self.number) = (host, number)
    }

    /// `actor 1 of host 3f2a…`.
    public var description: String {
        "actor \(number) of host \(String(host, radix: 16))"
    }
}
