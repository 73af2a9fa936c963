#if canImport(Glibc)
import Glibc
#endif

/// What happens to a child, as the reactor sees it.
enum ChildEvent: Sendable {
    case frame(Frame)
    /// The control channel ended before the child exited (a malformed frame, for instance).
    case channelEnded(ChannelEnd)
    /// The child was reaped; `stderrTail` holds its last stderr lines. Always the last event.
    case exited(ExitStatus, stderrTail: String)
}

/// One worker process as the parent sees it: its control channel, its stderr pipe and the
/// pidfd that reports its exit. Callbacks run on the reactor thread, except that a `listen`
/// polling the channel may deliver `.frame`s on its own thread (still one at a time and in
/// order, under the channel's read lock); by `.exited` all of its fds are closed and the
/// child is reaped.
final class ChildProcess: @unchecked Sendable {  // mutable state: the reactor thread only
    let pid: pid_t
    let channel: Channel
    private let pidfd: Int32
    private let stderrFD: Int32
    private var exitRegistration: Reactor.Registration?
    private var stderrRegistration: Reactor.Registration?
    private let onEvent: @Sendable (ChildEvent) -> Void
    private var stderrTail: [UInt8] = []
    private var stderrOpen = true
    private var reaped = false

    /// How much of a child's stderr is kept for the error that reports its crash.
    private static let stderrTailLimit = 4096

    /// Spawns a worker and starts watching it. `onEvent` runs on the reactor thread.
    static func launch(onEvent: @escaping @Sendable (ChildEvent) -> Void) async throws -> ChildProcess {
        let (parentEnd, childEnd) = try Syscall.socketPair()
        let stderrPipe: (read: Int32, write: Int32)
        let highChildEnd: Int32
        let highStderr: Int32
        do {
            stderrPipe = try Syscall.pipe()
            highChildEnd = try Syscall.duplicate(childEnd, atLeast: 10)
            Syscall.close(childEnd)
            do {
                highStderr = try Syscall.duplicate(stderrPipe.write, atLeast: 10)
                Syscall.close(stderrPipe.write)
            } catch {
                Syscall.close(stderrPipe.read)
                Syscall.close(stderrPipe.write)
                Syscall.close(highChildEnd)
                throw error
            }
        } catch {
            Syscall.close(parentEnd)
            throw ProcessingError(.spawnFailed, "could not create the worker's channels: \(error)")
        }
        let spawned: SpawnedChild
        do {
            spawned = try await Spawner.shared.spawn(controlFD: highChildEnd, stderrFD: highStderr)
        } catch {
            for fd in [parentEnd, highChildEnd, highStderr, stderrPipe.read] { Syscall.close(fd) }
            throw error
        }
        // The child has its own copies now.
        Syscall.close(highChildEnd)
        Syscall.close(highStderr)
        do {
            try Syscall.setNonBlocking(stderrPipe.read)
            let child = try ChildProcess(spawned, channelFD: parentEnd, stderrFD: stderrPipe.read, onEvent: onEvent)
            child.start()
            return child
        } catch {
            Syscall.pidfdSignal(spawned.pidfd, SIGKILL)
            _ = try? Syscall.reap(spawned.pidfd)
            for fd in [parentEnd, stderrPipe.read, spawned.pidfd] { Syscall.close(fd) }
            throw error
        }
    }

    private init(_ spawned: SpawnedChild, channelFD: Int32, stderrFD: Int32,
                 onEvent: @escaping @Sendable (ChildEvent) -> Void) throws {
        pid = spawned.pid
        pidfd = spawned.pidfd
        self.stderrFD = stderrFD
        self.onEvent = onEvent
        channel = try Channel(fd: channelFD, onFrame: { onEvent(.frame($0)) }, onEnd: { end in
            if case .closed = end { return }  // a normal end: the exit follows
            onEvent(.channelEnded(end))
        })
    }

    private func start() {
        channel.start()
        Reactor.shared.execute { [self] in
            do {
                stderrRegistration = try Reactor.shared.register(stderrFD, interest: .read) { [self] _ in readStderr() }
                exitRegistration = try Reactor.shared.register(pidfd, interest: .read) { [self] _ in childMayHaveExited() }
            } catch {
                // Without its exit watch a child could never be reaped: end it now.
                Syscall.pidfdSignal(pidfd, SIGKILL)
                Syscall.signalGroup(pid, SIGKILL)
                Syscall.waitForExit(pid)
                finish(.signaled(SIGKILL))
            }
        }
    }

    /// Sends a signal to the child and its process group, unless it was already reaped.
    func signal(_ signal: Int32) {
        Reactor.shared.execute { [self] in
            guard !reaped else { return }
            Syscall.pidfdSignal(pidfd, signal)
            Syscall.signalGroup(pid, signal)
        }
    }

    private func childMayHaveExited() {
        let status: ExitStatus?
        do {
            status = try Syscall.reap(pidfd)
        } catch {
            status = .exited(-1)
        }
        guard let status else { return }
        finish(status)
    }

    /// The child is reaped: take what it wrote before it died (still in the socket and the
    /// pipe), close every fd, and report.
    private func finish(_ status: ExitStatus) {
        reaped = true
        channel.readAvailable()
        readStderr()
        channel.close(reason: "the process has exited")
        if let exitRegistration { Reactor.shared.deregister(exitRegistration) }
        Syscall.close(pidfd)
        closeStderr()
        onEvent(.exited(status, stderrTail: String(decoding: stderrTail, as: UTF8.self)))
    }

    private func closeStderr() {
        guard stderrOpen else { return }
        stderrOpen = false
        if let stderrRegistration { Reactor.shared.deregister(stderrRegistration) }
        Syscall.close(stderrFD)
    }

    /// Forwards the child's stderr to ours and keeps its tail for crash reports.
    private func readStderr() {
        guard stderrOpen else { return }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let result = buffer.withUnsafeMutableBytes { try? Syscall.read(stderrFD, into: $0) }
            switch result {
            case .transferred(let count)?:
                buffer.withUnsafeBytes { Syscall.writeAll(STDERR_FILENO, UnsafeRawBufferPointer(rebasing: $0[..<count])) }
                stderrTail.append(contentsOf: buffer[..<count])
                if stderrTail.count > Self.stderrTailLimit {
                    stderrTail.removeFirst(stderrTail.count - Self.stderrTailLimit)
                }
            case .wouldBlock?:
                return
            case .endOfFile?, nil:
                closeStderr()
                return
            }
        }
    }
}
