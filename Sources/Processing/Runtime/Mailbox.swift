import Synchronization

/// Messages that arrived and the `listen` calls waiting for them; used by the parent's handle,
/// by the child's `self.listen` and by pipe ends alike.
///
/// The state (`State`) is apart from its storage: each event returns what to resume, and
/// continuations are resumed (and timers cancelled) outside the lock.
///
/// - A message goes to the first waiting listen for its type. When none waits for it, it is
///   queued; a listen finds the first queued message, and fails with `.messageTypeMismatch`
///   (consuming nothing) when that is of another type. So a message that arrives while only
///   listens for other types wait is queued, and those listens fail as if they had just begun.
/// - With a channel attached (`attach(_:)`), the mailbox holds at most
///   `ProcessingLimits.mailboxCapacity` bytes of queued messages: past that it pauses the
///   channel, so that the peer's sends wait, and resumes it once half is listened for.
final class Mailbox: Sendable {
    private struct Waiter {
        let id: UInt64
        /// The mangled name of the type the listen asked for.
        let typeName: String?
        let continuation: CheckedContinuation<Message?, any Error>
        var timer: OneShotTimer?
    }

    /// What to do outside the lock after an event: the listens to resume.
    private struct Wake {
        var resume: [(Waiter, Result<Message?, any Error>)] = []

        func perform() {
            for (waiter, result) in resume {
                waiter.timer?.cancel()
                waiter.continuation.resume(with: result)
            }
        }
    }

    private struct State {
        var messages: [Message] = []
        var head = 0
        /// Bytes of the queued messages (bodies and type names).
        var queuedBytes = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 1
        /// Once set, a listen with nothing queued fails with this instead of waiting.
        var closedError: ProcessingError?
        /// How long a `listen` polls its channel before it sleeps (see `PollBudget`).
        var pollBudget = PollBudget()
        /// Set by `stop()`: a listen that finds nothing queued returns nil instead of waiting,
        /// whether it began before the stop or after it.
        var stopped = false
        /// The channel this mailbox paused, because it holds as much as it may.
        var paused = false
        var flowControl: Channel?
        /// Set when no one can listen: messages are dropped, and counted.
        var dropReason: String?
        var dropped = 0

        var first: Message? { head < messages.count ? messages[head] : nil }

        // Pausing and resuming happen here, under the mailbox's lock, so that they reach the
        // channel in the order they were decided. (`pauseReading` is an atomic store, and
        // `resumeReading` takes the channel's writer lock, which never waits for this one.)
        mutating func enqueue(_ message: Message, capacity: Int) {
            messages.append(message)
            queuedBytes += message.cost
            if let flowControl, !paused, queuedBytes > capacity {
                paused = true
                flowControl.pauseReading()
            }
        }

        mutating func takeFirst(capacity: Int) -> Message {
            let message = messages[head]
            head += 1
            queuedBytes -= message.cost
            if head > 64 && head * 2 > messages.count {
                messages.removeFirst(head)
                head = 0
            }
            if paused, queuedBytes <= capacity / 2 {
                paused = false
                flowControl?.resumeReading()
            }
            return message
        }

        mutating func putBack(_ message: Message) {
            queuedBytes += message.cost
            if head > 0 {
                head -= 1
                messages[head] = message
            } else {
                messages.insert(message, at: 0)
            }
        }

        mutating func removeWaiter(_ id: UInt64) -> Waiter? {
            guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: index)
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
            state.paused = state.queuedBytes > ProcessingLimits.mailboxCapacity
            if state.paused { channel.pauseReading() }
        }
    }

    /// Bytes of messages queued and not yet listened for.
    var queuedBytes: Int { state.withLock { $0.queuedBytes } }

    /// From now on, messages are dropped on arrival (the first drop says `reason` on stderr,
    /// once): for a handle no one can listen on, so that its sender does not wait forever.
    func dropMessages(because reason: String) {
        state.withLock { $0.dropReason = reason }
    }

    /// Queues a message, or hands it to the first listen waiting for its type.
    func deliver(_ message: Message) {
        let capacity = ProcessingLimits.mailboxCapacity
        var wake = Wake()
        var firstDrop: String?
        state.withLock { state in
            if let reason = state.dropReason {
                state.dropped += 1
                if state.dropped == 1 { firstDrop = reason }
                return
            }
            if let index = state.waiters.firstIndex(where: { $0.typeName == message.typeName }) {
                wake.resume.append((state.waiters.remove(at: index), .success(message)))
            } else {
                state.enqueue(message, capacity: capacity)
                // Now first in line: the listens still waiting (all for other types) fail, as
                // a listen that began now would.
                if state.first.map({ $0.typeName == message.typeName }) == true {
                    wake.resume += state.waiters.map { waiter in
                        (waiter, .failure(message.mismatch(expectedName: waiter.typeName.map(TypeName.readable) ?? "another type")))
                    }
                    state.waiters.removeAll()
                }
            }
        }
        if let firstDrop { StderrForwarder.shared.forward(line: "Processing: \(firstDrop); they are dropped.") }
        wake.perform()
    }

    /// How many listens are waiting (asleep, past their polling) now.
    var waitingListens: Int { state.withLock { $0.waiters.count } }

    /// Fails every waiting `listen` and all later ones that find nothing queued.
    func close(_ error: ProcessingError) {
        var wake = Wake()
        state.withLock { state in
            if state.closedError == nil { state.closedError = error }
            wake.resume = state.waiters.map { ($0, .failure(error)) }
            state.waiters.removeAll()
            state.flowControl = nil
        }
        wake.perform()
    }

    /// Wakes every waiting `listen` with nil, and makes every later one that finds nothing
    /// queued return nil at once (the child's listens, once a stop arrived). Sticky: a stop
    /// that arrives before the listen begins (the child was busy between a `tell` and its
    /// `listen`) must still end a `while let … = listen()` loop.
    func stop() {
        var wake = Wake()
        state.withLock { state in
            state.stopped = true
            wake.resume = state.waiters.map { ($0, .success(nil)) }
            state.waiters.removeAll()
        }
        wake.perform()
    }

    /// The next message as a `T`; nil when `timeout` passes first. With `channel` (the one
    /// that feeds this mailbox), reads it for a moment before sleeping (`PollBudget`).
    func receive<T: Decodable>(_ type: T.Type, timeout: Duration?, polling channel: Channel? = nil) async throws -> T? {
        // The fast path: something is queued already.
        if let queued = try takeQueued(T.self) { return queued }
        if timeout == .zero { return nil }
        let (id, stopped, budget) = state.withLock { state in
            defer { state.nextID += 1 }
            return (state.nextID, state.stopped, state.pollBudget.duration)
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
                var wake = Wake()
                state.withLock { state in
                    let immediate: Result<Message?, any Error>?
                    if Task.isCancelled {
                        immediate = .failure(CancellationError())
                    } else if state.first != nil {
                        immediate = .success(state.takeFirst(capacity: ProcessingLimits.mailboxCapacity))
                    } else if let error = state.closedError {
                        immediate = .failure(error)
                    } else if state.stopped {
                        immediate = .success(nil)
                    } else {
                        immediate = nil
                    }
                    if let immediate {
                        wake.resume.append((Waiter(id: id, typeName: typeName, continuation: continuation), immediate))
                        return
                    }
                    // Armed under the lock, so that it cannot fire before the waiter is there.
                    let timer = timeout.map { limit in
                        OneShotTimer(after: limit) { [self] in
                            let expired = self.state.withLock { $0.removeWaiter(id) }
                            expired?.continuation.resume(returning: nil)
                        }
                    }
                    state.waiters.append(Waiter(id: id, typeName: typeName, continuation: continuation, timer: timer))
                }
                wake.perform()
            }
        } onCancel: {
            let cancelled = state.withLock { $0.removeWaiter(id) }
            cancelled?.timer?.cancel()
            cancelled?.continuation.resume(throwing: CancellationError())
        }
        if learns {
            learn(waited: message == nil ? .seconds(1) : ContinuousClock.now - start,
                  large: (message?.body.count ?? 0) >= Self.largeMessage)
        }
        guard let message else { return nil }
        guard message.typeName == typeName else {
            // Taken from the queue for a listen of another type: put it back at the front, for a
            // listen of the right type.
            state.withLock { $0.putBack(message) }
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
                return state.takeFirst(capacity: ProcessingLimits.mailboxCapacity)
            }
            if let error = state.closedError { throw error }
            return nil
        }
        return try queued?.decode(as: T.self)
    }
}

extension Message {
    /// What a queued message costs the mailbox, in bytes.
    var cost: Int { body.count + typeName.utf8.count }
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
