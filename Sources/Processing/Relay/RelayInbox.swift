import Synchronization

/// The receiving side of a relay stage (or of the parent, reading the last stage's output):
/// one channel per inbound connection, read by the reactor, batches handed out in arrival
/// order, credit granted back as they are used.
final class RelayInbox: Sendable {
    /// One batch as it came: the connection, the first message's sequence number, and the
    /// frame's payload with the encoded array from `offset`.
    struct Batch: Sendable {
        let link: Int
        /// Which connection of `link` it came on (see `relink`).
        let generation: Int
        let sequence: UInt64
        let payload: [UInt8]
        let offset: Int

        /// The messages of the batch.
        func decode<Element: Decodable>(_ type: Element.Type) throws -> [Element] {
            try payload.withUnsafeBytes { bytes in
                try BinaryDecoder().decode([Element].self, from: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            }
        }
    }

    private typealias Machine = RelayInboxState<Batch, CheckedContinuation<Batch?, any Error>>

    /// The state, in a box of its own so that the channels' handlers can hold it without
    /// holding the inbox (which owns the channels).
    private final class Storage: Sendable {
        let state: Mutex<Machine>
        init(_ machine: sending Machine) { state = Mutex(machine) }

        func end(_ link: Int, generation: Int, error: (any Error)?) {
            if let (waiter, result) = state.withLock({ $0.ended(link, generation: generation, error: error) }) {
                waiter.resume(with: result)
            }
        }
    }

    private let storage: Storage
    private let channels: Mutex<[Channel]>
    private let peers: [String]
    private let owner: String
    private let nextID = Atomic<UInt64>(0)

    /// Takes the descriptors of `ends`; `owner` names this side in errors. `restartable[i]`:
    /// the sender of `ends[i]` may be restarted, so its end is not a failure.
    init(_ ends: [RelayLinkEnd], window: Int, restartable: [Bool]? = nil, grantsEveryBatch: Bool = false,
         owner: String) throws {
        let storage = Storage(Machine(links: ends.count, window: window, restartable: restartable,
                                      grantsEveryBatch: grantsEveryBatch, peers: ends.map(\.peer)))
        self.storage = storage
        self.owner = owner
        peers = ends.map(\.peer)
        var channels: [Channel] = []
        for (link, end) in ends.enumerated() {
            let fd = try end.takeForChannel("from \(end.peer) to \(owner)")
            channels.append(Self.channel(fd, link: link, generation: 0, peer: end.peer, owner: owner, storage: storage))
        }
        self.channels = Mutex(channels)
        for channel in channels { channel.start() }
    }

    private static func channel(_ fd: Int32, link: Int, generation: Int, peer: String, owner: String,
                                storage: Storage) -> Channel {
        Channel(fd: fd, onFrame: { frame in
            Self.received(frame, link: link, generation: generation, from: peer, owner: owner, storage: storage)
        }, onEnd: { end in
            let error = ProcessingError(.channelClosed, """
                the relay connection from \(peer) to \(owner) ended before its end of stream: \
                \(peer)'s process ended or failed (\(end.description))
                """)
            storage.end(link, generation: generation, error: error)
        })
    }

    /// Connection `link` is replaced by one from its sender's next process (restarted).
    func relink(_ link: Int, to end: RelayLinkEnd) throws {
        let fd = try end.takeForChannel("from \(end.peer) to \(owner)")
        // Under the channels' lock, so that no credit decided for the old connection is
        // granted on the new one (see `consumed`). Lock order: channels, then the state.
        let (old, channel) = channels.withLock { channels in
            let generation = storage.state.withLock { $0.relink(link) }
            let channel = Self.channel(fd, link: link, generation: generation, peer: end.peer, owner: owner, storage: storage)
            defer { channels[link] = channel }
            return (channels[link], channel)
        }
        // What the old sender wrote before it died is still read: complete batches are its
        // outputs, which nobody sends again.
        Reactor.shared.execute {
            old.readAvailable(ignoringPause: true)
            old.close(reason: "the sender was restarted")
        }
        channel.start()
    }

    deinit { close() }

    private static func received(_ frame: Frame, link: Int, generation: Int, from peer: String, owner: String,
                                 storage: Storage) {
        switch frame.kind {
        case .relayBatch:
            var offset = 0
            guard let sequence = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                let error = ProcessingError(.malformedFrame, "a relay batch from \(peer) without its sequence number")
                return storage.end(link, generation: generation, error: error)
            }
            let batch = Batch(link: link, generation: generation, sequence: UInt64(sequence), payload: frame.payload, offset: offset)
            if let (waiter, result) = storage.state.withLock({ $0.arrived(batch, on: link) }) { waiter.resume(with: result) }
        case .relayEnd:
            storage.end(link, generation: generation, error: nil)
        default:
            let error = ProcessingError(.malformedFrame, "a \(frame.kind) frame from \(peer) on a relay connection to \(owner)")
            storage.end(link, generation: generation, error: error)
        }
    }

    /// The next batch from any connection; nil once every one has sent its end of stream and
    /// all that came was handed out. Throws if a connection ended without its end of stream.
    func next() async throws -> Batch? {
        let id = nextID.add(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Batch?, any Error>) in
                let decision = storage.state.withLock { state -> Machine.Next in
                    if Task.isCancelled { return .now(.failure(CancellationError())) }
                    return state.next(id: id, continuation)
                }
                if case .now(let result) = decision { continuation.resume(with: result) }
            }
        } onCancel: {
            storage.state.withLock { $0.cancel(id: id) }?.resume(throwing: CancellationError())
        }
    }

    /// The stage is done with `count` messages of a batch from `link`: grants credit back.
    func consumed(_ count: Int, of batch: Batch) {
        channels.withLock { channels in
            guard let grant = storage.state.withLock({ $0.consumed(count, from: batch.link, generation: batch.generation) }) else { return }
            channels[batch.link].post(Frame.control(.relayCredit) { BinaryFormat.appendVarint(UInt64(grant), to: &$0) })
        }
    }

    /// Who sends on `link`.
    func peer(_ link: Int) -> String { peers[link] }

    /// Closes every connection; a waiting `next` fails.
    func close() {
        storage.state.withLock { $0.fail(ProcessingError(.channelClosed, "the relay inbox was closed")) }?
            .resume(throwing: ProcessingError(.channelClosed, "the relay inbox was closed"))
        for channel in channels.withLock({ $0 }) {
            Reactor.shared.execute { channel.close(reason: "the relay stage finished") }
        }
    }
}
