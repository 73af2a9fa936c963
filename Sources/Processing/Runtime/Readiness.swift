import Synchronization

/// One wait for one event: the first of the event (`fire`) and the waiting task's cancellation
/// ends it. For `Reactor.waitUntilReady`.
final class Readiness: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Void, any Error>)
        case fired
        case cancelled
    }

    private let state = Mutex(State.idle)

    /// The event happened.
    func fire() {
        let waiter: CheckedContinuation<Void, any Error>? = state.withLock { state in
            switch state {
            case .waiting(let continuation):
                state = .fired
                return continuation
            case .idle:
                state = .fired
                return nil
            case .fired, .cancelled:
                return nil
            }
        }
        waiter?.resume()
    }

    /// Waits for the event (at once if it happened already).
    func wait() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now: Result<Void, any Error>? = state.withLock { state in
                    switch state {
                    case .fired: return .success(())
                    case .cancelled: return .failure(CancellationError())
                    case .idle, .waiting:
                        state = .waiting(continuation)
                        return nil
                    }
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Void, any Error>? = state.withLock { state in
                defer { state = .cancelled }
                if case .waiting(let continuation) = state { return continuation }
                return nil
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
