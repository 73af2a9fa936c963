import Synchronization

/// One end of a connection between two relay stages (or a stage and the parent), as it
/// travels in a stage's start state: its socket crosses as an attached descriptor, like a
/// pipe point, and is closed in the parent once handed over (so that when the child dies its
/// peer sees the end).
final class RelayLinkEnd: Codable, Sendable {
    /// Who is at the other end, for errors ("Square#1", "the parent").
    let peer: String
    private let descriptor: Mutex<Int32?>

    /// Takes ownership of `fd`.
    init(fd: consuming FileDescriptor, peer: String) {
        self.peer = peer
        descriptor = Mutex(fd.release())
    }

    /// A copy of `other`'s descriptor, kept while the original is handed over.
    init(duplicating other: RelayLinkEnd) throws {
        guard let fd = other.descriptor.withLock({ $0 }) else {
            throw ProcessingError(.invalidState, "a relay connection to \(other.peer) was already handed over")
        }
        peer = other.peer
        descriptor = Mutex(try Syscall.duplicate(fd))
    }

    deinit {
        if let fd = descriptor.withLock({ $0 }) { Syscall.close(fd) }
    }

    /// The descriptor, now owned by the caller (a channel); nil if taken already.
    func take() -> Int32? {
        descriptor.withLock { fd in
            defer { fd = nil }
            return fd
        }
    }

    /// The descriptor, made ready for a channel (`Channel.prepare`) and now owned by the
    /// caller; `connection` names it in errors ("from Numbers to Square").
    func takeForChannel(_ connection: String) throws -> Int32 {
        guard let fd = take() else {
            throw ProcessingError(.invalidState, "the relay connection \(connection) was used already")
        }
        do {
            try Channel.prepare(fd)
        } catch {
            Syscall.close(fd)
            throw ProcessingError(.channelClosed, "the relay connection \(connection) is unusable: \(error)", causedBy: error)
        }
        return fd
    }

    private enum CodingKeys: String, CodingKey { case peer, index }

    func encode(to encoder: any Encoder) throws {
        guard let outgoing = DescriptorTransfer.outgoing else {
            throw ProcessingError(.encodingFailed, "a relay connection crosses only in a relay stage's start state")
        }
        guard let fd = descriptor.withLock({ $0 }) else {
            throw ProcessingError(.invalidState, "a relay connection to \(peer) was already handed over")
        }
        let index = try outgoing.attach(fd, of: "a relay link")
        if outgoing.moves, let fd = take() { Syscall.close(fd) }
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(peer, forKey: .peer)
        try container.encode(index, forKey: .index)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        peer = try container.decode(String.self, forKey: .peer)
        let index = try container.decode(Int.self, forKey: .index)
        // Absent in the child that runs a crashed stage's `error(_:)` (from the state it
        // started with, whose descriptors went to the first child): that child uses none.
        descriptor = Mutex(DescriptorTransfer.incoming?.take(index))
    }

    /// A connected pair: `sender` for the stage that sends, `receiver` for the one that receives.
    static func pair(sender: String, receiver: String) throws -> (sending: RelayLinkEnd, receiving: RelayLinkEnd) {
        let ends = try Syscall.socketPair()
        let (first, second) = ends.release()
        return (RelayLinkEnd(fd: FileDescriptor(owning: first), peer: receiver),
                RelayLinkEnd(fd: FileDescriptor(owning: second), peer: sender))
    }
}
