/// The results of a streaming pool map (`imap`, `unorderedIMap`): iterate them with
/// `for try await`. An item that failed throws its `PoolItemError` where it comes; breaking
/// out of the loop, or cancelling the iterating task, stops the map and kills the workers
/// still running its items.
public struct PoolResults<Element: Sendable>: AsyncSequence, Sendable {
    let stream: AsyncThrowingStream<DeliveredBatch<Element>, any Error>
    let credits: Credits

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: stream.makeAsyncIterator(), credits: credits)
    }

    /// Iterates the results.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<DeliveredBatch<Element>, any Error>.AsyncIterator
        let credits: Credits
        private var batch = DeliveredBatch<Element>(firstIndex: 0, outcomes: .outputs([]))
        private var position = 0

        init(base: AsyncThrowingStream<DeliveredBatch<Element>, any Error>.AsyncIterator, credits: Credits) {
            self.base = base
            self.credits = credits
        }

        /// The next result, nil at the end; throws an item's failure where it comes.
        public mutating func next() async throws -> Element? {
            if position == batch.outcomes.count {
                guard let next = try await nextBatch() else { return nil }
                (batch, position) = (next, 0)
            }
            defer { position += 1 }
            return try batch.outcomes[position].item(at: batch.firstIndex + position)
        }

        /// The next whole batch of outcomes (for maps that collect everything).
        mutating func nextBatch() async throws -> DeliveredBatch<Element>? {
            guard let next = try await base.next() else {
                try Task.checkCancellation()
                return nil
            }
            credits.release(next.outcomes.count)
            return next
        }
    }
}

extension Result {
    /// The value, or the failure as the `PoolItemError` of item `index`.
    func item(at index: Int) throws -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error): throw PoolItemError(index: index, error: error)
        }
    }
}

/// The results of a streaming pool map for synchronous callers (`pool.imap.sync()`): a
/// `Sequence` of each item's outcome, whose iteration blocks the calling thread. Iteration
/// ends after the first failure. Dropping it before the end stops the map.
///
/// ```swift
/// for outcome in try pool.imap.sync()(items, Square()) {
///     print(try outcome.get())
/// }
/// ```
public final class BlockingPoolResults<Element: Sendable>: Sequence, IteratorProtocol, @unchecked Sendable {
    // @unchecked: `iterator` and `batch`/`position`/`ended` are touched by one `next()` at a
    // time: the calling thread, or the task a `next()` started and then blocks on (its
    // `Completion` orders the accesses). Concurrent `next()` calls are not supported.
    private var iterator: PoolResults<Element>.Iterator
    private var batch = DeliveredBatch<Element>(firstIndex: 0, outcomes: .outputs([]))
    private var position = 0
    private var ended = false

    init(_ results: PoolResults<Element>) {
        iterator = results.makeAsyncIterator()
    }

    deinit {
        iterator.credits.cancel()
    }

    /// The next item's outcome, blocking until it is known; nil at the end.
    public func next() -> Result<Element, any Error>? {
        guard !ended else { return nil }
        if position == batch.outcomes.count {
            let completion = Completion<DeliveredBatch<Element>?>()
            Task { [self] in
                do {
                    completion.complete(.success(try await iterator.nextBatch()))
                } catch {
                    completion.complete(.failure(error))
                }
            }
            switch completion.wait() {
            case .success(let next?):
                (batch, position) = (next, 0)
            case .success(nil):
                ended = true
                return nil
            case .failure(let error):
                ended = true
                return .failure(error)
            }
        }
        defer { position += 1 }
        let index = batch.firstIndex + position
        let outcome = batch.outcomes[position].mapError { PoolItemError(index: index, error: $0) as any Error }
        if case .failure = outcome { ended = true }
        return outcome
    }
}
