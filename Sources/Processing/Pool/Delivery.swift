import Synchronization

/// Hands outcomes to the consumer a batch at a time: at once, or in input order through a
/// reorder buffer. (Per item, the stream's lock and wake-up would cost more than the work.)
final class Delivery<Output: Sendable>: Sendable {
    private struct State {
        var nextIndex = 0
        var waiting: [Int: BatchOutcomes<Output>] = [:]
    }

    private let continuation: AsyncThrowingStream<DeliveredBatch<Output>, any Error>.Continuation
    private let ordered: Bool
    private let state = Mutex(State())
    private let progressHandler: (@Sendable (PoolProgress) -> Void)?
    /// Held while the handler runs, so that its calls come one at a time and in order.
    private let progress: Mutex<PoolProgress>

    init(continuation: AsyncThrowingStream<DeliveredBatch<Output>, any Error>.Continuation, ordered: Bool,
         progress: (@Sendable (PoolProgress) -> Void)?, total: Int?) {
        self.continuation = continuation
        self.ordered = ordered
        self.progressHandler = progress
        self.progress = Mutex(PoolProgress(completed: 0, failed: 0, total: total))
    }

    /// The input has ended: the total is known now.
    func inputEnded(total: Int) {
        guard let progressHandler else { return }
        progress.withLock { progress in
            guard progress.total == nil else { return }
            progress.total = total
            progressHandler(progress)
        }
    }

    func deliver(from firstIndex: Int, _ outcomes: BatchOutcomes<Output>) {
        if let progressHandler {
            let failed = outcomes.failureCount
            progress.withLock { progress in
                progress.completed += outcomes.count
                progress.failed += failed
                progressHandler(progress)
            }
        }
        guard ordered else {
            continuation.yield(DeliveredBatch(firstIndex: firstIndex, outcomes: outcomes))
            return
        }
        // Yield under the lock so that two slots cannot interleave their batches out of order.
        state.withLock { state in
            state.waiting[firstIndex] = outcomes
            while let ready = state.waiting.removeValue(forKey: state.nextIndex) {
                continuation.yield(DeliveredBatch(firstIndex: state.nextIndex, outcomes: ready))
                state.nextIndex += ready.count
            }
        }
    }
}
