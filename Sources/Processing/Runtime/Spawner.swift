#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims
import Foundation
import Synchronization

/// A spawned worker: its pid and the exit descriptor that watches, signals and reaps it.
struct SpawnedChild: Sendable {
    let pid: pid_t
    let exitDescriptor: Int32
}

/// Where a worker's stdout goes.
enum ChildStdout: Sendable {
    /// This process's own stdout.
    case inherit
    /// `/dev/null`.
    case null
    /// This descriptor (a pipe's write end).
    case pipe(Int32)
}

/// Runs every `posix_spawn` on one permanent thread.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, and Dispatch and
/// Swift concurrency threads come and go; so the spawning thread must live as long as the process.
final class Spawner: Sendable {
    static let shared = Spawner()

    private struct Job {
        let id: UInt64
        let controlFD: Int32
        let stderrFD: Int32
        let stdout: ChildStdout
        let continuation: CheckedContinuation<SpawnedChild, any Error>
    }

    private struct Queue {
        var jobs: [Job] = []
        var nextID: UInt64 = 0
    }

    private let jobs = Mutex(Queue())
    private let wakeUp = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in serve() }
        thread.name = "processing.spawner"
        thread.start()
    }

    /// Spawns this process's own image as a worker whose fd 3 is `controlFD`, fd 2 is
    /// `stderrFD` and fd 1 is as `stdout` says. None may be 1, 2 or 3 (mapping one would
    /// clobber another, or leave it close-on-exec); `ChildProcess.launch` sees to that.
    ///
    /// A caller cancelled while its spawn waits behind others gets `CancellationError` at once;
    /// one whose spawn has begun waits the few milliseconds it takes.
    func spawn(controlFD: Int32, stderrFD: Int32, stdout: ChildStdout) async throws -> SpawnedChild {
        let id = jobs.withLock { queue in
            defer { queue.nextID += 1 }
            return queue.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let cancelled = jobs.withLock { queue in
                    if Task.isCancelled { return true }
                    queue.jobs.append(Job(id: id, controlFD: controlFD, stderrFD: stderrFD, stdout: stdout, continuation: continuation))
                    return false
                }
                if cancelled { return continuation.resume(throwing: CancellationError()) }
                wakeUp.signal()
            }
        } onCancel: {
            let withdrawn: Job? = jobs.withLock { queue in
                guard let index = queue.jobs.firstIndex(where: { $0.id == id }) else { return nil }
                return queue.jobs.remove(at: index)
            }
            withdrawn?.continuation.resume(throwing: CancellationError())
        }
    }

    private func serve() -> Never {
        while true {
            wakeUp.wait()
            // One at a time, so that a cancelled caller's job can still be withdrawn.
            while let job = jobs.withLock({ $0.jobs.isEmpty ? nil : $0.jobs.removeFirst() }) {
                job.continuation.resume(with: Result { try spawnWorker(job) })
            }
        }
    }

    private func spawnWorker(_ job: Job) throws -> SpawnedChild {
        var environment = ProcessInfo.processInfo.environment
        // The limit too, so that the child reads even its start frame under the parent's.
        environment[PROCESSING_WORKER_ENV] = "\(PROCESSING_WORKER_CONTROL_FD):\(getpid()):\(ProcessingLimits.maximumMessageSize)"
        // Crashes are reported to the parent with the child's last stderr lines; the
        // backtracer's interactive output only slows a worker's death down.
        if environment["SWIFT_BACKTRACE"] == nil { environment["SWIFT_BACKTRACE"] = "enable=no" }
        // The pidfd's slot is taken before the child exists, so that a full descriptor table
        // fails the start at once instead of leaving a child to kill and reap with the table
        // full. (Dispatch's worker monitor crashes the whole program when it cannot open
        // /proc/<tid>/stat, so every moment spent with a full table is a risk.)
        let reservation: Int32
        do {
            reservation = try Syscall.duplicate(job.controlFD)
        } catch {
            throw SystemError(call: "pidfd_open (reserving its descriptor)", errno: error.errno)
        }
        let pid: pid_t
        do {
            pid = try Syscall.spawnWorker(
                stdout: job.stdout, stderr: job.stderrFD, control: job.controlFD,
                arguments: [CommandLine.arguments.first ?? Syscall.ownImage],
                environment: environment.map { "\($0.key)=\($0.value)" })
        } catch {
            Syscall.close(reservation)
            throw error
        }
        // Another thread may take the freed slot first; then the start fails as below.
        Syscall.close(reservation)
        do {
            return SpawnedChild(pid: pid, exitDescriptor: try Syscall.openExitDescriptor(pid))
        } catch {
            // This thread exists only to spawn: waiting here for a SIGKILLed child is brief.
            Syscall.signalGroup(pid, SIGKILL)
            Syscall.waitForExit(pid)
            throw error
        }
    }
}

