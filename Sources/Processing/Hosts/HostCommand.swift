#if canImport(Glibc)
import Glibc
#endif

/// A short command run to completion on the way to a remote worker (a look at what the host
/// has, a copy of the binary): its exit status and what it wrote, read from memfds after it
/// exits, so that no pipe can fill and block it.
struct HostCommand {
    let arguments: [String]

    struct Outcome {
        let status: ExitStatus
        let stdout: String
        let stderr: String

        var succeeded: Bool { status == .exited(0) }

        /// The last lines of stderr, for an error message.
        var stderrSummary: String {
            let lines = stderr.split(separator: "\n").suffix(3).joined(separator: " / ")
            return lines.isEmpty ? "it wrote nothing to stderr" : "its stderr: \(lines)"
        }
    }

    /// Runs the command with `stdinPath` (or /dev/null) as its stdin; waits without holding
    /// a thread. Cancelling the caller kills it (its process group) and throws
    /// `CancellationError`.
    func run(stdinPath: String? = nil) async throws -> Outcome {
        let input = FileDescriptor(owning: try stdinPath.map { path throws(SystemError) in try Syscall.openForReading(path) }
                                   ?? Syscall.openNull())
        let output = FileDescriptor(owning: try Syscall.makeSharedMemory(name: "processing-command-stdout"))
        let errors = FileDescriptor(owning: try Syscall.makeSharedMemory(name: "processing-command-stderr"))
        let child = try await Spawner.shared.spawnCommand(arguments, stdin: input.rawValue, stdout: output.rawValue,
                                                          stderr: errors.rawValue)
        do {
            try await Reactor.shared.waitUntilReady(child.exitDescriptor, writable: false)
        } catch {
            // Ended in the background: a SIGKILLed child exits at once, and is reaped then.
            Syscall.signalGroup(child.pid, SIGKILL)
            Task.detached {
                try? await Reactor.shared.waitUntilReady(child.exitDescriptor, writable: false)
                _ = try? Syscall.reap(child.exitDescriptor)
                Syscall.close(child.exitDescriptor)
            }
            throw error
        }
        Syscall.signalGroup(child.pid, SIGKILL)  // what it left running in its group
        let status = (try? Syscall.reap(child.exitDescriptor)) ?? nil
        Syscall.close(child.exitDescriptor)
        let limit = 64 * 1024
        return Outcome(status: status ?? .unavailable,
                       stdout: String(decoding: Syscall.contents(of: output.rawValue, limit: limit), as: UTF8.self),
                       stderr: String(decoding: Syscall.contents(of: errors.rawValue, limit: limit), as: UTF8.self))
    }
}
