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

/// A work value ready to travel: its install record and how to encode inputs and decode replies.
struct PoolJobWork<Input: Sendable, Output: Sendable>: Sendable {
    let install: PoolWorkInstall
    let encode: @Sendable ([Input]) throws -> [UInt8]
    let decode: @Sendable ([UInt8]) throws -> [Result<Output, any Error>]
}

extension PoolJobWork {
    init<W: PoolWork>(_ work: W, pool: Pool) throws where W.Input == Input, W.Output == Output {
        let (typeName, state) = try TypeName.encodeForChild(work, as: "pool work", giving: W.Output.self, to: "the workers")
        install = PoolWorkInstall(id: pool.workID(for: Array(typeName.utf8) + state), typeName: typeName, state: state)
        encode = { inputs in
            do {
                return try BinaryEncoder().encode(inputs)
            } catch {
                throw ProcessingError(.encodingFailed, "items of type \(String(reflecting: Input.self)) could not be encoded: \(error)")
            }
        }
        decode = { bytes in
            switch try BinaryDecoder().decode(BatchReply<Output>.self, from: bytes) {
            case .outputs(let outputs): return outputs.map { .success($0) }
            case .outcomes(let outcomes):
                return outcomes.map { outcome in
                    switch outcome {
                    case .output(let output): .success(output)
                    case .failure(let payload): .failure(payload.remoteError)
                    }
                }
            }
        }
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

    static func start<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        pool: Pool, work: PoolJobWork<Input, Output>, inputs: Inputs, ordered: Bool, chunkSize: Int?
    ) -> PoolResults<Output> where Inputs.Element == Input {
        let (stream, continuation) = AsyncThrowingStream<DeliveredBatch<Output>, any Error>.makeStream()
        let credits = Credits(itemsAhead)
        let delivery = Delivery(continuation: continuation, ordered: ordered)
        let driver = Task {
            let feeder = Feeder(inputs)
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<pool.workers {
                        group.addTask {
                            try await runSlot(pool: pool, work: work, feeder: feeder, credits: credits,
                                              delivery: delivery, chunkSize: chunkSize)
                        }
                    }
                    try await group.waitForAll()
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

    /// One slot: a worker and a loop of batches, the batch size tuned from measured cost.
    private static func runSlot<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        pool: Pool, work: PoolJobWork<Input, Output>, feeder: Feeder<Inputs>, credits: Credits,
        delivery: Delivery<Output>, chunkSize: Int?
    ) async throws where Inputs.Element == Input {
        var worker: PoolWorker?
        defer { if let worker { pool.checkIn(worker) } }
        var size = chunkSize ?? pool.learnedBatchSize(for: work.install.id)
        defer { if chunkSize == nil { pool.learn(batchSize: size, for: work.install.id) } }
        while true {
            try await credits.acquire(size)
            guard let batch = try await feeder.take(size) else {
                credits.release(size)
                return
            }
            if batch.items.count < size { credits.release(size - batch.items.count) }
            if worker == nil {
                worker = try await pool.checkOut()
                guard worker != nil else {
                    await feeder.putBack(batch)
                    return
                }
            }
            let started = ContinuousClock.now
            let outcomes: [Result<Output, any Error>]
            do {
                let reply = try await worker!.run(batch: work.encode(batch.items), work: work.install)
                outcomes = try work.decode(reply)
            } catch let crash as ProcessCrashError {
                pool.checkIn(worker!)
                worker = nil
                outcomes = Array(repeating: .failure(crash), count: batch.items.count)
            }
            if chunkSize == nil {
                let perItem = (ContinuousClock.now - started) / batch.items.count
                let fitting = perItem > .zero ? Int(batchTarget / perItem) : largestBatch
                size = min(max(1, fitting), size * 8, largestBatch)
            }
            delivery.deliver(from: batch.firstIndex, outcomes)
        }
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

    init(_ inputs: Inputs) {
        iterator = inputs.makeAsyncIterator()
    }

    private var isTaking = false
    private var turnWaiters: [CheckedContinuation<Void, Never>] = []

    func take(_ count: Int) async throws -> Batch? {
        // The iterator may suspend, and the actor is reentrant: one take at a time.
        while isTaking { await withCheckedContinuation { turnWaiters.append($0) } }
        isTaking = true
        defer {
            isTaking = false
            if !turnWaiters.isEmpty { turnWaiters.removeFirst().resume() }
        }
        if !returned.isEmpty { return returned.removeLast() }
        guard !isExhausted else { return nil }
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

/// A run of consecutive items' outcomes, as the consumer receives them.
struct DeliveredBatch<Output: Sendable>: Sendable {
    var firstIndex: Int
    var outcomes: [Result<Output, any Error>]
}

/// Hands outcomes to the consumer a batch at a time: at once, or in input order through a
/// reorder buffer. (Per item, the stream's lock and wake-up would cost more than the work.)
final class Delivery<Output: Sendable>: Sendable {
    private struct State {
        var nextIndex = 0
        var waiting: [Int: [Result<Output, any Error>]] = [:]
    }

    private let continuation: AsyncThrowingStream<DeliveredBatch<Output>, any Error>.Continuation
    private let ordered: Bool
    private let state = Mutex(State())

    init(continuation: AsyncThrowingStream<DeliveredBatch<Output>, any Error>.Continuation, ordered: Bool) {
        self.continuation = continuation
        self.ordered = ordered
    }

    func deliver(from firstIndex: Int, _ outcomes: [Result<Output, any Error>]) {
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
        var waiters: [(count: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var cancelled = false
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(available: count))
    }

    func acquire(_ count: Int) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, any Error>? = state.withLock { state in
                if state.cancelled { return .failure(CancellationError()) }
                if state.waiters.isEmpty, state.available >= count {
                    state.available -= count
                    return .success(())
                }
                state.waiters.append((count, continuation))
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }

    func release(_ count: Int) {
        let ready = state.withLock { state in
            state.available += count
            var ready: [CheckedContinuation<Void, any Error>] = []
            while let first = state.waiters.first, first.count <= state.available {
                state.available -= first.count
                ready.append(state.waiters.removeFirst().continuation)
            }
            return ready
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
