/// The waits on one thing, keyed by id: what every state machine of the library keeps for the
/// tasks that wait on it (a process's end, a worker's exit, a free worker).
///
/// A wait has its id before it registers, so that its task's cancellation handler can name
/// it. Cancellation is a transition of its own: `withdraw(_:)` takes the wait out whether it
/// registered or not, and a wait whose task was cancelled before it could register is refused
/// (`register(_:id:cancelled:)` returns false), so neither order loses a resume.
///
/// Pure: no lock, no continuation of its own. Its storage holds it under a lock and resumes
/// what it returns outside that lock.
struct WaiterList<Waiter> {
    private var waiting: [(id: UInt64, waiter: Waiter)] = []
    private var nextID: UInt64 = 1

    /// How many wait.
    var count: Int { waiting.count }

    var isEmpty: Bool { waiting.isEmpty }

    /// A new wait's id.
    mutating func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    /// Makes `waiter` wait, unless its task was `cancelled` first: then false, and the caller
    /// resumes it with `CancellationError`.
    mutating func register(_ waiter: Waiter, id: UInt64, cancelled: Bool) -> Bool {
        if cancelled { return false }
        waiting.append((id, waiter))
        return true
    }

    /// The wait `id` stops waiting (cancelled, or its time-out passed): its waiter, or nil if it
    /// no longer waits (what it waited for reached it first, or it never registered).
    mutating func withdraw(_ id: UInt64) -> Waiter? {
        guard let index = waiting.firstIndex(where: { $0.id == id }) else { return nil }
        return waiting.remove(at: index).waiter
    }

    /// What they wait for happened: every waiter, in the order they came.
    mutating func takeAll() -> [Waiter] {
        defer { waiting.removeAll() }
        return waiting.map(\.waiter)
    }

    /// The first waiter, taken out.
    mutating func takeFirst() -> Waiter? {
        waiting.isEmpty ? nil : waiting.removeFirst().waiter
    }
}
