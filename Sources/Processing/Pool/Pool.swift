import Foundation
import Synchronization

/// A set of reusable worker processes that run work over many items in parallel.
///
/// ```swift
/// let pool = Pool(workers: 4)                       // nil: one per active CPU
/// let doubled = try await pool.map(1...1000, Double())
/// for try await line in pool.imap(files, CountLines()) { print(line) }
/// ```
///
/// Workers start on first use and are reused by every map. Input is pulled lazily, a bounded
/// number of items ahead, so an endless `AsyncSequence` works; small items travel in batches
/// sized from their measured cost. An item that throws fails with its index
/// (`PoolItemError`); a worker that dies fails only its batch and is replaced. Cancelling the
/// task that awaits or iterates a map kills the workers running its items.
public final class Pool: Sendable {
    private struct State {
        var idle: [PoolWorker] = []
        /// Every worker alive or starting, busy or idle.
        var all: [ObjectIdentifier: PoolWorker] = [:]
        var live = 0
        var waiters: [CheckedContinuation<PoolWorker?, any Error>] = []
        var isClosed = false
        var nextWorkID = 0
        var workIDs: [[UInt8]: Int] = [:]
        /// The batch size each work's last map settled on, where the next map starts.
        var batchSizes: [Int: Int] = [:]
    }

    /// How many worker processes the pool runs at most.
    public let workers: Int
    private let state = Mutex(State())

    /// Creates a pool of `workers` processes (nil: the active CPU count); none start until used.
    public init(workers: Int? = nil) {
        self.workers = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    deinit {
        for worker in state.withLock({ $0.all.values }) { worker.kill() }
    }

    // MARK: Workers

    /// An idle worker, a new one if the pool has room, or the next one to come free.
    /// Nil once the pool is closed.
    func checkOut() async throws -> PoolWorker? {
        enum Next { case worker(PoolWorker), spawn, wait, closed }
        let next: Next = state.withLock { state in
            if state.isClosed { return .closed }
            if let worker = state.idle.popLast() { return .worker(worker) }
            if state.live < workers { state.live += 1; return .spawn }
            return .wait
        }
        switch next {
        case .worker(let worker): return worker
        case .closed: return nil
        case .spawn:
            do {
                return register(try await PoolWorker.launch())
            } catch {
                // The place is free again: a map waiting for one must not wait forever.
                let waiter: CheckedContinuation<PoolWorker?, any Error>? = state.withLock { state in
                    guard !state.waiters.isEmpty, !state.isClosed else {
                        state.live -= 1
                        return nil
                    }
                    return state.waiters.removeFirst()
                }
                if let waiter { spawn(for: waiter) }
                throw error
            }
        case .wait:
            return try await withCheckedThrowingContinuation { continuation in
                state.withLock { $0.waiters.append(continuation) }
            }
        }
    }

    /// Gives a worker back: to a waiting map, to the idle list, or (dead) frees its place.
    func checkIn(_ worker: PoolWorker) {
        enum Next { case give(CheckedContinuation<PoolWorker?, any Error>), spawnFor(CheckedContinuation<PoolWorker?, any Error>), kill, none }
        let next: Next = state.withLock { state in
            if worker.isDead {
                state.all[ObjectIdentifier(worker)] = nil
                state.live -= 1
                guard !state.waiters.isEmpty, !state.isClosed else { return .none }
                state.live += 1
                return .spawnFor(state.waiters.removeFirst())
            }
            if state.isClosed {
                state.all[ObjectIdentifier(worker)] = nil
                state.live -= 1
                return .kill
            }
            if !state.waiters.isEmpty { return .give(state.waiters.removeFirst()) }
            state.idle.append(worker)
            return .none
        }
        switch next {
        case .give(let waiter): waiter.resume(returning: worker)
        case .spawnFor(let waiter):
            spawn(for: waiter)
        case .kill: worker.kill()
        case .none: break
        }
    }

    /// Starts a worker for a map waiting in `checkOut`, in a place already counted in `live`.
    private func spawn(for waiter: CheckedContinuation<PoolWorker?, any Error>) {
        Task {
            do {
                waiter.resume(returning: register(try await PoolWorker.launch()))
            } catch {
                state.withLock { $0.live -= 1 }
                waiter.resume(throwing: error)
            }
        }
    }

    private func register(_ worker: PoolWorker) -> PoolWorker {
        let closed = state.withLock { state in
            state.all[ObjectIdentifier(worker)] = worker
            return state.isClosed
        }
        if closed { worker.kill() }
        return worker
    }

    /// The id under which `work` is installed in workers (the same encoded work, the same id).
    func workID(for encodedWork: [UInt8]) -> Int {
        state.withLock { state in
            if let id = state.workIDs[encodedWork] { return id }
            state.nextWorkID += 1
            if state.workIDs.count > 64 {
                state.workIDs.removeAll()
                state.batchSizes.removeAll()
            }
            state.workIDs[encodedWork] = state.nextWorkID
            return state.nextWorkID
        }
    }

    /// An id no other work has (for work that must be installed afresh).
    func uniqueWorkID() -> Int {
        state.withLock { state in
            state.nextWorkID += 1
            return state.nextWorkID
        }
    }

    func learnedBatchSize(for workID: Int) -> Int {
        state.withLock { $0.batchSizes[workID] ?? 1 }
    }

    func learn(batchSize: Int, for workID: Int) {
        state.withLock { $0.batchSizes[workID] = batchSize }
    }

    // MARK: Ending

    /// Stops taking maps, lets running ones finish, then ends the workers and waits until
    /// they are reaped.
    public func close() async {
        let idle = state.withLock { state in
            state.isClosed = true
            defer { state.idle = [] }
            return state.idle
        }
        for worker in idle { worker.kill() }
        // Busy workers are killed as their maps give them back (see checkIn).
        await reapAll()
    }

    /// Kills every worker now, busy or idle; maps still running fail. The pool takes no
    /// more work.
    public func terminate() async {
        let (all, waiters) = state.withLock { state in
            state.isClosed = true
            defer { state.idle = []; state.waiters = [] }
            return (Array(state.all.values), state.waiters)
        }
        for waiter in waiters { waiter.resume(returning: nil) }
        for worker in all { worker.kill() }
        await reapAll()
    }

    /// Waits until every worker has exited and been reaped.
    private func reapAll() async {
        while true {
            let all = state.withLock { Array($0.all.values) }
            guard !all.isEmpty else { return }
            for worker in all {
                await worker.waitForExit()
                state.withLock { $0.all[ObjectIdentifier(worker)] = nil }
            }
        }
    }
}

/// Runs `body` with a pool and closes it when the scope ends (terminating it if `body` threw).
public func withPool<R>(
    workers: Int? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (Pool) async throws -> R
) async throws -> R {
    let pool = Pool(workers: workers)
    do {
        let value = try await body(pool)
        await pool.close()
        return value
    } catch {
        await pool.terminate()
        throw error
    }
}
