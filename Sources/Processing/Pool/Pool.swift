import Foundation
import Synchronization

/// A set of reusable worker processes that run work over many items in parallel.
///
/// ```swift
/// let pool = Pool(workers: 4)                                   // nil: one per active CPU
/// let squares = try await pool.map(1...1000, Square())           // Square: a PoolWork
/// for try await count in try pool.imap(files, CountLines()) { print(count) }
/// await pool.close()
/// ```
///
/// Workers start on first use and are reused by every map. Input is pulled lazily, a bounded
/// number of items ahead, so an endless `AsyncSequence` works; small items travel in batches
/// sized from their measured cost. An item that throws fails with its index
/// (`PoolItemError`); a worker that dies fails only its batch and is replaced. Cancelling the
/// task that awaits or iterates a map kills the workers running its items.
public final class Pool: Sendable {
    private typealias Checkout = PoolCheckout<PoolWorker, CheckedContinuation<PoolGrant<PoolWorker>, any Error>>

    private struct State {
        var checkout: Checkout
        var nextWaiterID: UInt64 = 0
        var closeWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWorkID = 0
        var workIDs: [[UInt8]: Int] = [:]
        /// The batch size each work's last map settled on, where the next map starts.
        var batchSizes: [Int: Int] = [:]
    }

    /// How many worker processes the pool runs at most.
    public let workers: Int
    private let state: Mutex<State>
    private let output: OutputSettings
    /// What the workers wrote to streams set to `.capture`.
    private let captured = Mutex(CapturedOutput())
    /// Its workers' events' source (`events`).
    private let eventSource = EventHub.Source(process: nil, pool: EventHub.shared.makeSourceID())

    /// Creates a pool of `workers` processes (nil: the active CPU count); none start until used.
    /// `stdout` and `stderr` say what happens to what the work prints: by default each line
    /// goes to this process's stream, prefixed `pool worker[pid]: ` (`ChildOutput.forward`).
    public init(workers: Int? = nil, stdout: ChildOutput = .forward, stderr: ChildOutput = .forward) {
        self.workers = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        state = Mutex(State(checkout: Checkout(capacity: self.workers)))
        output = OutputSettings(stdout: stdout, stderr: stderr, name: "pool worker")
    }

    /// What the workers wrote to streams set to `.capture`, from the workers that have exited
    /// (all of them once the pool is closed).
    public var capturedOutput: CapturedOutput { captured.withLock { $0 } }

    /// What happens to the pool's workers from now on (spawned, ready, crashed, timed out,
    /// killed, exited), as an `AsyncSequence` of `ProcessEvent`s named `pool worker`. It ends
    /// once the pool is closed or terminated and its workers are reaped (a close cancelled
    /// or timed out before that leaves it going), or when the pool goes away.
    public var events: ProcessEvents {
        ProcessEvents(filter: .pool(eventSource.pool!), hasEnded: { state.withLock { $0.checkout.phase == .closed } })
    }

    deinit {
        for worker in state.withLock({ $0.checkout.everyWorker }) { worker.kill() }
        EventHub.shared.finish(.pool(eventSource.pool!))
    }

    private func perform(_ actions: Checkout.Actions) {
        for worker in actions.kill { worker.kill() }
        for (waiter, grant) in actions.resume { waiter.resume(returning: grant) }
    }

    // MARK: Maps

    /// A map starts: refused (`ProcessingError`) once the pool is closing or closed.
    func beginMap() throws(ProcessingError) {
        try state.withLock { state throws(ProcessingError) in try state.checkout.beginMap() }
    }

    /// A map has ended (its slots have given their workers back).
    func endMap() {
        let (actions, closed) = state.withLock { state in
            let actions = state.checkout.endMap()
            return (actions, state.checkout.phase == .closed)
        }
        perform(actions)
        if closed { wakeCloseWaiters() }
    }

    // MARK: Workers

    /// A worker for one slot of a running map: an idle one, a new one if the pool has room,
    /// or the next one to come free. Nil once the pool is closed. Throws `CancellationError`
    /// if the waiting task is cancelled, and what starting a worker threw.
    func checkOut() async throws -> PoolWorker? {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        let grant: Checkout.Grant = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let now: Result<Checkout.Grant, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    return state.checkout.checkOut(id: id, waiter: continuation).map { .success($0) }
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            state.withLock { $0.checkout.cancel(id: id) }?.resume(throwing: CancellationError())
        }
        switch grant {
        case .worker(let worker): return worker
        case .closed: return nil
        case .spawn:
            let worker: PoolWorker
            do {
                worker = try await PoolWorker.launch(output: output, events: eventSource) { [weak self] output in
                    self?.captured.withLock { $0.append(output) }
                }
            } catch {
                // The place is free again: a slot waiting for one must not wait forever.
                perform(state.withLock { $0.checkout.spawnFailed() })
                throw error
            }
            if state.withLock({ $0.checkout.spawned(worker) }) { worker.kill() }
            return worker
        }
    }

    /// Gives a worker back: to a waiting slot, to the idle list, or (dead) frees its place and
    /// is forgotten once reaped.
    func checkIn(_ worker: PoolWorker) {
        let dead = worker.isDead
        perform(state.withLock { $0.checkout.checkIn(worker, dead: dead) })
        if dead {
            Task { [weak self] in
                await worker.waitForExit()
                self?.state.withLock { $0.checkout.reaped(worker) }
            }
        }
    }

    /// How many workers the pool holds a record of: alive, starting, or dead and not yet
    /// reaped (for tests).
    var workerRecords: Int { state.withLock { $0.checkout.everyWorker.count } }

    /// How many maps run, and how many check-outs wait for a worker (for tests that must
    /// know a map has reached its wait, on a machine too loaded for a fixed sleep).
    var checkoutCounts: (activeMaps: Int, waiting: Int) {
        state.withLock { ($0.checkout.activeMaps, $0.checkout.waitingCount) }
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

    /// Stops taking maps (a new one throws `ProcessingError`), lets the running ones finish,
    /// then ends the workers and waits until they are reaped. A cancelled `close()` stops
    /// waiting, as does one whose time-out passes (`pool.close.timeout(.seconds(5))()`); the
    /// pool still closes when its maps end. From synchronous code: `try pool.close.sync()()`.
    public var close: Modifiable<PoolCloseOperation, AsyncCall> { Modifiable(PoolCloseOperation(pool: self), name: "close") }

    /// Kills every worker now, busy or idle; maps still running fail. The pool takes no
    /// more work. From synchronous code: `try pool.terminate.sync()()`.
    public var terminate: Modifiable<PoolTerminateOperation, AsyncCall> {
        Modifiable(PoolTerminateOperation(pool: self), name: "terminate")
    }

    func closeNow() async {
        let (actions, closed) = state.withLock { state in
            let actions = state.checkout.close()
            return (actions, state.checkout.phase == .closed)
        }
        perform(actions)
        if !closed { await waitUntilClosed() }
        // A cancelled or timed-out close leaves the events going: the pool closes later.
        if await reapAll() { EventHub.shared.finish(.pool(eventSource.pool!)) }
    }

    func terminateNow() async {
        perform(state.withLock { $0.checkout.terminate() })
        wakeCloseWaiters()
        if await reapAll() { EventHub.shared.finish(.pool(eventSource.pool!)) }
    }

    private func waitUntilClosed() async {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state in
                    let done = state.checkout.phase == .closed || Task.isCancelled
                    if !done { state.closeWaiters[id] = continuation }
                    return done
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.closeWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    private func wakeCloseWaiters() {
        let waiters = state.withLock { state in
            defer { state.closeWaiters = [:] }
            return Array(state.closeWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until every worker has exited and been reaped (a worker still being started is
    /// killed when it registers, and waited for too): true then, false if the waiting task
    /// was cancelled first.
    private func reapAll() async -> Bool {
        while !Task.isCancelled {
            let (all, starting) = state.withLock { ($0.checkout.everyWorker, $0.checkout.starting) }
            if all.isEmpty {
                guard starting > 0 else { return true }
                try? await Task.sleep(for: .milliseconds(1))
                continue
            }
            for worker in all {
                await worker.waitForExit()
                state.withLock { $0.checkout.reaped(worker) }
            }
        }
        return false
    }
}

/// Runs `body` with a pool and closes it when the scope ends (terminating it if `body` threw).
/// It throws only what `body` throws: a body that cannot throw needs no `try`.
public func withPool<R>(
    workers: Int? = nil,
    stdout: ChildOutput = .forward,
    stderr: ChildOutput = .forward,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (Pool) async throws -> R
) async rethrows -> R {
    let pool = Pool(workers: workers, stdout: stdout, stderr: stderr)
    do {
        let value = try await body(pool)
        await pool.close()
        return value
    } catch {
        await pool.terminate()
        throw error
    }
}

/// `Pool.close`: closes the pool once its maps end.
public struct PoolCloseOperation: WaitingOperation {
    let pool: Pool

    /// Closes the pool and waits for its workers to be reaped.
    public func perform() async { await pool.closeNow() }
}

/// `Pool.terminate`: kills the pool's workers now.
public struct PoolTerminateOperation: WaitingOperation {
    let pool: Pool

    /// Kills the workers and waits for them to be reaped.
    public func perform() async { await pool.terminateNow() }
}
