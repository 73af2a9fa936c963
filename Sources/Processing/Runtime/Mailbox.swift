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
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    /// The next message as a `T`; nil when `timeout` passes first.
    func receive<T: Decodable>(_ type: T.Type, timeout: Duration?) async throws -> T? {
        // The fast path: something is queued already.
        if let queued = try takeQueued(T.self) { return queued }
        if timeout == .zero { return nil }

        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let message: Message? = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate: Result<Message?, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.first != nil { return .success(state.takeFirst()) }
                    if let error = state.closedError { return .failure(error) }
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
        guard let message else { return nil }
        guard message.typeName == TypeName.mangled(T.self) else {
            // Put it back at the front: a listen for the right type still gets it.
            putBack(message)
            throw message.mismatch(expected: T.self)
        }
        return try message.decode(as: T.self)
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
