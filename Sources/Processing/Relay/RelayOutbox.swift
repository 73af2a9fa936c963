import Synchronization

/// The sending side of a relay stage (or of the parent, feeding the first stage): one channel
/// per outbound connection, messages batched per connection and sent as the receivers' credit
/// allows.
///
/// A message is queued on the connection with the most credit. It leaves when its batch is
/// full, when the sender runs out of credit, after each batch a recv stage received, or soon
/// after a loop stage queued the first of a batch (a flush the reactor thread runs). Each
/// connection's batches go out in order: flushes take the `flushing` lock.
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

        func fail(_ error: any Error) {
            for waiter in state.withLock({ $0.fail(error) }) { waiter.resume(throwing: error) }
        }
    }

    @usableFromInline
    let storage: Storage
    private let channels: [Channel]
    private let peers: [String]
    private let owner: String
    /// Held while a batch is encoded and written, so that batches leave in order.
    private let flushing = Mutex(())
    private let nextID = Atomic<UInt64>(0)

    /// Takes the descriptors of `ends`; `owner` names this side in errors.
    init(_ ends: [RelayLinkEnd], window: Int, batchLimit: Int, defersFlushes: Bool, owner: String) throws {
        let storage = Storage(Machine(links: ends.count, window: window, batchLimit: batchLimit, defersFlushes: defersFlushes))
        self.storage = storage
        self.owner = owner
        peers = ends.map(\.peer)
        var channels: [Channel] = []
        for (link, end) in ends.enumerated() {
            guard let fd = end.take() else {
                throw ProcessingError(.invalidState, "the relay connection from \(owner) to \(end.peer) was used already")
            }
            do {
                try Channel.prepare(fd)
            } catch {
                Syscall.close(fd)
                throw ProcessingError(.channelClosed, "the relay connection from \(owner) to \(end.peer) is unusable: \(error)", causedBy: error)
            }
            let peer = end.peer
            channels.append(Channel(fd: fd, onFrame: { frame in
                var offset = 0
                guard frame.kind == .relayCredit, let count = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                    return storage.fail(ProcessingError(.malformedFrame, "a \(frame.kind) frame from \(peer), which should only send credit back to \(owner)"))
                }
                let waiters = storage.state.withLock { $0.credit(Int(count), on: link) }
                for waiter in waiters { waiter.resume() }
            }, onEnd: { end in
                guard !storage.state.withLock({ $0.finished }) else { return }
                storage.fail(ProcessingError(.channelClosed, """
                    \(peer), which \(owner) sends to, went away before the end of the stream: its process \
                    ended or failed (\(end.description))
                    """))
            }))
        }
        self.channels = channels
        for channel in channels { channel.start() }
    }

    deinit { close() }

    /// Whether queuing the first message of a batch schedules a flush (see the type's notes).
    func setDefersFlushes(_ defers: Bool) {
        storage.state.withLock { $0.defersFlushes = defers }
    }

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
            switch storage.state.withLock({ $0.offer(value) }) {
            case .queued:
                return
            case .flush(let link):
                return try flush(link)
            case .scheduleFlush:
                scheduleFlush()
                return
            case .noCredit:
                try flushAll()
                try await waitForCredit()
            case .failed:
                throw storage.state.withLock { $0.failure }
                    ?? ProcessingError(.invalidState, "\(owner) sent a message after its stream ended")
            }
        }
    }

    private func waitForCredit() async throws {
        let id = nextID.add(1, ordering: .relaxed).newValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let decision = storage.state.withLock { state -> Machine.WaitDecision in
                    if Task.isCancelled { return .failNow(CancellationError()) }
                    return state.wait(id: id, continuation)
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
        try flushing.withLock { _ in
            guard let batch = storage.state.withLock({ $0.take(link) }) else { return }
            try write(batch.values, from: batch.sequence, on: link)
        }
    }

    /// Sends every pending batch.
    func flushAll() throws {
        try flushing.withLock { _ in
            for batch in storage.state.withLock({ $0.takeAll() }) {
                try write(batch.values, from: batch.sequence, on: batch.link)
            }
        }
    }

    /// Encodes and posts one batch; a batch over the message size limit goes in halves.
    /// Credit bounds what is queued, so posting (which does not wait) cannot grow without bound.
    private func write(_ values: [Element], from sequence: UInt64, on link: Int) throws {
        let frame: [UInt8]
        do {
            frame = try Frame.encode(.relayBatch) { bytes in
                BinaryFormat.appendVarint(sequence, to: &bytes)
                try BinaryEncoder().encode(values, appendingTo: &bytes)
            }
        } catch let error as ProcessingError where error.code == .messageTooLarge && values.count > 1 {
            let half = values.count / 2
            try write(Array(values[..<half]), from: sequence, on: link)
            return try write(Array(values[half...]), from: sequence + UInt64(half), on: link)
        } catch {
            let failure = ProcessingError(.encodingFailed, "\(owner) could not encode a message of type \(String(reflecting: Element.self)) for \(peers[link]): \(error)", causedBy: error)
            storage.fail(failure)
            throw failure
        }
        channels[link].post(frame)
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
        for channel in channels { try await channel.send(end) }
    }

    /// Closes every connection; a waiting `send` fails.
    func close() {
        storage.fail(ProcessingError(.channelClosed, "\(owner)'s relay connections were closed"))
        for channel in channels {
            Reactor.shared.execute { channel.close(reason: "the relay stage finished") }
        }
    }
}
