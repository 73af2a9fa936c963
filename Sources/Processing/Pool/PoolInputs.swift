/// An input whose length may be known before it is read (for `PoolProgress.total`).
protocol CountedInputs {
    var knownCount: Int? { get }
}

/// A `Sequence` read as an `AsyncSequence`, so both kinds of input share one path.
struct SequenceInputs<Base: Sequence & Sendable>: AsyncSequence, Sendable, CountedInputs where Base.Element: Sendable {
    let base: Base

    var knownCount: Int? { (base as? any Collection)?.count }

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeIterator()) }

    struct Iterator: AsyncIteratorProtocol {
        var base: Base.Iterator
        mutating func next() async -> Base.Element? { base.next() }
    }
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
