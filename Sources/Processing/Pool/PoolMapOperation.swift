/// `pool.map` and `pool.unorderedMap`: run work over every item and return all the outputs.
///
/// Work is a `PoolWork` value, a non-capturing closure, or the items themselves when they are
/// `Skprocess` values. Inputs are a `Sequence` or an `AsyncSequence`:
///
/// ```swift
/// let squares = try await pool.map(1...100, Square())
/// let doubled = try await pool.map(1...100) { $0 * 2 }
/// let results = try await pool.map(images.map { Upscale(image: $0) })   // each runs its lifecycle
/// let soon    = pool.map.timeout(.seconds(30)).background()(1...100, Square())
/// ```
public struct PoolMapOperation: PoolMapping {
    let pool: Pool
    let ordered: Bool
    /// The map's current settings.
    public let settings: PoolMapSettings

    /// The same map with other settings.
    public func with(_ settings: PoolMapSettings) -> PoolMapOperation {
        PoolMapOperation(pool: pool, ordered: ordered, settings: settings)
    }

    func collect<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: PoolJobWork<Input, Output>
    ) async throws -> [Output] where Inputs.Element == Input {
        try await PoolMapOperation.collect(PoolJob.start(pool: pool, work: work, inputs: inputs, ordered: false, settings: settings),
                                           ordered: ordered)
    }

    /// Every output of a map, in input order or in completion order. The map runs unordered
    /// either way, so that the first failure in time ends it at once.
    static func collect<Output>(_ results: PoolResults<Output>, ordered: Bool) async throws -> [Output] {
        var iterator = results.makeAsyncIterator()
        // Whole batches, moved in bulk: per-item work here runs unspecialised.
        var batches: [Int: [Output]] = [:]
        var inCompletionOrder: [Output] = []
        while let batch = try await iterator.nextBatch() {
            let outputs = try batch.outcomes.outputs(firstIndex: batch.firstIndex)
            if ordered { batches[batch.firstIndex] = outputs } else { inCompletionOrder.append(contentsOf: outputs) }
        }
        guard ordered else { return inCompletionOrder }
        var inOrder: [Output] = []
        inOrder.reserveCapacity(batches.values.reduce(0) { $0 + $1.count })
        for firstIndex in batches.keys.sorted() { inOrder.append(contentsOf: batches[firstIndex]!) }
        return inOrder
    }
}

extension Pool {
    /// Runs work over every item and returns the outputs in input order:
    /// `try await pool.map(items, Square())`, `try await pool.map(items) { $0 * 2 }`.
    /// Throws the first `PoolItemError` (in time), after stopping the rest.
    public var map: Modifiable<PoolMapOperation, AsyncCall> {
        Modifiable(PoolMapOperation(pool: self, ordered: true, settings: PoolMapSettings()), name: "Pool.map")
    }

    /// Like `map`, with the outputs in completion order, fastest first.
    public var unorderedMap: Modifiable<PoolMapOperation, AsyncCall> {
        Modifiable(PoolMapOperation(pool: self, ordered: false, settings: PoolMapSettings()), name: "Pool.unorderedMap")
    }
}

extension Modifiable where Base == PoolMapOperation, Form == AsyncCall {
    private func run<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: () throws -> PoolJobWork<Input, Output>
    ) async throws -> [Output] where Inputs.Element == Input {
        let (base, job) = (base, try work())
        return try await perform { try await base.collect(inputs, job) }
    }

    /// Runs `work` over every item of `inputs`.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) async throws -> [W.Output] where Inputs.Element == W.Input {
        try await run(SequenceInputs(base: inputs)) { try PoolJobWork(work, pool: base.pool) }
    }

    /// Runs `work` over every item of an asynchronous input.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) async throws -> [W.Output] where Inputs.Element == W.Input {
        try await run(inputs) { try PoolJobWork(work, pool: base.pool) }
    }

    /// Runs a non-capturing closure over every item of `inputs`: `pool.map(items) { $0 * 2 }`.
    /// A closure that captures values is refused (`ProcessingError.Code.closureNotTransferable`):
    /// pass the values in the items, or use a `PoolWork` type.
    public func callAsFunction<Inputs: Sequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) async throws -> [Output] where Inputs.Element: Codable & Sendable {
        try await run(SequenceInputs(base: inputs)) { try PoolJobWork(ClosureWork(work), pool: base.pool) }
    }

    /// Runs a non-capturing closure over every item of an asynchronous input.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) async throws -> [Output] where Inputs.Element: Codable & Sendable {
        try await run(inputs) { try PoolJobWork(ClosureWork(work), pool: base.pool) }
    }

    /// Runs every process to its end, each in a child process of its own (at most `workers`
    /// at once), with its whole lifecycle (`runs`, `lives`, time-outs), and returns their
    /// results.
    public func callAsFunction<Processes: Sequence & Sendable>(
        _ processes: Processes
    ) async throws -> [Processes.Element.Output] where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try await run(SequenceInputs(base: processes)) { try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }

    /// Runs every process of an asynchronous input to its end (see the `Sequence` form).
    public func callAsFunction<Processes: AsyncSequence & Sendable>(
        _ processes: Processes
    ) async throws -> [Processes.Element.Output] where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try await run(processes) { try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }
}

extension Modifiable where Base == PoolMapOperation, Form == BackgroundCall {
    private func run<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable () throws -> PoolJobWork<Input, Output>
    ) -> Future<[Output]> where Inputs.Element == Input {
        let base = base
        return performInBackground { try await base.collect(inputs, work()) }
    }

    /// Starts running `work` over every item of `inputs`; the future holds the outputs.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) -> Future<[W.Output]> where Inputs.Element == W.Input {
        let pool = base.pool
        return run(SequenceInputs(base: inputs)) { try PoolJobWork(work, pool: pool) }
    }

    /// Starts running a non-capturing closure over every item of `inputs`.
    public func callAsFunction<Inputs: Sequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) -> Future<[Output]> where Inputs.Element: Codable & Sendable {
        let pool = base.pool
        return run(SequenceInputs(base: inputs)) { try PoolJobWork(ClosureWork(work), pool: pool) }
    }

    /// Starts running every process; the future holds their results.
    public func callAsFunction<Processes: Sequence & Sendable>(
        _ processes: Processes
    ) -> Future<[Processes.Element.Output]> where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        run(SequenceInputs(base: processes)) { try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }
}

extension Modifiable where Base == PoolMapOperation, Form == SyncCall {
    private func run<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable () throws -> PoolJobWork<Input, Output>
    ) throws -> [Output] where Inputs.Element == Input {
        let base = base
        return try performBlocking { try await base.collect(inputs, work()) }
    }

    /// Runs `work` over every item of `inputs`, blocking the calling thread.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) throws -> [W.Output] where Inputs.Element == W.Input {
        let pool = base.pool
        return try run(SequenceInputs(base: inputs)) { try PoolJobWork(work, pool: pool) }
    }

    /// Runs a non-capturing closure over every item of `inputs`, blocking the calling thread.
    public func callAsFunction<Inputs: Sequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) throws -> [Output] where Inputs.Element: Codable & Sendable {
        let pool = base.pool
        return try run(SequenceInputs(base: inputs)) { try PoolJobWork(ClosureWork(work), pool: pool) }
    }

    /// Runs every process to its end, blocking the calling thread.
    public func callAsFunction<Processes: Sequence & Sendable>(
        _ processes: Processes
    ) throws -> [Processes.Element.Output] where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try run(SequenceInputs(base: processes)) { try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }
}
