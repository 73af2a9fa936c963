import Synchronization

/// Where a stage that may be restarted says which message it is handling: a few bytes of
/// shared memory that the parent made and reads once the stage's process has died (so the
/// message it died on is retried once, and dropped and reported if it kills it again).
///
/// Two 64-bit words: the connection and the message's sequence number on it (-1 between
/// messages). The child writes them with plain stores around each `recv(_:)`; the parent
/// reads them after the child's exit, which orders them.
final class RelayProgressSlot: Codable, Sendable {
    static let size = 16
    private let descriptor: Int32
    /// The mapping, as an address (a `Sendable` stand-in for the pointer it is).
    private let address: Int

    /// A new slot, in this process (the parent's copy).
    init() throws {
        let fd = try Syscall.makeSharedMemory(name: "processing-relay-progress")
        do {
            try Syscall.growFile(fd, to: Self.size)
            address = Int(bitPattern: try Syscall.mapShared(fd, offset: 0, length: Self.size))
        } catch {
            Syscall.close(fd)
            throw error
        }
        descriptor = fd
        clear()
    }

    deinit {
        if let pointer = UnsafeMutableRawPointer(bitPattern: address) { Syscall.unmap(pointer, length: Self.size) }
        Syscall.close(descriptor)
    }

    private var words: UnsafeMutablePointer<Int64> {
        UnsafeMutableRawPointer(bitPattern: address)!.assumingMemoryBound(to: Int64.self)
    }

    /// Before `recv(_:)` of message `sequence` from connection `link`.
    func handling(link: Int, sequence: UInt64) {
        words[0] = Int64(link)
        words[1] = Int64(bitPattern: sequence)
    }

    /// Between messages.
    func clear() {
        words[0] = -1
        words[1] = -1
    }

    /// The message being handled, as the stage last said.
    var current: (link: Int, sequence: UInt64)? {
        words[0] < 0 ? nil : (Int(words[0]), UInt64(bitPattern: words[1]))
    }

    private enum CodingKeys: String, CodingKey { case index }

    /// Attaches a duplicate: the parent keeps its own, to read and to hand to the next process.
    func encode(to encoder: any Encoder) throws {
        guard let outgoing = DescriptorTransfer.outgoing else {
            throw ProcessingError(.encodingFailed, "a relay progress slot crosses only in a relay stage's start state")
        }
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(try outgoing.attach(descriptor, of: "a relay's progress slot"), forKey: .index)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let index = try container.decode(Int.self, forKey: .index)
        guard let fd = DescriptorTransfer.incoming?.take(index) else {
            throw ProcessingError(.decodingFailed, "a relay progress slot arrived without its descriptor")
        }
        do {
            address = Int(bitPattern: try Syscall.mapShared(fd, offset: 0, length: Self.size))
        } catch {
            Syscall.close(fd)
            throw error
        }
        descriptor = fd
    }
}

/// The parent to a stage: one of its connections goes to a new process of the stage at its
/// other end (restarted), with the end to use from now on.
struct RelayRelink: Codable, Sendable {
    enum Side: Codable, Sendable { case inbound, outbound }
    var side: Side
    /// The connection's index among the stage's inbound or outbound ones.
    var index: Int
    var end: RelayLinkEnd
    /// For an outbound connection: the message not to send again (it killed the receiver twice).
    var dropping: UInt64?
}
