/// What a slot of a map is given by the pool's checkout.
enum PoolGrant<Worker> {
    /// An idle worker, now the slot's.
    case worker(Worker)
    /// A place for a worker: the slot starts one (`spawned` or `spawnFailed` follows).
    case spawn
    /// The pool is closed: no worker will come.
    case closed
}

extension PoolGrant: Sendable where Worker: Sendable {}

/// Which worker a map's slot gets, and who waits for one: the pool's checkout as a pure state
/// machine. `Pool` holds it under its lock, feeds it events, and performs what they return
/// (resuming continuations, killing workers) outside the lock.
///
/// - A slot that asks for a worker gets an idle one, a place to start one in (while fewer than
///   `capacity` are alive or starting), or waits; deciding and waiting are one step, so a
///   worker checked in meanwhile cannot be missed. A waiting slot that is cancelled leaves.
/// - A worker given back goes to the first waiting slot, else becomes idle; a dead one frees
///   its place, which goes to the first waiting slot as a place to start one in.
/// - `close()` takes no new maps and lets the running ones finish (their slots are served
///   as before), then ends the idle workers once the last map has ended. `terminate()` ends
///   everything at once; waiting slots get `.closed`.
///
/// Generic over what it hands out and who waits (`Pool` uses `PoolWorker` and continuations),
/// so that its transitions can be tested without processes.
struct PoolCheckout<Worker: AnyObject, Waiter> {
    typealias Grant = PoolGrant<Worker>

    enum Phase: Equatable {
        case open
        /// No new maps; the running ones finish.
        case closing
        case closed
    }

    /// What the pool does after an event, outside its lock.
    struct Actions {
        var resume: [(Waiter, Grant)] = []
        var kill: [Worker] = []
    }

    /// How many workers may be alive or starting at once: the pool's places on hosts that
    /// are up (a remote host that failed withdraws its places for a while).
    private(set) var capacity: Int
    private(set) var phase = Phase.open
    private var idle: [Worker] = []
    /// Places taken: workers alive or being started.
    private(set) var live = 0
    /// Workers being started by slots (counted in `live`, not yet in `all`).
    private(set) var starting = 0
    /// Every worker alive or not yet reaped, busy or idle.
    private(set) var all: [ObjectIdentifier: Worker] = [:]
    private var waiters: [(id: UInt64, waiter: Waiter)] = []
    private(set) var activeMaps = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Whether `close()` has nothing left to wait for (no running map, the workers ended).
    var isFinished: Bool { phase == .closed && all.isEmpty && starting == 0 }

    // MARK: Maps

    /// A map starts; refused once the pool is closing.
    mutating func beginMap() throws(ProcessingError) {
        guard phase == .open else {
            throw ProcessingError(.invalidState, "this pool was closed or terminated: it takes no new maps; make a new Pool")
        }
        activeMaps += 1
    }

    /// A map ended: the last one of a closing pool lets it close.
    mutating func endMap() -> Actions {
        activeMaps -= 1
        guard phase == .closing, activeMaps == 0 else { return Actions() }
        return finishClosing()
    }

    // MARK: Slots

    /// A slot asks for a worker: the grant now, or nil once `waiter` waits for one.
    mutating func checkOut(id: UInt64, waiter: Waiter) -> Grant? {
        if phase == .closed { return .closed }
        if let worker = idle.popLast() { return .worker(worker) }
        if live < capacity {
            live += 1
            starting += 1
            return .spawn
        }
        waiters.append((id, waiter))
        return nil
    }

    /// A waiting slot was cancelled: its waiter, to resume with `CancellationError`.
    mutating func cancel(id: UInt64) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index).waiter
    }

    /// A slot started the worker it had a place for. True if it must be killed at once (the
    /// pool was terminated meanwhile).
    mutating func spawned(_ worker: Worker) -> Bool {
        starting -= 1
        all[ObjectIdentifier(worker)] = worker
        return phase == .closed
    }

    /// A slot could not start a worker in its place: the place goes to the next waiting slot.
    mutating func spawnFailed() -> Actions {
        starting -= 1
        live -= 1
        return servePlace()
    }

    /// A slot gives its worker back (`dead`: it crashed or was killed).
    mutating func checkIn(_ worker: Worker, dead: Bool) -> Actions {
        var actions = Actions()
        if dead {
            live -= 1
            return servePlace()
        }
        if phase == .closed {
            actions.kill.append(worker)
        } else if !waiters.isEmpty {
            actions.resume.append((waiters.removeFirst().waiter, .worker(worker)))
        } else {
            idle.append(worker)
        }
        return actions
    }

    /// A freed place: to the first waiting slot, to start a worker in (while there is room:
    /// places withdrawn meanwhile are not handed out).
    private mutating func servePlace() -> Actions {
        var actions = Actions()
        while phase != .closed, !waiters.isEmpty, live < capacity {
            live += 1
            starting += 1
            actions.resume.append((waiters.removeFirst().waiter, .spawn))
        }
        return actions
    }

    /// Places are withdrawn (a host failed) or come back (`capacity` is the new total): the
    /// places free now go to waiting slots.
    mutating func setCapacity(_ newValue: Int) -> Actions {
        capacity = max(0, newValue)
        return servePlace()
    }

    /// No place is left anywhere (every host failed): the waiting slots, to fail.
    mutating func takeWaiters() -> [Waiter] {
        defer { waiters = [] }
        return waiters.map(\.waiter)
    }

    /// A worker has been reaped.
    mutating func reaped(_ worker: Worker) {
        all[ObjectIdentifier(worker)] = nil
    }

    // MARK: Ending

    /// No new maps; the pool closes once the running ones end.
    mutating func close() -> Actions {
        guard phase == .open else { return Actions() }
        phase = .closing
        return activeMaps == 0 ? finishClosing() : Actions()
    }

    private mutating func finishClosing() -> Actions {
        phase = .closed
        var actions = Actions()
        actions.kill = idle
        idle = []
        actions.resume = waiters.map { ($0.waiter, .closed) }
        waiters = []
        return actions
    }

    /// Ends everything now: every worker is killed, waiting slots get `.closed`.
    mutating func terminate() -> Actions {
        var actions = finishClosing()
        actions.kill = Array(all.values)
        return actions
    }

    /// Every worker, for a pool that goes away.
    var everyWorker: [Worker] { Array(all.values) }

    /// How many check-outs wait for a worker.
    var waitingCount: Int { waiters.count }
}
