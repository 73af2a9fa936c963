/// The spare workers' bookkeeping as a pure state machine: how many are wanted, which are
/// idle (and warm), whether one is being spawned, and who waits for them to be warm. It never
/// touches a process: every transition returns what its storage (`SparePool`) must do, which
/// that does outside its lock.
///
/// `Spare` is what one idle worker is (descriptors, a pid); `Waiter` is what a `warm` waits
/// with. Both are generic so that the machine can be tested without either.
struct SparePoolState<Spare, Waiter> {
    /// After this many spares in a row die before they are warm, spares are turned off: a
    /// program whose workers cannot start must not be respawned for ever.
    static var earlyDeathLimit: Int { 3 }

    struct Entry {
        let id: UInt64
        let spare: Spare
        var isWarm = false
    }

    struct WarmWait {
        let id: UInt64
        let count: Int
        let waiter: Waiter
    }

    /// How many idle spares are wanted.
    private(set) var target = 0
    private var idle: [Entry] = []
    private var isSpawning = false
    private var earlyDeaths = 0
    private var waits: [WarmWait] = []
    /// Why spares were turned off by the machine itself (`earlyDeathLimit`), until the next `keep`.
    private(set) var offReason: String?

    var idleCount: Int { idle.count }
    var idleSpares: [Spare] { idle.map(\.spare) }
    var warmCount: Int { idle.filter(\.isWarm).count }

    /// What the storage does after a transition: spares to end, waiters to resume or fail, and
    /// whether to spawn one more spare (the machine has counted it as spawning).
    struct Actions {
        var end: [Spare] = []
        var resume: [Waiter] = []
        var fail: [Waiter] = []
        /// Why they fail (nil: with the error of the spawn that failed).
        var failReason: String?
        var spawn = false
    }

    /// Wants `count` idle spares (0 turns them off and ends the idle ones).
    mutating func keep(_ count: Int) -> Actions {
        target = max(0, count)
        offReason = nil
        earlyDeaths = 0
        var actions = Actions()
        while idle.count > target { actions.end.append(idle.removeLast().spare) }
        if target == 0 {
            actions.fail = takeWaits()
            actions.failReason = "spare workers were turned off (SpareWorkers.keep(0) or release()) while a warm-up waited"
        }
        actions.spawn = spawnIfShort()
        return actions
    }

    /// Gives up on spares by itself (the limit of early deaths): waiters fail with `reason`.
    private mutating func turnOff(_ reason: String) -> Actions {
        target = 0
        offReason = reason
        var actions = Actions()
        actions.end = idle.map(\.spare)
        idle = []
        actions.fail = takeWaits()
        actions.failReason = reason
        return actions
    }

    /// A spare for a start, if one is idle: a warm one first, the longest idle among those.
    /// `fits` says whether a spare still stands in for a fresh spawn (its environment); the
    /// idle ones that do not are ended (they were spawned before a change) and replaced. Each
    /// is asked: spares spawned at different moments may hold different settings.
    mutating func take(fitting fits: (Spare) -> Bool) -> (spare: Spare?, actions: Actions) {
        var actions = Actions()
        guard !idle.isEmpty else { return (nil, actions) }
        var fitting: [Entry] = []
        for entry in idle {
            if fits(entry.spare) { fitting.append(entry) } else { actions.end.append(entry.spare) }
        }
        idle = fitting
        guard !idle.isEmpty else {
            actions.spawn = spawnIfShort()
            return (nil, actions)
        }
        let index = idle.firstIndex(where: \.isWarm) ?? 0
        let taken = idle.remove(at: index)
        actions.spawn = spawnIfShort()
        return (taken.spare, actions)
    }

    /// A spawn the machine asked for ended with `spare` (nil: it failed with `error`, which
    /// the waiters for warm spares get; no other spawn is tried until the next demand).
    mutating func spawned(_ spare: Spare?, id: UInt64, failure error: String? = nil) -> Actions {
        isSpawning = false
        var actions = Actions()
        guard let spare else {
            actions.fail = takeWaits()
            return actions
        }
        // Spares turned down or off while it was spawned: it is not wanted.
        guard idle.count < target else {
            actions.end = [spare]
            return actions
        }
        idle.append(Entry(id: id, spare: spare))
        actions.spawn = spawnIfShort()
        return actions
    }

    /// Spare `id` has warmed up (it said so): the waiters it completes go on.
    mutating func warmed(_ id: UInt64) -> Actions {
        var actions = Actions()
        guard let index = idle.firstIndex(where: { $0.id == id }) else { return actions }
        idle[index].isWarm = true
        earlyDeaths = 0
        let warm = warmCount
        let (done, left) = (waits.filter { $0.count <= warm }, waits.filter { $0.count > warm })
        waits = left
        actions.resume = done.map(\.waiter)
        return actions
    }

    /// Spare `id` died while idle (nil if it was taken or ended first): it is ended and
    /// replaced, unless too many in a row died before they were warm.
    mutating func died(_ id: UInt64) -> Actions {
        guard let index = idle.firstIndex(where: { $0.id == id }) else { return Actions() }
        let entry = idle.remove(at: index)
        if !entry.isWarm {
            earlyDeaths += 1
            if earlyDeaths >= Self.earlyDeathLimit {
                var actions = turnOff("\(earlyDeaths) spare workers in a row died before they were ready")
                actions.end.append(entry.spare)
                return actions
            }
        }
        var actions = Actions()
        actions.end = [entry.spare]
        actions.spawn = spawnIfShort()
        return actions
    }

    /// Whether `count` spares are warm now; if not, the waiter is kept (and more are spawned,
    /// the target raised to `count`). `.off` if spares are off.
    enum WarmWaitResult { case warm, waiting, off }
    mutating func waitUntilWarm(_ count: Int, id: UInt64, _ waiter: Waiter) -> (WarmWaitResult, Actions) {
        var actions = Actions()
        if warmCount >= count { return (.warm, actions) }
        if count > target {
            target = count
            offReason = nil
            earlyDeaths = 0
        }
        waits.append(WarmWait(id: id, count: count, waiter: waiter))
        actions.spawn = spawnIfShort()
        return (.waiting, actions)
    }

    /// The wait `id` was cancelled: its waiter, if it still waited.
    mutating func cancelWait(_ id: UInt64) -> Waiter? {
        guard let index = waits.firstIndex(where: { $0.id == id }) else { return nil }
        return waits.remove(at: index).waiter
    }

    /// Whether a spare would be taken now (a cheap look before `take`).
    var hasIdle: Bool { !idle.isEmpty }

    private mutating func spawnIfShort() -> Bool {
        guard !isSpawning, idle.count < target else { return false }
        isSpawning = true
        return true
    }

    private mutating func takeWaits() -> [Waiter] {
        defer { waits = [] }
        return waits.map(\.waiter)
    }
}

extension SparePoolState: Sendable where Spare: Sendable, Waiter: Sendable {}
extension SparePoolState.Entry: Sendable where Spare: Sendable {}
extension SparePoolState.WarmWait: Sendable where Waiter: Sendable {}
extension SparePoolState.Actions: Sendable where Spare: Sendable, Waiter: Sendable {}
