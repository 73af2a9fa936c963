/// The results of a streaming pool map (`imap`, `unorderedIMap`): iterate them with
/// `for try await`. An item that failed throws its `PoolItemError` where it comes; breaking
/// out of the loop, or cancelling the iterating task, stops the map and kills the workers
/// still running its items.
public struct PoolResults<Element: Sendable>: AsyncSequence, Sendable {
    let stream: AsyncThrowingStream<(Int, Result<Element, any Error>), any Error>
    let credits: Credits

    /// Starts iterating.
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: stream.makeAsyncIterator(), credits: credits)
    }

    /// Iterates the results.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<(Int, Result<Element, any Error>), any Error>.AsyncIterator
        let credits: Credits

        /// The next result, nil at the end; throws an item's failure where it comes.
        public mutating func next() async throws -> Element? {
            try await nextIndexed()?.element
        }

        mutating func nextIndexed() async throws -> (index: Int, element: Element)? {
            guard let (index, outcome) = try await base.next() else {
                try Task.checkCancellation()
                return nil
            }
            credits.release(1)
            switch outcome {
            case .success(let element): return (index, element)
            case .failure(let error): throw PoolItemError(index: index, error: error)
            }
        }
    }
}
