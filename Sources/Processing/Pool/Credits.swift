import Synchronization

/// A counting semaphore for items ahead of the consumer, with cancellation.
final class Credits: Sendable {
    private struct State {
        var available: Int
        var waiters: [(id: UInt64, count: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
        var cancelled = false

        /// Takes credits for the waiters at the head that fit now, in order.
        mutating func handOut() -> [CheckedContinuation<Void, any Error>] {
            var ready: [CheckedContinuation<Void, any Error>] = []
            while let first = waiters.first, first.count <= available {
                available -= first.count
                ready.append(waiters.removeFirst().continuation)
            }
            return ready
        }
    }

    private let state: Mutex<State>
    /// The most credits there are (what one `acquire` takes at most).
    let capacity: Int

    init(_ count: Int) {
        capacity = count
        state = Mutex(State(available: count))
    }

    /// Takes `count` credits (at most the capacity), waiting until they are free; throws
    /// `CancellationError` when the map or the waiting task is cancelled.
    func acquire(_ count: Int) async throws {
        let count = min(count, capacity)
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = state.withLock { state in
                    if state.cancelled || Task.isCancelled { return .failure(CancellationError()) }
                    if state.waiters.isEmpty, state.available >= count {
                        state.available -= count
                        return .success(())
                    }
                    state.waiters.append((id, count, continuation))
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            let (waiter, ready): (CheckedContinuation<Void, any Error>?, [CheckedContinuation<Void, any Error>]) = state.withLock { state in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
                let waiter = state.waiters.remove(at: index).continuation
                // The waiters behind it may fit now.
                return (waiter, state.handOut())
            }
            waiter?.resume(throwing: CancellationError())
            for continuation in ready { continuation.resume() }
        }
    }

    func release(_ count: Int) {
        let ready = state.withLock { state in
            state.available += count
            return state.handOut()
        }
        for continuation in ready { continuation.resume() }
    }

    func cancel() {
        let waiters = state.withLock { state in
            state.cancelled = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: CancellationError()) }
    }
}
