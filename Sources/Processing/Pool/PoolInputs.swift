/// An input whose length may be known before it is read (for `PoolProgress.total`).
protocol CountedInputs {
    var knownCount: Int? { get }
}

/// A `Sequence` read as an `AsyncSequence`, so both kinds of input share one path.
struct SequenceInputs<Base: Sequence & Sendable>: AsyncSequence, Sendable, CountedInputs where Base.Element: Sendable {
    let base: Base

    var knownCount: Int? { (base as? any Collection)?.count }

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeIterator(), array: base as? [Base.Element]) }

    struct Iterator: AsyncIteratorProtocol, BulkIterator {
        var base: Base.Iterator
        /// The input when it is an array, taken from in slices.
        let array: [Base.Element]?
        var position = 0

        mutating func next() async -> Base.Element? {
            if let array {
                guard position < array.count else { return nil }
                defer { position += 1 }
                return array[position]
            }
            return base.next()
        }

        mutating func next(upTo count: Int) -> [Base.Element] {
            if let array {
                let end = Swift.min(array.count, position + count)
                defer { position = end }
                return Array(array[position..<end])
            }
            var items: [Base.Element] = []
            items.reserveCapacity(count)
            while items.count < count, let item = base.next() { items.append(item) }
            return items
        }
    }
}

/// An iterator that can hand out many items at once without suspending: a `Sequence`'s.
protocol BulkIterator<Element> {
    associatedtype Element
    /// Up to `count` items; fewer only at the end.
    mutating func next(upTo count: Int) -> [Element]
}

/// An input with each item changed on the way (tuples into `SpreadArguments`, for `star()`).
struct MappedInputs<Base: AsyncSequence & Sendable, Element: Sendable>: AsyncSequence, Sendable, CountedInputs {
    let base: Base
    let transform: @Sendable (Base.Element) -> Element

    var knownCount: Int? { (base as? any CountedInputs)?.knownCount }

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator(), transform: transform) }

    struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let transform: @Sendable (Base.Element) -> Element
        mutating func next() async throws -> Element? {
            try await base.next().map(transform)
        }
    }
}
