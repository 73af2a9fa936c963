import Synchronization

/// The sending side of a relay stage (or of the parent, feeding the first stage): one channel
/// per outbound connection, messages batched per connection and sent as the receivers' credit
/// allows.
///
/// A message is queued on the connection with the most credit. It leaves when its batch is
/// full, when the sender runs out of credit, after each batch a recv stage received, or soon
/// after a loop stage queued the first of a batch (a flush the reactor thread runs). Each
/// connection's batches go out in order: a flush holds the lock of the connections (`links`)
/// while it encodes and writes.
@usableFromInline
final class RelayOutbox<Element: Encodable & Sendable>: Sendable {
    @usableFromInline
    typealias Machine = RelayOutboxState<Element, CheckedContinuation<Void, any Error>>

    /// The state, in a box of its own so that the channels' handlers can hold it without
    /// holding the outbox (which owns the channels).
    @usableFromInline
    final class Storage: Sendable {
        @usableFromInline
        let state: Mutex<Machine>
        init(_ machine: sending Machine) { state = Mutex(machine) }

        /// How many times each connection was replaced.
        private let generations = Mutex<[Int: Int]>([:])

        func fail(_ error: any Error) {
            for waiter in state.withLock({ $0.fail(error) }) { waiter.resume(throwing: error) }
        }

        func generation(of link: Int) -> Int { generations.withLock { $0[link] ?? 0 } }

        func nextGeneration(of link: Int) -> Int {
            generations.withLock { generations in
                generations[link, default: 0] += 1
                return generations[link]!
            }
        }
    }

    @usableFromInline
    let storage: Storage
    /// The channel of each connection (its generation, how many times it was replaced, is
    /// the storage's: the channels' handlers check it). Held while a batch is encoded and written, so that batches leave in order.
    /// Lock order: `links`, then the state.
    private let links: Mutex<[Channel]>
    private let peers: [String]
    private let owner: String
    private let nextID = Atomic<UInt64>(0)

    /// Whether batches are written only by `flushAllWritten` (which waits for the kernel):
    /// a recv stage with lives, which must not credit its senders for messages whose
    /// outputs could still die with it in this process's write queue.
    private let awaitsWrites: Bool

    /// Takes the descriptors of `ends`; `owner` names this side in errors. `retains[i]`: the
    /// receiver of `ends[i]` may be restarted, so what it was sent is kept until credited back.
    /// `awaitsWrites`: see the property.
    init(_ ends: [RelayLinkEnd], window: Int, batchLimit: Int, defersFlushes: Bool, retains: [Bool]? = nil,
         awaitsWrites: Bool = false, owner: String) throws {
        self.awaitsWrites = awaitsWrites
        let storage = Storage(Machine(links: ends.count, window: window, batchLimit: batchLimit,
                                      defersFlushes: defersFlushes, retains: retains))
        self.storage = storage
        self.owner = owner
        peers = ends.map(\.peer)
        var channels: [Channel] = []
        for (link, end) in ends.enumerated() {
            let fd = try end.takeForChannel("from \(owner) to \(end.peer)")
            channels.append(Self.channel(fd, link: link, generation: 0, peer: end.peer, owner: owner, storage: storage))
        }
        links = Mutex(channels)
        for channel in channels { channel.start() }
    }

    /// The channel of one connection: credit comes back on it; its end fails the outbox,
    /// unless its receiver may be restarted.
    private static func channel(_ fd: Int32, link: Int, generation: Int, peer: String, owner: String,
                                storage: Storage) -> Channel {
        Channel(fd: fd, onFrame: { frame in
            var offset = 0
            guard frame.kind == .relayCredit, let count = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                return storage.fail(ProcessingError(.malformedFrame, "a \(frame.kind) frame from \(peer), which should only send credit back to \(owner)"))
            }
            guard storage.generation(of: link) == generation else { return }
            let waiters = storage.state.withLock { $0.credit(Int(clamping: count), on: link) }
            for waiter in waiters { waiter.resume() }
        }, onEnd: { end in
            guard storage.generation(of: link) == generation else { return }
            let outcome = storage.state.withLock { state -> Bool? in
                // A receiver that may be restarted: wait for its next process (`relink`),
                // unless it had everything and ended as it should.
                if state.isRetained(link) {
                    if state.finished, state.allAcknowledged { return nil }
                    state.linkDown(link)
                    return true
                }
                return state.finished ? nil : false
            }
            guard outcome == false else { return }
            storage.fail(ProcessingError(.channelClosed, """
                \(peer), which \(owner) sends to, went away before the end of the stream: its process \
                ended or failed (\(end.description))
                """))
        })
    }

    /// Connection `link` goes to a new process of its receiver (restarted): what it had not
    /// credited back is sent again, but for message `dropping` (one it died on twice), then
    /// the end of stream if this side has finished.
    func relink(_ link: Int, to end: RelayLinkEnd, dropping: UInt64?) throws {
        let fd = try end.takeForChannel("from \(owner) to \(end.peer)")
        let generation = storage.nextGeneration(of: link)
        let channel = Self.channel(fd, link: link, generation: generation, peer: end.peer, owner: owner, storage: storage)
        let old = try links.withLock { links in
            let old = links[link]
            links[link] = channel
            let (resent, finished) = storage.state.withLock { ($0.relink(link, dropping: dropping), $0.finished) }
            for batch in resent { try write(batch.values, from: batch.sequence, on: link, to: channel) }
            if finished { channel.post(Frame.encode(.relayEnd)) }
            return old
        }
        Reactor.shared.execute { old.close(reason: "the receiver was restarted") }
        channel.start()
        for waiter in storage.state.withLock({ $0.credit(0, on: link) }) { waiter.resume() }
    }

    private func channel(_ link: Int) -> Channel { links.withLock { $0[link] } }

    deinit { close() }

    /// Queues `value` for one receiver if one has room, without waiting: what `send(_:)` does
    /// for nearly every message, specialised in the stage's module. A `noCredit` or `failed`
    /// answer queued nothing: `send(_:)` then waits or throws.
    @inlinable
    func queue(_ value: Element) throws -> Machine.Offer {
        let offer = storage.state.withLock { $0.offer(value) }
        switch offer {
        case .queued, .noCredit, .failed: break
        case .flush(let link): try flush(link)
        case .scheduleFlush: scheduleFlush()
        }
        return offer
    }

    /// Flushes every pending batch soon, on the reactor thread.
    @usableFromInline
    func scheduleFlush() {
        Reactor.shared.execute { [self] in try? flushAll() }
    }

    /// Queues `value` for one receiver; waits while no receiver has room (backpressure).
    @usableFromInline
    func send(_ value: Element) async throws {
        while true {
            switch try queue(value) {
            case .queued, .flush, .scheduleFlush:
                return
            case .noCredit:
                if awaitsWrites { try await flushAllWritten() } else { try flushAll() }
                try await wait(until: .credit)
            case .failed:
                throw storage.state.withLock { $0.failure }
                    ?? ProcessingError(.invalidState, "\(owner) sent a message after its stream ended")
            }
        }
    }

    /// Waits until `condition` holds (or may: the caller checks again), is failed, or is cancelled.
    private func wait(until condition: Machine.WaitCondition) async throws {
        let id = nextID.add(1, ordering: .relaxed).newValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let decision = storage.state.withLock { state -> Machine.WaitDecision in
                    if Task.isCancelled { return .failNow(CancellationError()) }
                    return state.wait(until: condition, id: id, continuation)
                }
                switch decision {
                case .resumeNow: continuation.resume()
                case .failNow(let error): continuation.resume(throwing: error)
                case .registered: break
                }
            }
        } onCancel: {
            storage.state.withLock { $0.cancel(id: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Sends the pending batch of `link`.
    @usableFromInline
    func flush(_ link: Int) throws {
        // Such a stage's batches wait (within its credit) for `flushAllWritten`.
        guard !awaitsWrites else { return }
        try links.withLock { links in
            guard let batch = storage.state.withLock({ $0.take(link) }) else { return }
            try write(batch.values, from: batch.sequence, on: link, to: links[link])
        }
    }

    /// Sends every pending batch.
    func flushAll() throws {
        try links.withLock { links in
            for batch in storage.state.withLock({ $0.takeAll() }) {
                try write(batch.values, from: batch.sequence, on: batch.link, to: links[batch.link])
            }
        }
    }

    /// Sends every pending batch and returns once the kernel has them: what a stage that may
    /// be restarted does before it credits its senders, so that what it produced survives its
    /// process. Only for a stage whose sends all come from its own task (a recv stage), which
    /// keeps the batches in order without holding the lock across the waits. The batches and
    /// their channels are taken together; a send that fails on a connection whose receiver
    /// is being restarted is not an error (the batch is kept, and `relink` sends it again).
    func flushAllWritten() async throws {
        let batches = links.withLock { links in
            storage.state.withLock { $0.takeAll() }.map { (batch: $0, channel: links[$0.link]) }
        }
        for (batch, channel) in batches {
            for frame in try frames(batch.values, from: batch.sequence, for: batch.link) {
                do {
                    try await channel.send(frame)
                } catch let error as ProcessingError where error.code == .channelClosed && isRetained(batch.link) {
                    break
                }
            }
        }
    }

    private func isRetained(_ link: Int) -> Bool { storage.state.withLock { $0.isRetained(link) } }

    /// Encodes and posts one batch; a batch over the message size limit goes in halves.
    /// Credit bounds what is queued, so posting (which does not wait) cannot grow without bound.
    private func write(_ values: [Element], from sequence: UInt64, on link: Int, to channel: Channel) throws {
        for frame in try frames(values, from: sequence, for: link) { channel.post(frame) }
    }

    /// One batch's frames: one, or several for a batch over the message size limit (halved
    /// until each fits).
    private func frames(_ values: [Element], from sequence: UInt64, for link: Int) throws -> [[UInt8]] {
        do {
            return [try Frame.encode(.relayBatch) { bytes in
                BinaryFormat.appendVarint(sequence, to: &bytes)
                try BinaryEncoder().encode(values, appendingTo: &bytes)
            }]
        } catch let error as ProcessingError where error.code == .messageTooLarge && values.count > 1 {
            let half = values.count / 2
            return try frames(Array(values[..<half]), from: sequence, for: link)
                + frames(Array(values[half...]), from: sequence + UInt64(half), for: link)
        } catch {
            let failure = ProcessingError(.encodingFailed, "\(owner) could not encode a message of type \(String(reflecting: Element.self)) for \(peers[link]): \(error)", causedBy: error)
            storage.fail(failure)
            throw failure
        }
    }

    /// Sends what is pending, then the end of stream on every connection, and returns once the
    /// kernel has all of it (so the process may exit).
    func finish() async throws {
        try flushAll()
        if let failure = storage.state.withLock({ state -> (any Error)? in
            state.finish()
            return state.failure
        }) {
            throw failure
        }
        let end = Frame.encode(.relayEnd)
        for (link, channel) in links.withLock({ $0 }).enumerated() {
            do {
                try await channel.send(end)
            } catch let error as ProcessingError where error.code == .channelClosed && isRetained(link) {
                // Its receiver is being restarted: `relink` sends the end on the new connection.
            }
        }
        // A receiver that may be restarted may need what it was sent again: stay until
        // everything was credited back.
        while !storage.state.withLock({ $0.allAcknowledged }) {
            try await wait(until: .acknowledgements)
        }
    }

    /// Closes every connection; a waiting `send` fails.
    func close() {
        storage.fail(ProcessingError(.channelClosed, "\(owner)'s relay connections were closed"))
        for channel in links.withLock({ $0 }) {
            Reactor.shared.execute { channel.close(reason: "the relay stage finished") }
        }
    }
}
