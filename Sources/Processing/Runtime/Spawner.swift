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
    /// What a local worker inherited (nil for a command).
    var setting: WorkerSetting?
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

    /// What a job spawns.
    private enum Program {
        /// This program's own image, as a local worker.
        /// `spareHints`: nil unless it is a spare; then the type names it warms up for.
        case worker(controlFD: Int32, stderrFD: Int32, stdout: ChildStdout, spareHints: [String]?)
        /// A command found on `PATH` (ssh, or a user's launcher), with these descriptors as
        /// its stdin, stdout and stderr.
        case command(arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32)
    }

    private struct Job {
        let id: UInt64
        let program: Program
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
    /// `spareHints`: the worker is a spare, spawned ahead of its use (`SparePool`), that warms up
    /// while it waits, for these process types (mangled names) among others.
    func spawn(controlFD: Int32, stderrFD: Int32, stdout: ChildStdout, spareHints: [String]? = nil) async throws -> SpawnedChild {
        try await spawn(.worker(controlFD: controlFD, stderrFD: stderrFD, stdout: stdout, spareHints: spareHints))
    }

    /// Spawns `arguments` (the first found on `PATH`) with the given descriptors as its
    /// stdin, stdout and stderr (none numbered 0-2; they are duplicates the caller keeps), in a
    /// process group of its own, with this process's environment. Cancellation as above.
    func spawnCommand(_ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32) async throws -> SpawnedChild {
        try await spawn(.command(arguments: arguments, stdin: stdin, stdout: stdout, stderr: stderr))
    }

    private func spawn(_ program: Program) async throws -> SpawnedChild {
        let id = jobs.withLock { queue in
            defer { queue.nextID += 1 }
            return queue.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let cancelled = jobs.withLock { queue in
                    if Task.isCancelled { return true }
                    queue.jobs.append(Job(id: id, program: program, continuation: continuation))
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
                job.continuation.resume(with: Result { try spawnProgram(job.program) })
            }
        }
    }

    private func spawnProgram(_ program: Program) throws -> SpawnedChild {
        let setting = WorkerSetting.current()
        let inherited = setting.environment
        // The limit too, so that the child reads even its start frame under the parent's.
        var marker = "\(PROCESSING_WORKER_CONTROL_FD):\(getpid()):\(setting.messageLimit)"
        if case .worker(_, _, _, let hints?) = program { marker += ":1:" + hints.joined(separator: ",") }
        // Names compared as bytes (a `String` prefix compares characters, and a combining mark
        // after the `=` would make another one of it).
        func named(_ name: String) -> (String) -> Bool {
            let prefix = Array((name + "=").utf8)
            return { $0.utf8.starts(with: prefix) }
        }
        let isMarker = named(PROCESSING_WORKER_ENV)
        var environment = inherited.filter { !isMarker($0) }
        environment.append(PROCESSING_WORKER_ENV + "=" + marker)
        // Crashes are reported to the parent with the child's last stderr lines; the
        // backtracer's interactive output only slows a worker's death down.
        if !environment.contains(where: named("SWIFT_BACKTRACE")) { environment.append("SWIFT_BACKTRACE=enable=no") }
        // The pidfd's slot is taken before the child exists, so that a full descriptor table
        // fails the start at once instead of leaving a child to kill and reap with the table
        // full. (Dispatch's worker monitor crashes the whole program when it cannot open
        // /proc/<tid>/stat, so every moment spent with a full table is a risk.)
        let reservation: Int32
        do {
            reservation = try Syscall.duplicate(STDERR_FILENO)
        } catch {
            throw SystemError(call: "pidfd_open (reserving its descriptor)", errno: error.errno)
        }
        let pid: pid_t
        do {
            switch program {
            case .worker(let controlFD, let stderrFD, let stdout, _):
                pid = try Syscall.spawnWorker(
                    stdout: stdout, stderr: stderrFD, control: controlFD,
                    arguments: [CommandLine.arguments.first ?? Syscall.ownImage],
                    environment: environment)
            case .command(let arguments, let stdin, let stdout, let stderr):
                // The launcher gets this process's own environment (ssh needs its agent's).
                pid = try Syscall.spawnCommand(arguments, stdin: stdin, stdout: stdout, stderr: stderr,
                                               environment: inherited)
            }
        } catch {
            Syscall.close(reservation)
            throw error
        }
        // Another thread may take the freed slot first; then the start fails as below.
        Syscall.close(reservation)
        do {
            let isWorker = if case .worker = program { true } else { false }
            return SpawnedChild(pid: pid, exitDescriptor: try Syscall.openExitDescriptor(pid), setting: isWorker ? setting : nil)
        } catch {
            // This thread exists only to spawn: waiting here for a SIGKILLed child is brief.
            Syscall.signalGroup(pid, SIGKILL)
            Syscall.waitForExit(pid)
            throw error
        }
    }
}

