import Foundation

/// How a share operation waits for the lock that another thread or process holds.
///
/// The lock is a process-shared mutex, which a process stopped (SIGSTOP) or killed mid-update
/// may hold for a long time; blocking in `pthread_mutex_lock` would hold a cooperative-pool
/// thread all that while, and a few such waits freeze the whole async runtime of the process.
/// So an operation tries the lock without blocking, on the schedule `LockRetrySchedule` keeps:
/// again and again for a few microseconds (a holder's critical section usually takes one or
/// two), then between sleeps that double up to a millisecond. A sleeping task holds no thread;
/// its wait ends when the task is cancelled (`CancellationError`) or its time limit passes
/// (`ResultTimeoutError`).
enum ShareLockWait {
    /// Runs `attempt` (lock if free, work, unlock: nil when the lock was taken) until it runs.
    static func run<R>(
        isolation: isolated (any Actor)? = #isolation, operation: String, limit: Duration?,
        _ attempt: () throws -> R?
    ) async throws -> R {
        if let result = try attempt() { return result }
        var schedule = LockRetrySchedule(start: .now, limit: limit)
        while true {
            switch schedule.missed(at: .now) {
            case .retry: break
            case .sleep(let nap): try await Task.sleep(for: nap)
            case .timedOut: throw ResultTimeoutError(operation: operation, timeout: limit ?? .zero, currentRun: 0)
            }
            if let result = try attempt() { return result }
        }
    }

    /// The same for a synchronous caller, which may block its own thread: the lock is waited
    /// for in the kernel, or (with a limit) retried between short sleeps of this thread.
    static func runBlocking<R>(
        operation: String, limit: Duration?, attempt: () throws -> R?, blocking: () throws -> R
    ) throws -> R {
        guard let limit else { return try blocking() }
        var schedule = LockRetrySchedule(start: .now, limit: limit, spin: .zero)
        while true {
            if let result = try attempt() { return result }
            switch schedule.missed(at: .now) {
            case .retry: break
            case .sleep(let nap): Thread.sleep(forTimeInterval: nap.seconds)
            case .timedOut: throw ResultTimeoutError(operation: operation, timeout: limit, currentRun: 0)
            }
        }
    }
}

/// When to try a held lock again: a pure schedule, fed the time of each miss.
///
/// Retry at once until `spin` has passed since the first miss; then sleep, `firstSleep` and
/// doubling up to `longestSleep`; with a limit, never past the deadline, and `.timedOut` once
/// it has passed.
struct LockRetrySchedule {
    static let spin = Duration.microseconds(20)
    static let firstSleep = Duration.microseconds(50)
    static let longestSleep = Duration.milliseconds(1)

    enum Next: Equatable {
        case retry
        case sleep(Duration)
        case timedOut
    }

    private let start: ContinuousClock.Instant
    private let deadline: ContinuousClock.Instant?
    private let spin: Duration
    private var nextSleep = Self.firstSleep

    init(start: ContinuousClock.Instant, limit: Duration?, spin: Duration = Self.spin) {
        self.start = start
        deadline = limit.map { start + $0 }
        self.spin = spin
    }

    /// The lock was held at `now`: what to do before the next try.
    mutating func missed(at now: ContinuousClock.Instant) -> Next {
        var nap = nextSleep
        if let deadline {
            let left = deadline - now
            guard left > .zero else { return .timedOut }
            nap = min(nap, left)
        }
        if now - start < spin { return .retry }
        nextSleep = min(nextSleep * 2, Self.longestSleep)
        return .sleep(nap)
    }
}
