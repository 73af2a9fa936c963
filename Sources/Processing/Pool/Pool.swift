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
        /// Where workers may run, and how many run or start on each now.
        var places: [Place]

        /// A place with room on a host that is up (one exists whenever the checkout grants a
        /// spawn: its capacity counts only the places of hosts that are up).
        mutating func takePlace() -> Int {
            let index = places.indices.first { !places[$0].down && places[$0].live < places[$0].count }
                ?? places.indices.first { places[$0].live < places[$0].count } ?? 0
            places[index].live += 1
            return index
        }

        var upCapacity: Int { places.filter { !$0.down }.reduce(0) { $0 + $1.count } }
    }

    /// One entry of the pool's placement, as it stands.
    struct Place {
        let host: WorkerHost
        let count: Int
        /// Workers alive or starting there (until checked in dead, or their start failed).
        var live = 0
        /// A remote host whose worker could not start: its places are withdrawn until `retry`.
        var down = false
        /// How long the next withdrawal lasts: 5 s, doubling to 5 minutes.
        var backoff = Duration.seconds(5)
    }

    /// How many worker processes the pool runs at most (on every host).
    public let workers: Int
    /// Where the workers run, and how many on each host.
    public let placement: [HostWorkers]
    /// A remote host the pool's work may go to: work and items are encoded as for it, so that
    /// what cannot cross a network is refused before anything is sent (`.local` if none).
    let crossingHost: WorkerHost
    private let state: Mutex<State>
    private let output: OutputSettings
    /// What the workers wrote to streams set to `.capture`.
    private let captured = Mutex(CapturedOutput())
    /// The pids of the workers this pool has launched, in order (for tests).
    private let launchedPIDs = Mutex<[Int32]>([])
    var workerPIDs: [Int32] { launchedPIDs.withLock { $0 } }
    /// Its workers' events' source (`events`).
    private let eventSource = EventHub.Source(process: nil, pool: EventHub.shared.makeSourceID())

    /// Creates a pool of `workers` processes (nil: the active CPU count); none start until used.
    /// `stdout` and `stderr` say what happens to what the work prints: by default each line
    /// goes to this process's stream, prefixed `pool worker[pid]: ` (`ChildOutput.forward`).
    public convenience init(workers: Int? = nil, stdout: ChildOutput = .forward, stderr: ChildOutput = .forward) {
        self.init(placement: [.local(max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount))],
                  stdout: stdout, stderr: stderr)
    }

    /// Creates a pool whose workers run where `workers` says:
    /// `Pool(workers: [.local(2), .ssh("host-a", count: 4)])`. None start until used; local
    /// places are filled first. A remote host whose worker cannot start (unreachable, its
    /// connection lost before it was ready) has its places withdrawn for a while (5 s,
    /// doubling to 5 minutes) and the items go to the other hosts; a map fails with
    /// `ProcessingError` (`.hostUnavailable`) only when no host is left. Items a lost worker
    /// was running fail or are retried by the map's `retries`, like any crash. Work and items
    /// that hold what cannot cross a network (a `Share`, a pipe point) are refused
    /// (`.cannotCrossHosts`) when any host is remote.
    ///
    /// Throws `ProcessingError` (`.invalidConfiguration`) for an empty placement, a count
    /// below 1, or a host that cannot work.
    public convenience init(workers: [HostWorkers], stdout: ChildOutput = .forward, stderr: ChildOutput = .forward) throws {
        guard !workers.isEmpty else {
            throw ProcessingError(.invalidConfiguration, "Pool(workers: []) has no place for a worker: give at least one, such as .local(2)")
        }
        for entry in workers {
            try entry.host.validate()
            if entry.count < 1 {
                throw ProcessingError(.invalidConfiguration, "Pool(workers:) gives \(entry.host.name) \(entry.count) workers: give at least 1, or leave the host out")
            }
        }
        self.init(placement: workers, stdout: stdout, stderr: stderr)
    }

    private init(placement: [HostWorkers], stdout: ChildOutput, stderr: ChildOutput) {
        self.placement = placement
        workers = placement.reduce(0) { $0 + $1.count }
        crossingHost = placement.first { !$0.host.isLocal }?.host ?? .local
        state = Mutex(State(checkout: Checkout(capacity: workers),
                            places: placement.map { Place(host: $0.host, count: $0.count) }))
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
            let place = state.withLock { $0.takePlace() }
            let host = placement[place].host
            let worker: PoolWorker
            do {
                worker = try await PoolWorker.launch(output: output, on: host, place: place, events: eventSource) { [weak self] output in
                    self?.captured.withLock { $0.append(output) }
                }
            } catch {
                // The place is free again: a slot waiting for one must not wait forever.
                if !host.isLocal, Self.isHostFailure(error), !Task.isCancelled {
                    // Another host may take the items: look again.
                    try hostFailed(place, error)
                    return try await checkOut()
                }
                perform(state.withLock { state in
                    state.places[place].live -= 1
                    return state.checkout.spawnFailed()
                })
                throw error
            }
            launchedPIDs.withLock { $0.append(worker.pid) }
            if state.withLock({ $0.checkout.spawned(worker) }) { worker.kill() }
            return worker
        }
    }

    /// Whether a worker that could not start says its host is at fault (unreachable, its
    /// connection lost, no binary to run), not the program (a build mismatch, a spawn that
    /// ran out of descriptors here).
    private static func isHostFailure(_ error: any Error) -> Bool {
        if error is ProcessCrashError { return true }
        if let error = error as? ProcessingError { return error.code == .hostUnavailable }
        return false
    }

    /// A worker could not start on `place`'s host: its places are withdrawn for a while, and
    /// a retry is planned. Throws (failing the slots that wait too) when no host is left.
    private func hostFailed(_ place: Int, _ error: any Error) throws {
        let (actions, backoff, exhausted) = state.withLock { state in
            state.places[place].live -= 1
            var backoff: Duration?
            if !state.places[place].down {
                backoff = state.places[place].backoff
                state.places[place].down = true
                state.places[place].backoff = min(state.places[place].backoff * 2, .seconds(300))
            }
            // Withdrawn before the place is freed: the freed place must not go to this host.
            var actions = state.checkout.setCapacity(state.upCapacity)
            actions.resume += state.checkout.spawnFailed().resume
            return (actions, backoff, state.upCapacity == 0 ? state.checkout.takeWaiters() : [])
        }
        perform(actions)
        let host = placement[place].host
        // Its binary is looked for again next time (it may have gone with the host).
        RemoteBinaries.shared.forget(host)
        if let backoff {
            log("""
                \(host.name) could not start a pool worker, so its places are withdrawn for \(backoff) \
                and its items go to the other hosts: \(error)
                """, level: .warning)
            Task { [weak self] in
                try? await Task.sleep(for: backoff)
                self?.hostRetry(place)
            }
        }
        guard state.withLock({ $0.upCapacity == 0 }) else { return }
        let failure = ProcessingError(.hostUnavailable, """
            no host of this pool can start a worker now (\(placement.map(\.host.name).joined(separator: ", "))); \
            the last failure, on \(host.name): \(error)
            """)
        for waiter in exhausted { waiter.resume(throwing: failure) }
        throw failure
    }

    /// A withdrawn host's places come back after its backoff; the next worker there tries it.
    private func hostRetry(_ place: Int) {
        perform(state.withLock { state in
            state.places[place].down = false
            return state.checkout.setCapacity(state.upCapacity)
        })
    }

    /// Gives a worker back: to a waiting slot, to the idle list, or (dead) frees its place and
    /// is forgotten once reaped.
    func checkIn(_ worker: PoolWorker) {
        let dead = worker.isDead
        perform(state.withLock { state in
            if dead { state.places[worker.place].live -= 1 }
            return state.checkout.checkIn(worker, dead: dead)
        })
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
