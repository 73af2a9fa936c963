import Synchronization

/// Messages that arrived and the `listen` calls waiting for them; used by the parent's handle
/// and by the child's `self.listen` alike.
///
/// The state machine (`State`) is apart from its storage: each event returns what to resume,
/// and continuations are resumed outside the lock.
final class Mailbox: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Message?, any Error>
    }

    private struct State {
        var messages: [Message] = []
        var head = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 1
        /// Once set, a listen with nothing queued fails with this instead of waiting.
        var closedError: ProcessingError?
        /// How long a `listen` polls its channel before it sleeps (see `PollBudget`).
        var pollBudget = PollBudget()
        /// Counts `interruptWaiters` calls: a listen that began before one and was not yet
        /// waiting (it was polling its channel) returns nil too.
        var interruptions = 0

        var first: Message? { head < messages.count ? messages[head] : nil }

        mutating func takeFirst() -> Message {
            let message = messages[head]
            head += 1
            if head > 64 && head * 2 > messages.count {
                messages.removeFirst(head)
                head = 0
            }
            return message
        }

        mutating func removeWaiter(_ id: UInt64) -> Waiter? {
            guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: index)
        }
    }

    private let state = Mutex(State())
    /// Messages this large are bulk transfers: they are not polled for (see `Channel.poll`).
    static let largeMessage = 64 * 1024

    /// Queues a message, or hands it to the first waiting `listen`.
    func deliver(_ message: Message) {
        let waiter: Waiter? = state.withLock { state in
            if state.waiters.isEmpty {
                state.messages.append(message)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.continuation.resume(returning: message)
    }

    /// Fails every waiting `listen` and all later ones that find nothing queued.
    func close(_ error: ProcessingError) {
        let waiters = state.withLock { state in
            if state.closedError == nil { state.closedError = error }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: error) }
    }

    /// Wakes every waiting `listen` with nil (the child's listens, when a stop arrives).
    func interruptWaiters() {
        let waiters = state.withLock { state in
            state.interruptions += 1
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    /// The next message as a `T`; nil when `timeout` passes first. With `channel` (the one
    /// that feeds this mailbox), reads it for a moment before sleeping (`PollBudget`).
    func receive<T: Decodable>(_ type: T.Type, timeout: Duration?, polling channel: Channel? = nil) async throws -> T? {
        // The fast path: something is queued already.
        if let queued = try takeQueued(T.self) { return queued }
        if timeout == .zero { return nil }
        let (id, interruptions, budget) = state.withLock { state in
            defer { state.nextID += 1 }
            return (state.nextID, state.interruptions, state.pollBudget.duration)
        }
        let start = ContinuousClock.now
        var timeout = timeout
        var learns = channel != nil
        if let channel, budget > .zero {
            switch try poll(channel, for: T.self, until: start + min(budget, timeout ?? budget)) {
            case .message(let polled):
                learn(waited: ContinuousClock.now - start, large: false)
                return polled
            case .largeFrame:
                learns = false
                learn(waited: .zero, large: true)
            case .nothing:
                break
            }
            if let limit = timeout {
                let left = limit - (ContinuousClock.now - start)
                guard left > .zero else { return nil }
                timeout = left
            }
        }

        let message: Message? = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate: Result<Message?, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.first != nil { return .success(state.takeFirst()) }
                    if let error = state.closedError { return .failure(error) }
                    if state.interruptions != interruptions { return .success(nil) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let immediate {
                    continuation.resume(with: immediate)
                } else if let timeout {
                    Reactor.after(timeout) { [self] in
                        state.withLock { $0.removeWaiter(id) }?.continuation.resume(returning: nil)
                    }
                }
            }
        } onCancel: {
            state.withLock { $0.removeWaiter(id) }?.continuation.resume(throwing: CancellationError())
        }
        if learns {
            learn(waited: message == nil ? .seconds(1) : ContinuousClock.now - start,
                  large: (message?.body.count ?? 0) >= Self.largeMessage)
        }
        guard let message else { return nil }
        guard message.typeName == TypeName.mangled(T.self) else {
            // Put it back at the front: a listen for the right type still gets it.
            putBack(message)
            throw message.mismatch(expected: T.self)
        }
        return try message.decode(as: T.self)
    }

    /// Adapts the polling budget to a listen that waited `waited` for a message.
    private func learn(waited: Duration, large: Bool) {
        state.withLock { large ? $0.pollBudget.sawLargeFrame() : $0.pollBudget.adapt(waited: waited) }
    }

    private enum PollOutcome<T> {
        case message(T)
        /// A large frame is coming in: the reactor reads it (see `Channel.poll`).
        case largeFrame
        case nothing
    }

    /// Reads `channel` from this thread until a message is queued or `deadline` passes. The
    /// reactor stops watching the channel for reads meanwhile, so it does not wake to race.
    private func poll<T: Decodable>(_ channel: Channel, for type: T.Type, until deadline: ContinuousClock.Instant) throws -> PollOutcome<T> {
        channel.setPolling(true)
        defer { channel.setPolling(false) }
        repeat {
            let small = channel.poll()
            if let queued = try takeQueued(T.self) { return .message(queued) }
            if !small { return .largeFrame }
        } while ContinuousClock.now < deadline && !Task.isCancelled
        return .nothing
    }

    /// The first queued message as a `T` (consumed), nil if none; throws on a mismatch
    /// (nothing consumed) or when the mailbox is closed and empty.
    private func takeQueued<T: Decodable>(_ type: T.Type) throws -> T? {
        let expected = TypeName.mangled(T.self)
        let queued: Message? = try state.withLock { state in
            if let first = state.first {
                // Refuse a mismatch by name, without consuming or decoding anything.
                guard first.typeName == expected else { throw first.mismatch(expected: T.self) }
                return state.takeFirst()
            }
            if let error = state.closedError { throw error }
            return nil
        }
        return try queued?.decode(as: T.self)
    }

    private func putBack(_ message: Message) {
        state.withLock { state in
            if state.head > 0 {
                state.head -= 1
                state.messages[state.head] = message
            } else {
                state.messages.insert(message, at: 0)
            }
        }
    }
}

/// How long a `listen` reads its channel itself before it sleeps, adapted to how soon messages
/// come (as an adaptive mutex spins as long as its holders usually take).
///
/// A message that comes while the listen polls costs no thread wake-up. In a conversation
/// (one side tells, the other answers at once) nearly all do, and a round trip takes about
/// 11 µs instead of about 90 (BENCHMARKS.md). Waking is slow on a busy machine, and a side
/// that fell asleep makes the other miss its budget too, so a fixed 50 µs budget gave round
/// trips of 12 µs in some series and 100–180 µs in others. The budget therefore grows at
/// once to four times a wait it just missed, and shrinks slowly toward eight times the
/// waits it catches. A mailbox whose messages come rarely (later than `maximum`) halves it
/// down to `minimum`, so a listen that waits long spends at most a few tens of µs of CPU
/// before it sleeps. (A fixed 1 ms budget measured the same round trip as this one,
/// 10–12 µs.) Large messages set it to zero: polling for them halved bulk throughput.
struct PollBudget {
    static let minimum = Duration.microseconds(20)
    static let maximum = Duration.milliseconds(1)

    private(set) var duration = Duration.microseconds(100)

    /// A large message was coming in: bulk transfers do not poll (a receiver polling for
    /// them halved 1 MiB throughput), until a wait for a small message teaches otherwise.
    mutating func sawLargeFrame() {
        duration = .zero
    }

    /// Learns from how long a listen waited for its message.
    mutating func adapt(waited: Duration) {
        if waited > Self.maximum {
            duration = max(Self.minimum, duration / 2)
        } else if waited > duration {
            duration = min(Self.maximum, waited * 4)
        } else {
            duration = max(Self.minimum, waited * 8, duration * 63 / 64)
        }
    }
}
