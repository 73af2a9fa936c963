#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims
import Foundation
import Synchronization

/// A spawned worker: its pid and the pidfd that watches, signals and reaps it.
struct SpawnedChild: Sendable {
    let pid: pid_t
    let pidfd: Int32
}

/// Runs every `posix_spawn` on one permanent thread.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, and Dispatch and
/// Swift concurrency threads come and go; so the spawning thread must live as long as the process.
final class Spawner: Sendable {
    static let shared = Spawner()

    private struct Job {
        let controlFD: Int32
        let stderrFD: Int32
        let continuation: CheckedContinuation<SpawnedChild, any Error>
    }

    private let jobs = Mutex<[Job]>([])
    private let wakeUp = DispatchSemaphore(value: 0)
    private let executable = Syscall.executablePath()

    private init() {
        let thread = Thread { [self] in serve() }
        thread.name = "processing.spawner"
        thread.start()
    }

    /// Spawns this binary as a worker whose fd 3 is `controlFD` and fd 2 is `stderrFD`.
    /// Both must be at least 10, so mapping them onto 2 and 3 cannot clobber one with the other.
    func spawn(controlFD: Int32, stderrFD: Int32) async throws -> SpawnedChild {
        try await withCheckedThrowingContinuation { continuation in
            jobs.withLock { $0.append(Job(controlFD: controlFD, stderrFD: stderrFD, continuation: continuation)) }
            wakeUp.signal()
        }
    }

    private func serve() -> Never {
        while true {
            wakeUp.wait()
            let pending = jobs.withLock { jobs in
                defer { jobs.removeAll(keepingCapacity: true) }
                return jobs
            }
            for job in pending {
                job.continuation.resume(with: Result { try spawnWorker(job) })
            }
        }
    }

    private func spawnWorker(_ job: Job) throws -> SpawnedChild {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, job.stderrFD, 2)
        posix_spawn_file_actions_adddup2(&actions, job.controlFD, PROCESSING_WORKER_CONTROL_FD)
        processing_spawn_file_actions_addclosefrom(&actions, PROCESSING_WORKER_CONTROL_FD + 1)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        // Its own process group, so a kill takes the child's descendants too.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var environment = ProcessInfo.processInfo.environment
        environment[PROCESSING_WORKER_ENV] = "\(PROCESSING_WORKER_CONTROL_FD):\(getpid())"
        // Crashes are reported to the parent with the child's last stderr lines; the
        // backtracer's interactive output only slows a worker's death down.
        if environment["SWIFT_BACKTRACE"] == nil { environment["SWIFT_BACKTRACE"] = "enable=no" }
        let arguments = [CommandLine.arguments.first ?? executable]
        let environmentStrings = environment.map { "\($0.key)=\($0.value)" }

        var pid: pid_t = 0
        let status = withCStrings(arguments) { argv in
            withCStrings(environmentStrings) { envp in
                posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            }
        }
        guard status == 0 else {
            throw ProcessingError(.spawnFailed, "posix_spawn of \(executable) failed: \(String(cString: strerror(status)))")
        }
        do {
            return SpawnedChild(pid: pid, pidfd: try Syscall.pidfdOpen(pid))
        } catch {
            Syscall.signalGroup(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw ProcessingError(.spawnFailed, "\(error)")
        }
    }
}

/// Calls `body` with a NULL-terminated C array of copies of `strings`.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
