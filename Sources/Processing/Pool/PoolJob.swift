import Synchronization

/// One item's failure in a pool map: which item, and why (`RemoteError` for an error the work
/// threw, `ProcessCrashError` when the worker running it died).
public struct PoolItemError: Error, CustomStringConvertible {
    /// The item's position in the input (0-based).
    public let index: Int
    /// The original error.
    public let error: any Error

    /// A readable account of the error or value.
    public var description: String { "PoolItemError: item \(index) failed: \(error)" }
}

/// The error of an item that ran past the map's `itemTimeout` (inside its `PoolItemError`).
/// The worker running it was killed and is replaced.
public struct PoolTimeoutError: Error, Sendable, CustomStringConvertible {
    /// The limit the item (or its batch, with `chunkSize` above 1) overran.
    public let timeout: Duration

    /// A readable account of the error.
    public var description: String {
        "PoolTimeoutError: the item ran past its timeout of \(timeout); the worker running it was killed"
    }
}

/// What a map runs its items with, ready to travel.
struct PoolJobWork<Input: Sendable, Output: Sendable>: Sendable {
    enum Runner: Sendable {
        /// Batches on pool workers: the work's install record, and how to encode inputs and
        /// decode replies.
        case workers(
            install: PoolWorkInstall,
            attachments: AttachedDescriptors?,
            encode: @Sendable ([Input]) throws -> [UInt8],
            decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
        )
        /// Each item its own process (`Skprocess` values): its whole lifecycle needs one.
        case processes(@Sendable (Input) async throws -> Result<Output, any Error>)
    }

    let runner: Runner

    /// The id batch sizes are learned under; nil when there is nothing to learn.
    var workID: Int? {
        if case .workers(let install, _, _, _) = runner { return install.id }
        return nil
    }
}

extension PoolJobWork {
    init<W: PoolWork>(_ work: W, pool: Pool) throws where W.Input == Input, W.Output == Output {
        let ((typeName, state), attachments) = try DescriptorTransfer.collecting(moves: true) {
            try TypeName.encodeForChild(work, as: "pool work", giving: W.Output.self, to: "the workers")
        }
        // Work with pipe points is installed afresh for every map: its descriptors are this map's.
        let id = attachments == nil ? pool.workID(for: Array(typeName.utf8) + state) : pool.uniqueWorkID()
        let install = PoolWorkInstall(id: id, typeName: typeName, state: state)
        runner = .workers(install: install, attachments: attachments, encode: { inputs in
            do {
                return try BinaryEncoder().encode(inputs)
            } catch {
                throw ProcessingError(.encodingFailed, "items of type \(String(reflecting: Input.self)) could not be encoded: \(error)")
            }
        }, decode: { bytes in
            switch try BinaryDecoder().decode(BatchReply<Output>.self, from: bytes) {
            case .outputs(let outputs): return .outputs(outputs)
            case .outcomes(let outcomes):
                return .mixed(outcomes.map { outcome in
                    switch outcome {
                    case .output(let output): .success(output)
                    case .failure(let payload): .failure(payload.remoteError)
                    }
                })
            }
        })
    }

    /// `Skprocess` values as items: each runs in a process of its own, its result the output.
    static func processes<P: Skprocess & Sendable>(_ type: P.Type) throws -> PoolJobWork<P, P.Output> where P.Output: Codable & Sendable {
        _ = try TypeName.locatable(P.self, role: "a process run by a pool")
        _ = try TypeName.locatable(P.Output.self, role: "what \(String(reflecting: P.self)) gives back")
        return PoolJobWork<P, P.Output>(runner: .processes { process in
            do {
                return .success(try await withProcess(process) { handle in
                    // No one holds this handle to listen: what the process tells is dropped
                    // (and said so, once), so that it cannot wait for a listener forever.
                    handle.core.mailbox.dropMessages(because: "\(String(reflecting: P.self)), run by a pool, told messages, which no one can listen to")
                    return try await handle.result()
                })
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                return .failure(error)
            }
        })
    }
}

/// Drives one map: pulls items in batches, runs the batches on workers (one per slot), and
/// delivers each item's outcome, in input order or as they complete.
enum PoolJob {
    /// At most this many items are taken from the input and not yet consumed.
    static let itemsAhead = 8192
    /// A batch aims to take about this long in a worker.
    static let batchTarget = Duration.milliseconds(4)
    static let largestBatch = 1024

    /// Starts the map. `deadline` bounds the whole map (a streaming map's `timeout`): past it
    /// the results end with `ResultTimeoutError` and the workers still busy are killed.
    static func start<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        pool: Pool, work: PoolJobWork<Input, Output>, inputs: Inputs, ordered: Bool,
        settings: PoolMapSettings, deadline: (limit: Duration, operation: String)? = nil
    ) -> PoolResults<Output> where Inputs.Element == Input {
        let (stream, continuation) = AsyncThrowingStream<DeliveredBatch<Output>, any Error>.makeStream()
        // Room for at least one whole batch, whatever `chunkSize` asks for.
        let credits = Credits(max(itemsAhead, settings.chunkSize ?? 0))
        do {
            // Registered now, at the call: a close() that comes after it lets this map finish.
            try pool.beginMap()
        } catch {
            continuation.finish(throwing: error)
            return PoolResults(stream: stream, credits: credits)
        }
        let delivery = Delivery(continuation: continuation, ordered: ordered, progress: settings.progress,
                                total: (inputs as? any CountedInputs)?.knownCount)
        let driver = Task {
            defer { pool.endMap() }
            let feeder = Feeder(inputs)
            do {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for _ in 0..<pool.workers {
                        group.addTask {
                            let slot = PoolSlot(pool: pool, work: work, settings: settings)
                            defer { slot.finish() }
                            try await slot.run(feeder: feeder, credits: credits, delivery: delivery)
                            return true
                        }
                    }
                    if let deadline {
                        group.addTask {
                            try? await Task.sleep(for: deadline.limit)
                            if Task.isCancelled { return false }
                            throw ResultTimeoutError(operation: deadline.operation, timeout: deadline.limit, currentRun: 0)
                        }
                    }
                    var slotsRunning = pool.workers
                    while slotsRunning > 0, let isSlot = try await group.next() {
                        if isSlot { slotsRunning -= 1 }
                    }
                    group.cancelAll()
                }
                if await !feeder.isExhausted {
                    throw ProcessingError(.invalidState, "the pool was closed or terminated before this map could finish")
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in
            driver.cancel()
            credits.cancel()
        }
        return PoolResults(stream: stream, credits: credits)
    }
}

/// A worker (or a place for processes) and the loop of batches it runs for one map, the batch
/// size tuned from measured cost. Used by one task only.
final class PoolSlot<Input: Sendable, Output: Sendable> {
    /// The worker running an item died (crash, kill, item time-out): the items it had fail
    /// with `error`, unless retried.
    private struct WorkerLost: Error {
        var error: any Error
    }

    private let pool: Pool
    private let work: PoolJobWork<Input, Output>
    private let settings: PoolMapSettings
    private var worker: PoolWorker?
    private var size: Int

    init(pool: Pool, work: PoolJobWork<Input, Output>, settings: PoolMapSettings) {
        (self.pool, self.work, self.settings) = (pool, work, settings)
        if let chunkSize = settings.chunkSize {
            size = chunkSize
        } else if settings.itemTimeout != nil {
            size = 1
        } else {
            size = work.workID.map(pool.learnedBatchSize(for:)) ?? 1
        }
    }

    private var tunesSize: Bool { settings.chunkSize == nil && settings.itemTimeout == nil && work.workID != nil }

    /// Gives the worker back and keeps the batch size learned, for the next map.
    func finish() {
        if let worker { pool.checkIn(worker) }
        worker = nil
        if tunesSize, let workID = work.workID { pool.learn(batchSize: size, for: workID) }
    }

    func run<Inputs: AsyncSequence & Sendable>(
        feeder: Feeder<Inputs>, credits: Credits, delivery: Delivery<Output>
    ) async throws where Inputs.Element == Input {
        while true {
            try await credits.acquire(size)
            guard let batch = try await feeder.take(size) else {
                credits.release(size)
                if let total = await feeder.total { delivery.inputEnded(total: total) }
                return
            }
            if batch.items.count < size { credits.release(size - batch.items.count) }
            let started = ContinuousClock.now
            guard let outcomes = try await run(batch.items, firstIndex: batch.firstIndex) else {
                // The pool closed before this batch could start: another slot may take it.
                await feeder.putBack(batch)
                return
            }
            if tunesSize {
                let perItem = (ContinuousClock.now - started) / batch.items.count
                let fitting = perItem > .zero ? Int(PoolJob.batchTarget / perItem) : PoolJob.largestBatch
                size = min(max(1, fitting), size * 8, PoolJob.largestBatch)
            }
            delivery.deliver(from: batch.firstIndex, outcomes)
        }
    }

    /// Each item's outcome, or nil if the pool closed before the items could start.
    private func run(_ items: [Input], firstIndex: Int) async throws -> BatchOutcomes<Output>? {
        switch work.runner {
        case .processes(let runProcess):
            var outcomes: [Result<Output, any Error>] = []
            for item in items { outcomes.append(try await runProcess(item)) }
            return .mixed(outcomes)
        case .workers(let install, let attachments, let encode, let decode):
            do {
                return try await attempt(items, firstIndex: firstIndex, install: install, attachments: attachments,
                                         encode: encode, decode: decode)
            } catch let error as ProcessingError where error.code == .messageTooLarge {
                // The batch is over the size limit (large items, a batch size tuned by time):
                // smaller batches from now on, and these items one at a time, so that only an
                // item too large on its own fails.
                size = max(1, items.count / 2)
                guard items.count > 1 else { return .mixed([.failure(error)]) }
                var outcomes: [Result<Output, any Error>] = []
                for (position, item) in zip(items.indices, items) {
                    guard let single = try await run([item], firstIndex: firstIndex + position) else { return nil }
                    outcomes.append(single[0])
                }
                return .mixed(outcomes)
            } catch let lost as WorkerLost {
                guard settings.retries > 0 else { return .mixed(Array(repeating: .failure(lost.error), count: items.count)) }
                // Once more each, one at a time, so that the item that killed the worker is found.
                var outcomes: [Result<Output, any Error>] = []
                for (position, item) in zip(items.indices, items) {
                    var lastLoss = lost
                    var outcome: Result<Output, any Error>?
                    for _ in 0..<settings.retries {
                        do {
                            guard let single = try await attempt([item], firstIndex: firstIndex + position, install: install,
                                                                 attachments: attachments, encode: encode, decode: decode) else {
                                throw ProcessingError(.invalidState, "the pool was closed or terminated while this map was retrying an item")
                            }
                            outcome = single[0]
                            break
                        } catch let lost as WorkerLost {
                            lastLoss = lost
                        }
                    }
                    outcomes.append(outcome ?? .failure(lastLoss.error))
                }
                return .mixed(outcomes)
            }
        }
    }

    /// Runs `items` (the input's from `firstIndex` on) as one batch on this slot's worker
    /// (checked out first if it has none). Throws `WorkerLost` if the worker dies, overruns the
    /// item time-out, or answers with something that is not this batch's results.
    private func attempt(
        _ items: [Input], firstIndex: Int, install: PoolWorkInstall, attachments: AttachedDescriptors?,
        encode: @Sendable ([Input]) throws -> [UInt8],
        decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
    ) async throws -> BatchOutcomes<Output>? {
        if worker == nil {
            worker = try await pool.checkOut()
            if worker == nil { return nil }
        }
        let positions = firstIndex...(firstIndex + items.count - 1)
        do {
            let reply = try await worker!.run(batch: encode(items), work: install, attachments: attachments,
                                              timeout: settings.itemTimeout.map { $0 * items.count })
            return try Self.check(reply, of: items.count, positions: positions, decode: decode)
        } catch var crash as ProcessCrashError {
            crash.items = positions
            throw try lose(crash)
        } catch let error where error is PoolTimeoutError {
            throw try lose(error)
        } catch let error as ProcessingError where error.code == .unexpectedReply {
            // The worker is in no state to trust with more items: replace it.
            worker?.kill()
            throw try lose(error)
        }
    }

    /// The worker is gone (or must go): give it back, and report the loss unless this map was
    /// cancelled (a worker killed for that is not an item's failure).
    private func lose(_ error: any Error) throws -> WorkerLost {
        pool.checkIn(worker!)
        worker = nil
        try Task.checkCancellation()
        return WorkerLost(error: error)
    }

    /// A reply's outcomes, once they are checked to be this batch's: one per item, decoded.
    /// Anything else fails the batch's items with `.unexpectedReply` (never fewer results than
    /// items, never a crash of this process).
    private static func check(
        _ reply: [UInt8], of count: Int, positions: ClosedRange<Int>,
        decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
    ) throws -> BatchOutcomes<Output> {
        let outcomes: BatchOutcomes<Output>
        do {
            outcomes = try decode(reply)
        } catch {
            throw unexpectedReply("results that did not decode (\(error))", count: count, positions: positions)
        }
        guard outcomes.count == count else {
            throw unexpectedReply("\(outcomes.count) results", count: count, positions: positions)
        }
        return outcomes
    }

    private static func unexpectedReply(_ what: String, count: Int, positions: ClosedRange<Int>) -> ProcessingError {
        let items = count == 1 ? "item \(positions.lowerBound)" : "items \(positions.lowerBound)–\(positions.upperBound)"
        return ProcessingError(.unexpectedReply, """
            a pool worker answered the batch of \(items) (\(count) in all) with \(what). Work that reads a \
            top-level variable of main.swift sees uninitialised memory in a worker, where the program's \
            top-level code never runs: declare the variable in another file (globals there are set up on \
            first use, in workers too), or pass the value in the items or in a PoolWork's properties
            """)
    }
}

/// The input, shared by the slots: hands out batches with their first index.
actor Feeder<Inputs: AsyncSequence & Sendable> where Inputs.Element: Sendable {
    struct Batch: Sendable {
        var firstIndex: Int
        var items: [Inputs.Element]
    }

    private var iterator: Inputs.AsyncIterator
    private var nextIndex = 0
    private var returned: [Batch] = []
    private(set) var isExhausted = false

    /// How many items the input had, once it has ended.
    var total: Int? { isExhausted && returned.isEmpty ? nextIndex : nil }

    init(_ inputs: Inputs) {
        iterator = inputs.makeAsyncIterator()
    }

    private var isTaking = false
    private var turnWaiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextTurn: UInt64 = 0

    /// Waits while another slot takes; a cancelled slot stops waiting.
    private func waitForTurn() async throws {
        let id = nextTurn
        nextTurn += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                turnWaiters.append((id, continuation))
            }
        } onCancel: {
            Task { await self.cancelTurn(id) }
        }
    }

    private func cancelTurn(_ id: UInt64) {
        guard let index = turnWaiters.firstIndex(where: { $0.id == id }) else { return }
        turnWaiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    func take(_ count: Int) async throws -> Batch? {
        // The iterator may suspend, and the actor is reentrant: one take at a time.
        while isTaking { try await waitForTurn() }
        isTaking = true
        defer {
            isTaking = false
            if !turnWaiters.isEmpty { turnWaiters.removeFirst().continuation.resume() }
        }
        if !returned.isEmpty { return returned.removeLast() }
        guard !isExhausted else { return nil }
        if var bulk = iterator as? any BulkIterator<Inputs.Element> {
            let items = bulk.next(upTo: count)
            iterator = bulk as! Inputs.AsyncIterator
            if items.count < count { isExhausted = true }
            guard !items.isEmpty else { return nil }
            defer { nextIndex += items.count }
            return Batch(firstIndex: nextIndex, items: items)
        }
        var items: [Inputs.Element] = []
        items.reserveCapacity(count)
        var iterator = self.iterator
        defer { self.iterator = iterator }
        while items.count < count {
            guard let item = try await iterator.next(isolation: self) else {
                isExhausted = true
                break
            }
            items.append(item)
        }
        guard !items.isEmpty else { return nil }
        defer { nextIndex += items.count }
        return Batch(firstIndex: nextIndex, items: items)
    }

    /// A batch a slot took but could not run (the pool closed): another slot takes it.
    func putBack(_ batch: Batch) {
        returned.append(batch)
        isExhausted = false
    }
}

/// The outcomes of a batch of items: all outputs (the usual case, kept as one array so that
/// it moves in bulk), or each item's result when some failed.
enum BatchOutcomes<Output: Sendable>: Sendable {
    case outputs([Output])
    case mixed([Result<Output, any Error>])

    var count: Int {
        switch self {
        case .outputs(let outputs): outputs.count
        case .mixed(let outcomes): outcomes.count
        }
    }

    var failureCount: Int {
        guard case .mixed(let outcomes) = self else { return 0 }
        var failed = 0
        for case .failure in outcomes { failed += 1 }
        return failed
    }

    subscript(position: Int) -> Result<Output, any Error> {
        switch self {
        case .outputs(let outputs): .success(outputs[position])
        case .mixed(let outcomes): outcomes[position]
        }
    }

    /// Every output, or the first failure as the `PoolItemError` of its item.
    func outputs(firstIndex: Int) throws -> [Output] {
        switch self {
        case .outputs(let outputs): return outputs
        case .mixed(let outcomes):
            var outputs: [Output] = []
            outputs.reserveCapacity(outcomes.count)
            for position in outcomes.indices {
                outputs.append(try outcomes[position].item(at: firstIndex + position))
            }
            return outputs
        }
    }
}

/// A run of consecutive items' outcomes, as the consumer receives them.
struct DeliveredBatch<Output: Sendable>: Sendable {
    var firstIndex: Int
    var outcomes: BatchOutcomes<Output>
}

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

/// A counting semaphore for items ahead of the consumer, with cancellation.
final class Credits: Sendable {
    private struct State {
        var available: Int
        var waiters: [(id: UInt64, count: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
        var cancelled = false

        /// Takes credits for the waiters at the head that fit now, in order.
        mutating func handOut() -> [CheckedContinuation<Void, any Error>] {
            var ready: [CheckedContinuation<Void, any Error>] = []
            while let first = waiters.first, first.count <= available {
                available -= first.count
                ready.append(waiters.removeFirst().continuation)
            }
            return ready
        }
    }

    private let state: Mutex<State>
    /// The most credits there are (what one `acquire` takes at most).
    let capacity: Int

    init(_ count: Int) {
        capacity = count
        state = Mutex(State(available: count))
    }

    /// Takes `count` credits (at most the capacity), waiting until they are free; throws
    /// `CancellationError` when the map or the waiting task is cancelled.
    func acquire(_ count: Int) async throws {
        let count = min(count, capacity)
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = state.withLock { state in
                    if state.cancelled || Task.isCancelled { return .failure(CancellationError()) }
                    if state.waiters.isEmpty, state.available >= count {
                        state.available -= count
                        return .success(())
                    }
                    state.waiters.append((id, count, continuation))
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            let (waiter, ready): (CheckedContinuation<Void, any Error>?, [CheckedContinuation<Void, any Error>]) = state.withLock { state in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
                let waiter = state.waiters.remove(at: index).continuation
                // The waiters behind it may fit now.
                return (waiter, state.handOut())
            }
            waiter?.resume(throwing: CancellationError())
            for continuation in ready { continuation.resume() }
        }
    }

    func release(_ count: Int) {
        let ready = state.withLock { state in
            state.available += count
            return state.handOut()
        }
        for continuation in ready { continuation.resume() }
    }

    func cancel() {
        let waiters = state.withLock { state in
            state.cancelled = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: CancellationError()) }
    }
}
