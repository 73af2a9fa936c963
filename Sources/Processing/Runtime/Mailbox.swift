import Synchronization

/// Messages that arrived and the `listen` calls waiting for them; used by the parent's handle,
/// by the child's `self.listen` and by pipe ends alike.
///
/// The storage of `MailboxState`, which has the rules (who gets a message, what a listen
/// finds, flow control): each method takes the lock, runs one transition, and resumes
/// continuations (and cancels timers) after it. Flow changes are applied to the channel under
/// the lock, so that a pause and a resume reach it in the order they were decided
/// (`pauseReading` is an atomic store, and `resumeReading` takes the channel's writer lock,
/// which never waits for this one).
final class Mailbox: Sendable {
    /// A waiting listen's continuation, and the timer of its time-out.
    private struct Waiter {
        let continuation: CheckedContinuation<Message?, any Error>
        let timer: OneShotTimer?

        func resume(with result: Result<Message?, any Error>) {
            timer?.cancel()
            continuation.resume(with: result)
        }
    }

    private typealias Machine = MailboxState<Waiter>

    private struct State {
        var machine = Machine()
        /// How long a `listen` polls its channel before it sleeps (see `PollBudget`).
        var pollBudget = PollBudget()
        /// The channel that feeds this mailbox, paused while the mailbox is full.
        var flowControl: Channel?

        func apply(_ flow: Machine.FlowChange?) {
            switch flow {
            case .pause?: flowControl?.pauseReading()
            case .resume?: flowControl?.resumeReading()
            case nil: break
            }
        }
    }

    private let state = Mutex(State())
    /// Messages this large are bulk transfers: they are not polled for (see `Channel.poll`).
    static let largeMessage = 64 * 1024

    /// Bounds this mailbox by `ProcessingLimits.mailboxCapacity`, pausing `channel` (the one
    /// that feeds it) while it is full. A new channel (a retried process's) replaces the last.
    func attach(_ channel: Channel) {
        state.withLock { state in
            state.flowControl = channel
            state.apply(state.machine.attach(capacity: ProcessingLimits.mailboxCapacity))
        }
    }

    /// Bytes of messages queued and not yet listened for.
    var queuedBytes: Int { state.withLock { $0.machine.queuedBytes } }

    /// How many listens are waiting (asleep, past their polling) now.
    var waitingListens: Int { state.withLock { $0.machine.waitingCount } }

    /// From now on, messages are dropped on arrival (the first drop says `reason` on stderr,
    /// once): for a handle no one can listen on, so that its sender does not wait forever.
    func dropMessages(because reason: String) {
        state.withLock { $0.machine.dropMessages(because: reason) }
    }

    /// Queues a message, or hands it to the first listen waiting for its type.
    func deliver(_ message: Message) {
        let delivery = state.withLock { state in
            let (delivery, flow) = state.machine.deliver(message, capacity: ProcessingLimits.mailboxCapacity)
            state.apply(flow)
            return delivery
        }
        switch delivery {
        case .handed(let listen):
            listen.waiter.resume(with: .success(message))
        case .queued(let failing):
            for listen in failing {
                listen.waiter.resume(with: .failure(message.mismatch(expectedName: listen.typeName.map(TypeName.readable) ?? "another type")))
            }
        case .dropped(let firstReason):
            if let firstReason { OutputForwarder.standardError.forward(line: "Processing: \(firstReason); they are dropped.") }
        }
    }

    /// Fails every waiting `listen` and all later ones that find nothing queued.
    func close(_ error: ProcessingError) {
        let failing = state.withLock { state in
            state.flowControl = nil
            return state.machine.close(error).failing
        }
        for listen in failing { listen.waiter.resume(with: .failure(error)) }
    }

    /// Wakes every waiting `listen` with nil, and makes every later one that finds nothing
    /// queued return nil at once (the child's listens, once a stop arrived). Sticky: a stop
    /// that arrives before the listen begins (the child was busy between a `tell` and its
    /// `listen`) must still end a `while let … = listen()` loop.
    func stop() {
        for listen in state.withLock({ $0.machine.stop() }) { listen.waiter.resume(with: .success(nil)) }
    }

    /// The next message as a `T`; nil when `timeout` passes first. With `channel` (the one
    /// that feeds this mailbox), reads it for a moment before sleeping (`PollBudget`).
    func receive<T: Decodable>(_ type: T.Type, timeout: Duration?, polling channel: Channel? = nil) async throws -> T? {
        // The fast path: something is queued already.
        if let queued = try takeQueued(T.self) { return queued }
        if timeout == .zero { return nil }
        let (id, stopped, budget) = state.withLock { state in
            (state.machine.makeListenID(), state.machine.isStopped, state.pollBudget.duration)
        }
        if stopped { return nil }
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

        let typeName = TypeName.mangled(T.self)
        let message: Message? = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message?, any Error>) in
                let found = state.withLock { state -> Machine.Found? in
                    let outcome = state.machine.register(
                        id: id, typeName: typeName, cancelled: Task.isCancelled, capacity: ProcessingLimits.mailboxCapacity
                    ) {
                        // Armed under the lock, so that it cannot fire before the listen waits.
                        Waiter(continuation: continuation, timer: timeout.map { limit in
                            OneShotTimer(after: limit) { [self] in
                                let expired = self.state.withLock { $0.machine.withdraw(id) }
                                expired?.waiter.continuation.resume(returning: nil)
                            }
                        })
                    }
                    state.apply(outcome?.1)
                    return outcome?.0
                }
                if let found { continuation.resume(with: Self.result(of: found, expected: T.self)) }
            }
        } onCancel: {
            state.withLock { $0.machine.withdraw(id) }?.waiter.resume(with: .failure(CancellationError()))
        }
        if learns {
            learn(waited: message == nil ? .seconds(1) : ContinuousClock.now - start,
                  large: (message?.body.count ?? 0) >= Self.largeMessage)
        }
        // A message that reaches a listen is of its type (`MailboxState` hands them by type).
        return try message?.decode(as: T.self)
    }

    /// What a listen for `expected` that found `found` returns or throws.
    private static func result<T>(of found: Machine.Found, expected: T.Type) -> Result<Message?, any Error> {
        switch found {
        case .message(let message): .success(message)
        case .mismatch(let message): .failure(message.mismatch(expected: T.self))
        case .closed(let error): .failure(error)
        case .stopped: .success(nil)
        case .cancelled: .failure(CancellationError())
        }
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
        let found = state.withLock { state -> Machine.Found? in
            guard let (found, flow) = state.machine.find(TypeName.mangled(T.self), capacity: ProcessingLimits.mailboxCapacity) else {
                return nil
            }
            state.apply(flow)
            return found
        }
        guard let found else { return nil }
        return try Self.result(of: found, expected: T.self).get()?.decode(as: T.self)
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
