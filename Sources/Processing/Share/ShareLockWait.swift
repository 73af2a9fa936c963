import Foundation

/// How a share operation waits for the lock that another thread or process holds.
///
/// The lock is a process-shared mutex, which a process stopped (SIGSTOP) or killed mid-update
/// may hold for a long time; blocking in `pthread_mutex_lock` would hold a cooperative-pool
/// thread all that while, and a few such waits freeze the whole async runtime of the process.
/// So an operation tries the lock without blocking: again and again for a few microseconds (a
/// holder's critical section usually takes one or two), then between sleeps that double up to
/// a millisecond. A sleeping task holds no thread; its wait ends when the task is cancelled
/// (`CancellationError`) or its time limit passes (`ResultTimeoutError`).
enum ShareLockWait {
    /// How long to retry at once before the first sleep.
    static let spin = Duration.microseconds(20)
    static let firstSleep = Duration.microseconds(50)
    static let longestSleep = Duration.milliseconds(1)

    /// Runs `attempt` (lock if free, work, unlock: nil when the lock was taken) until it runs.
    static func run<R>(
        isolation: isolated (any Actor)? = #isolation, operation: String, limit: Duration?,
        _ attempt: () throws -> R?
    ) async throws -> R {
        if let result = try attempt() { return result }
        let start = ContinuousClock.now
        let deadline = limit.map { start + $0 }
        while ContinuousClock.now - start < spin {
            if let result = try attempt() { return result }
        }
        var sleep = firstSleep
        while true {
            var nap = sleep
            if let deadline, let limit {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw ResultTimeoutError(operation: operation, timeout: limit, currentRun: 0) }
                nap = min(nap, left)
            }
            try await Task.sleep(for: nap)
            if let result = try attempt() { return result }
            sleep = min(sleep * 2, longestSleep)
        }
    }

    /// The same for a synchronous caller, which may block its own thread: the lock is waited
    /// for in the kernel, or (with a limit) retried between short sleeps of this thread.
    static func runBlocking<R>(
        operation: String, limit: Duration?, attempt: () throws -> R?, blocking: () throws -> R
    ) throws -> R {
        guard let limit else { return try blocking() }
        let deadline = ContinuousClock.now + limit
        var sleep = firstSleep
        while true {
            if let result = try attempt() { return result }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw ResultTimeoutError(operation: operation, timeout: limit, currentRun: 0) }
            Thread.sleep(forTimeInterval: Double(min(sleep, left).components.attoseconds) / 1e18 + Double(min(sleep, left).components.seconds))
            sleep = min(sleep * 2, longestSleep)
        }
    }
}
