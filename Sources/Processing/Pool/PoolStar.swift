/// A pool's maps with each item, a tuple, spread over the parameters of the work closure
/// (`pool.star()`):
///
/// ```swift
/// let sums = try await pool.star().map([(1, 2), (3, 4)]) { (a: Int, b: Int) in a + b }
/// ```
///
/// The closure must not capture values, as for `pool.map`; the tuple's elements must be
/// `Codable`. Every modifier of the plain maps applies.
public struct PoolStar: Sendable {
    let pool: Pool

    /// `pool.map` with spread items: the outputs in input order.
    public var map: Modifiable<PoolSpreadMapOperation, AsyncCall> {
        Modifiable(PoolSpreadMapOperation(inner: PoolMapOperation(pool: pool, ordered: true, settings: PoolMapSettings())), name: "Pool.star().map")
    }

    /// `pool.unorderedMap` with spread items: the outputs in completion order.
    public var unorderedMap: Modifiable<PoolSpreadMapOperation, AsyncCall> {
        Modifiable(PoolSpreadMapOperation(inner: PoolMapOperation(pool: pool, ordered: false, settings: PoolMapSettings())), name: "Pool.star().unorderedMap")
    }

    /// `pool.imap` with spread items: the outputs as they come, in input order.
    public var imap: Modifiable<PoolSpreadStreamOperation, AsyncCall> {
        Modifiable(PoolSpreadStreamOperation(inner: PoolStreamOperation(pool: pool, ordered: true, settings: PoolMapSettings())), name: "Pool.star().imap")
    }

    /// `pool.unorderedIMap` with spread items: the outputs as they complete.
    public var unorderedIMap: Modifiable<PoolSpreadStreamOperation, AsyncCall> {
        Modifiable(PoolSpreadStreamOperation(inner: PoolStreamOperation(pool: pool, ordered: false, settings: PoolMapSettings())), name: "Pool.star().unorderedIMap")
    }
}

extension Pool {
    /// The pool's maps with tuple items spread over the work closure's parameters.
    public func star() -> PoolStar { PoolStar(pool: self) }
}

/// `pool.star().map` and `pool.star().unorderedMap`.
public struct PoolSpreadMapOperation: PoolMapping {
    let inner: PoolMapOperation
    /// The map's current settings.
    public var settings: PoolMapSettings { inner.settings }
    /// The same map with other settings.
    public func with(_ settings: PoolMapSettings) -> PoolSpreadMapOperation { PoolSpreadMapOperation(inner: inner.with(settings)) }
}

/// `pool.star().imap` and `pool.star().unorderedIMap`.
public struct PoolSpreadStreamOperation: PoolMapping {
    let inner: PoolStreamOperation
    /// The map's current settings.
    public var settings: PoolMapSettings { inner.settings }
    /// The same map with other settings.
    public func with(_ settings: PoolMapSettings) -> PoolSpreadStreamOperation { PoolSpreadStreamOperation(inner: inner.with(settings)) }
}

/// The work and inputs of a spread map, as an ordinary map's.
private func spread<Inputs: AsyncSequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
    _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output, pool: Pool
) throws -> (SpreadInputs<Inputs, repeat each Argument>, PoolJobWork<SpreadArguments<repeat each Argument>, Output>)
where Inputs.Element == (repeat each Argument) {
    (SpreadInputs(base: inputs), try PoolJobWork(SpreadClosureWork(work), pool: pool))
}

/// Tuple items as `SpreadArguments`. Swift 6.3 crashes compiling any use of a value whose
/// type a requirement makes equal to a pack tuple (or a cast to one), so the item is
/// reinterpreted instead: a struct with one stored tuple has the tuple's layout, and the
/// public overloads require `Base.Element == (repeat each Argument)`.
struct SpreadInputs<Base: AsyncSequence & Sendable, each Argument: Codable & Sendable>: AsyncSequence, Sendable, CountedInputs {
    let base: Base

    var knownCount: Int? { (base as? any CountedInputs)?.knownCount }

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator()) }

    struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        mutating func next() async throws -> SpreadArguments<repeat each Argument>? {
            guard let item = try await base.next() else { return nil }
            return unsafeBitCast(item, to: SpreadArguments<repeat each Argument>.self)
        }
    }
}

extension Modifiable where Base == PoolSpreadMapOperation, Form == AsyncCall {
    /// Runs `work` over every item of `inputs`, each tuple spread over its parameters.
    public func callAsFunction<Inputs: Sequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) async throws -> [Output] where Inputs.Element == (repeat each Argument) {
        try await self(SequenceInputs(base: inputs), work)
    }

    /// Runs `work` over every item of an asynchronous input, each tuple spread over its parameters.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) async throws -> [Output] where Inputs.Element == (repeat each Argument) {
        let (mapped, job) = try spread(inputs, work, pool: base.inner.pool)
        let inner = base.inner
        return try await perform { try await inner.collect(mapped, job) }
    }
}

extension Modifiable where Base == PoolSpreadMapOperation, Form == BackgroundCall {
    /// Starts running `work` over every item of `inputs`; the future holds the outputs.
    public func callAsFunction<Inputs: Sequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) -> Future<[Output]> where Inputs.Element == (repeat each Argument) {
        let inner = base.inner
        return performInBackground {
            let (mapped, job) = try spread(SequenceInputs(base: inputs), work, pool: inner.pool)
            return try await inner.collect(mapped, job)
        }
    }
}

extension Modifiable where Base == PoolSpreadMapOperation, Form == SyncCall {
    /// Runs `work` over every item of `inputs`, blocking the calling thread.
    public func callAsFunction<Inputs: Sequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) throws -> [Output] where Inputs.Element == (repeat each Argument) {
        let inner = base.inner
        return try performBlocking {
            let (mapped, job) = try spread(SequenceInputs(base: inputs), work, pool: inner.pool)
            return try await inner.collect(mapped, job)
        }
    }
}

extension Modifiable where Base == PoolSpreadStreamOperation, Form == AsyncCall {
    /// The outputs of `work` over every item of `inputs`, each tuple spread over its parameters.
    public func callAsFunction<Inputs: Sequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) throws -> PoolResults<Output> where Inputs.Element == (repeat each Argument) {
        try self(SequenceInputs(base: inputs), work)
    }

    /// The outputs of `work` over an asynchronous input, each tuple spread over its parameters.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) throws -> PoolResults<Output> where Inputs.Element == (repeat each Argument) {
        let (mapped, job) = try spread(inputs, work, pool: base.inner.pool)
        return stream(mapped, job, pool: base.inner.pool, ordered: base.inner.ordered)
    }
}

extension Modifiable where Base == PoolSpreadStreamOperation, Form == SyncCall {
    /// The outcomes of `work` over every item of `inputs`, blocking for each.
    public func callAsFunction<Inputs: Sequence & Sendable, each Argument: Codable & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (repeat each Argument) async throws -> Output
    ) throws -> BlockingPoolResults<Output> where Inputs.Element == (repeat each Argument) {
        try Completion<Output>.refuseToBlockInAsyncContext("\(name).sync()", instead: "for try await … in \(name)(…)")
        let (mapped, job) = try spread(SequenceInputs(base: inputs), work, pool: base.inner.pool)
        return BlockingPoolResults(stream(mapped, job, pool: base.inner.pool, ordered: base.inner.ordered))
    }
}
