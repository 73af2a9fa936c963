/// A `Sequence` read as an `AsyncSequence`, so both kinds of input share one path.
struct SequenceInputs<Base: Sequence & Sendable>: AsyncSequence, Sendable where Base.Element: Sendable {
    let base: Base

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeIterator()) }

    struct Iterator: AsyncIteratorProtocol {
        var base: Base.Iterator
        mutating func next() async -> Base.Element? { base.next() }
    }
}

/// `Pool.map` and `Pool.unorderedMap`: all results as an array.
public struct PoolMapOperation: Sendable {
    let pool: Pool
    let ordered: Bool
    let chunkSize: Int?

    func collect<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: PoolJobWork<Input, Output>
    ) async throws -> [Output] where Inputs.Element == Input {
        // Collected in completion order, so the first failure in time ends the map at once.
        let results = PoolJob.start(pool: pool, work: work, inputs: inputs, ordered: false, chunkSize: chunkSize)
        var iterator = results.makeAsyncIterator()
        var outputs: [Output?] = []
        var inCompletionOrder: [Output] = []
        while let batch = try await iterator.nextBatch() {
            if ordered, outputs.count < batch.firstIndex + batch.outcomes.count {
                outputs.append(contentsOf: repeatElement(nil, count: batch.firstIndex + batch.outcomes.count - outputs.count))
            }
            for (offset, outcome) in batch.outcomes.enumerated() {
                let output = try outcome.item(at: batch.firstIndex + offset)
                if ordered { outputs[batch.firstIndex + offset] = output } else { inCompletionOrder.append(output) }
            }
        }
        return ordered ? outputs.map { $0! } : inCompletionOrder
    }
}

extension Pool {
    /// Runs `work` over every item and returns the outputs in input order:
    /// `try await pool.map(items, Square())`. Throws the first `PoolItemError` (in time),
    /// after stopping the rest.
    public var map: Modifiable<PoolMapOperation, AsyncCall> {
        Modifiable(PoolMapOperation(pool: self, ordered: true, chunkSize: nil), name: "Pool.map")
    }

    /// Like `map`, with the outputs in completion order, fastest first.
    public var unorderedMap: Modifiable<PoolMapOperation, AsyncCall> {
        Modifiable(PoolMapOperation(pool: self, ordered: false, chunkSize: nil), name: "Pool.unorderedMap")
    }

    /// The outputs of `work` over every item as they come, in input order:
    /// `for try await y in pool.imap(items, Square())`.
    public func imap<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W, chunkSize: Int? = nil
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        try imap(SequenceInputs(base: inputs), work, chunkSize: chunkSize)
    }

    /// The outputs of `work` over an asynchronous input as they come, in input order.
    public func imap<Inputs: AsyncSequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W, chunkSize: Int? = nil
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        PoolJob.start(pool: self, work: try PoolJobWork(work, pool: self), inputs: inputs, ordered: true, chunkSize: chunkSize)
    }

    /// The outputs of `work` over every item as they complete, fastest first.
    public func unorderedIMap<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W, chunkSize: Int? = nil
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        try unorderedIMap(SequenceInputs(base: inputs), work, chunkSize: chunkSize)
    }

    /// The outputs of `work` over an asynchronous input as they complete, fastest first.
    public func unorderedIMap<Inputs: AsyncSequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W, chunkSize: Int? = nil
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        PoolJob.start(pool: self, work: try PoolJobWork(work, pool: self), inputs: inputs, ordered: false, chunkSize: chunkSize)
    }
}

extension Modifiable where Base == PoolMapOperation {
    /// The same map with a fixed batch size instead of one tuned from measured cost.
    public func chunkSize(_ size: Int) -> Modifiable<PoolMapOperation, Form> {
        Modifiable(PoolMapOperation(pool: base.pool, ordered: base.ordered, chunkSize: max(1, size)),
                   name: name, limit: limit, currentRun: currentRun)
    }
}

extension Modifiable where Base == PoolMapOperation, Form == AsyncCall {
    /// Runs `work` over every item of `inputs`.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) async throws -> [W.Output] where Inputs.Element == W.Input {
        try await self(SequenceInputs(base: inputs), work)
    }

    /// Runs `work` over every item of an asynchronous input.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) async throws -> [W.Output] where Inputs.Element == W.Input {
        let (base, job) = (base, try PoolJobWork(work, pool: base.pool))
        return try await perform { try await base.collect(inputs, job) }
    }
}

extension Modifiable where Base == PoolMapOperation, Form == BackgroundCall {
    /// Starts running `work` over every item of `inputs`; the future holds the outputs.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) -> Future<[W.Output]> where Inputs.Element == W.Input {
        let base = base
        return performInBackground { try await base.collect(SequenceInputs(base: inputs), PoolJobWork(work, pool: base.pool)) }
    }
}

extension Modifiable where Base == PoolMapOperation, Form == SyncCall {
    /// Runs `work` over every item of `inputs`, blocking the calling thread.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) throws -> [W.Output] where Inputs.Element == W.Input {
        let base = base
        return try performBlocking { try await base.collect(SequenceInputs(base: inputs), PoolJobWork(work, pool: base.pool)) }
    }
}
