/// Idle worker processes spawned ahead, so that a start does not wait for one.
///
/// A process's start normally spawns a worker: exec, the loader, the Swift runtime and this
/// library starting up, a few milliseconds in all. A spare has done all of that already. Any
/// local start takes one when one is idle: `start()`, a pool's workers, an actor process, a
/// relay stage. What it runs arrives with its start request, as it does for a fresh worker, and
/// a taken spare is replaced in the background.
///
/// Spares are off until you turn them on, here and only here:
///
/// ```swift
/// SpareWorkers.keep(2)          // two idle workers from now on, spawned in the background
/// try await SpareWorkers.warm(8) // before a burst: wait until eight are ready
/// await SpareWorkers.release()   // end them all (and keep none)
/// ```
///
/// Nothing else changes. A process on a spare has its own stdout and stderr as a fresh worker
/// would (`ProcessConfig.stdout`, `.stderr`), and its lives, time-outs, `joinIn`, logging and
/// crash reports are the same. A spare runs one process and is never reused for another
/// (a pool's worker serves its pool, as always). A spare inherits the environment and working
/// directory of the moment it was spawned: when either has changed since, idle spares are
/// ended and replaced instead of used. Spares die with this program like every worker.
///
/// What a spare costs: one idle process, and no CPU while it waits. Measured here
/// (`ProcessingBenchmarks spares`, from `/proc/<pid>/smaps_rollup`): about 1.5 MiB of memory
/// of its own (USS; 1.7 MiB in a dynamically linked program) and 4.3 MiB as its fair share of
/// what it shares (PSS; 5.5 MiB), of 15 MiB resident (21 MiB): the rest is this program's image
/// and libraries, which it shares.
///
/// If spares keep dying before they are ready (three in a row), they are turned off, and
/// ``offReason`` says why; starts spawn fresh workers as they would without spares.
public enum SpareWorkers {
    /// How many idle spares are kept (0, the default: none).
    public static var count: Int { SparePool.shared.target }

    /// How many spares are idle now, warm or still starting.
    public static var idle: Int { SparePool.shared.idleCount }

    /// Why spares turned themselves off (they kept dying before they were ready), or nil.
    public static var offReason: String? { SparePool.shared.offReason }

    /// Keeps `count` idle spares from now on: spawns the missing ones in the background, one
    /// at a time, and ends idle ones beyond `count`. 0 turns spares off.
    ///
    /// - Parameter count: The number of idle workers to keep ready.
    public static func keep(_ count: Int) {
        SparePool.shared.keep(count)
    }

    /// Waits until `count` spares are ready (warmed up and idle), raising ``count`` to it if
    /// it is lower: call it ahead of a burst of starts. With no argument, waits for ``count``.
    ///
    /// - Parameter count: How many ready spares to wait for.
    /// - Throws: `ProcessingError` (`.spawnFailed`) if a spare cannot be spawned (descriptors
    ///   or processes ran out) or spares were turned off meanwhile; `CancellationError` if the
    ///   waiting task is cancelled.
    public static func warm(_ count: Int? = nil) async throws {
        let wanted = count ?? SparePool.shared.target
        guard wanted > 0 else { return }
        try await SparePool.shared.waitUntilWarm(wanted)
    }

    /// Ends every idle spare and keeps none from now on; returns once they are reaped.
    public static func release() async {
        await SparePool.shared.release()
    }
}
