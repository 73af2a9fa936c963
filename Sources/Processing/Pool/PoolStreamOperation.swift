/// `pool.imap` and `pool.unorderedIMap`: the outputs as an `AsyncSequence`, as they come.
///
/// ```swift
/// for try await y in try pool.imap(items, Square()) { print(y) }              // input order
/// for try await y in try pool.unorderedIMap(items, { $0 * 2 }) { print(y) }   // fastest first
/// for try await y in try pool.imap.timeout(.seconds(60))(items, Square()) { print(y) }
/// for outcome in try pool.imap.sync()(items, Square()) { print(try outcome.get()) }  // blocking
/// ```
///
/// `timeout(_:)` bounds the whole map: past it the iteration throws `ResultTimeoutError`
/// and the workers still busy are killed. The map runs in the background from the call on,
/// a bounded number of items ahead of the consumer, so there is no separate
/// `background()` form; `sync()` gives a blocking `Sequence`.
public struct PoolStreamOperation: PoolMapping {
    let pool: Pool
    let ordered: Bool
    /// The map's current settings.
    public let settings: PoolMapSettings

    /// The same map with other settings.
    public func with(_ settings: PoolMapSettings) -> PoolStreamOperation {
        PoolStreamOperation(pool: pool, ordered: ordered, settings: settings)
    }
}

extension Pool {
    /// The outputs of work over every item as they come, in input order:
    /// `for try await y in try pool.imap(items, Square())`.
    public var imap: Modifiable<PoolStreamOperation, AsyncCall> {
        Modifiable(PoolStreamOperation(pool: self, ordered: true, settings: PoolMapSettings()), name: "Pool.imap")
    }

    /// The outputs of work over every item as they complete, fastest first.
    public var unorderedIMap: Modifiable<PoolStreamOperation, AsyncCall> {
        Modifiable(PoolStreamOperation(pool: self, ordered: false, settings: PoolMapSettings()), name: "Pool.unorderedIMap")
    }
}

extension Modifiable where Base: PoolMapping {
    /// Starts a streaming map of `work` over `inputs`.
    func stream<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: PoolJobWork<Input, Output>, pool: Pool, ordered: Bool
    ) -> PoolResults<Output> where Inputs.Element == Input {
        PoolJob.start(pool: pool, work: work, inputs: inputs, ordered: ordered, settings: base.settings,
                      deadline: limit.map { ($0, name) })
    }
}

extension Modifiable where Base == PoolStreamOperation, Form == AsyncCall {
    private func run<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: (Pool) throws -> PoolJobWork<Input, Output>
    ) throws -> PoolResults<Output> where Inputs.Element == Input {
        stream(inputs, try work(base.pool), pool: base.pool, ordered: base.ordered)
    }

    /// The outputs of `work` over every item of `inputs`, as they come.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        try run(SequenceInputs(base: inputs)) { try PoolJobWork(work, pool: $0) }
    }

    /// The outputs of `work` over every item of an asynchronous input, as they come.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) throws -> PoolResults<W.Output> where Inputs.Element == W.Input {
        try run(inputs) { try PoolJobWork(work, pool: $0) }
    }

    /// The outputs of a non-capturing closure over every item of `inputs`, as they come.
    public func callAsFunction<Inputs: Sequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) throws -> PoolResults<Output> where Inputs.Element: Codable & Sendable {
        try run(SequenceInputs(base: inputs)) { try PoolJobWork(ClosureWork(work), pool: $0) }
    }

    /// The outputs of a non-capturing closure over an asynchronous input, as they come.
    public func callAsFunction<Inputs: AsyncSequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) throws -> PoolResults<Output> where Inputs.Element: Codable & Sendable {
        try run(inputs) { try PoolJobWork(ClosureWork(work), pool: $0) }
    }

    /// The results of the processes, each run to its end in a process of its own, as they come.
    public func callAsFunction<Processes: Sequence & Sendable>(
        _ processes: Processes
    ) throws -> PoolResults<Processes.Element.Output> where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try run(SequenceInputs(base: processes)) { _ in try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }

    /// The results of the processes of an asynchronous input, as they come.
    public func callAsFunction<Processes: AsyncSequence & Sendable>(
        _ processes: Processes
    ) throws -> PoolResults<Processes.Element.Output> where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try run(processes) { _ in try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }
}

extension Modifiable where Base == PoolStreamOperation, Form == SyncCall {
    private func run<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        _ inputs: Inputs, _ work: (Pool) throws -> PoolJobWork<Input, Output>
    ) throws -> BlockingPoolResults<Output> where Inputs.Element == Input {
        try Completion<Output>.refuseToBlockInAsyncContext("\(name).sync()", instead: "for try await … in \(name)(…)")
        return BlockingPoolResults(stream(inputs, try work(base.pool), pool: base.pool, ordered: base.ordered))
    }

    /// The outcomes of `work` over every item of `inputs`, blocking for each.
    public func callAsFunction<Inputs: Sequence & Sendable, W: PoolWork>(
        _ inputs: Inputs, _ work: W
    ) throws -> BlockingPoolResults<W.Output> where Inputs.Element == W.Input {
        try run(SequenceInputs(base: inputs)) { try PoolJobWork(work, pool: $0) }
    }

    /// The outcomes of a non-capturing closure over every item of `inputs`, blocking for each.
    public func callAsFunction<Inputs: Sequence & Sendable, Output: Codable & Sendable>(
        _ inputs: Inputs, _ work: @escaping @Sendable (Inputs.Element) async throws -> Output
    ) throws -> BlockingPoolResults<Output> where Inputs.Element: Codable & Sendable {
        try run(SequenceInputs(base: inputs)) { try PoolJobWork(ClosureWork(work), pool: $0) }
    }

    /// The outcomes of the processes, each run to its end, blocking for each.
    public func callAsFunction<Processes: Sequence & Sendable>(
        _ processes: Processes
    ) throws -> BlockingPoolResults<Processes.Element.Output> where Processes.Element: Skprocess & Sendable, Processes.Element.Output: Codable & Sendable {
        try run(SequenceInputs(base: processes)) { _ in try PoolJobWork<Processes.Element, Processes.Element.Output>.processes(Processes.Element.self) }
    }
}
