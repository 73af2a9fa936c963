import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// What happens to a child, as the reactor sees it (delivered on `Reactor.queue`).
enum ChildEvent: Sendable {
    case frame(Frame)
    /// The control channel ended before the child exited (a malformed frame, for instance).
    case channelEnded(ChannelEnd)
    /// The child was reaped; `stderrTail` holds its last stderr lines. Always the last event.
    case exited(ExitStatus, stderrTail: String)
}

/// One worker process as the parent sees it: its control channel, its stderr pipe and the
/// pidfd that reports its exit. Every callback runs on `Reactor.queue`; after `.exited` all of
/// its fds are closed and the child is reaped.
final class ChildProcess: @unchecked Sendable {  // mutable state: Reactor.queue only
    let pid: pid_t
    let channel: Channel
    private let pidfd: Int32
    private let stderrFD: Int32
    private let exitSource: DispatchSourceRead
    private let stderrSource: DispatchSourceRead
    private let onEvent: @Sendable (ChildEvent) -> Void
    private var stderrTail: [UInt8] = []
    private var stderrOpen = true
    private(set) var reaped = false
    private var exitStatus: ExitStatus?
    /// The channel, the pidfd and the stderr pipe: `.exited` waits until all three are closed,
    /// so whoever waits for a child knows its fds are gone too.
    private var openResources = 3

    /// How much of a child's stderr is kept for the error that reports its crash.
    private static let stderrTailLimit = 4096

    /// Spawns a worker and starts watching it. `onEvent` runs on `Reactor.queue`.
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
        exitSource = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: Reactor.queue)
        stderrSource = DispatchSource.makeReadSource(fileDescriptor: stderrFD, queue: Reactor.queue)
        exitSource.setEventHandler { [self] in childMayHaveExited() }
        exitSource.setCancelHandler { [self] in
            Syscall.close(pidfd)
            resourceClosed()
        }
        stderrSource.setEventHandler { [self] in readStderr() }
        stderrSource.setCancelHandler { [self] in
            Syscall.close(stderrFD)
            resourceClosed()
        }
    }

    private func start() {
        channel.start()
        stderrSource.activate()
        exitSource.activate()
    }

    /// Sends a signal to the child and its process group, unless it was already reaped.
    func signal(_ signal: Int32) {
        Reactor.queue.async { [self] in
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
        reaped = true
        exitStatus = status
        // Whatever the child wrote before it died is still in the socket and the pipe.
        channel.readAvailable()
        readStderr()
        channel.close(reason: "the process has exited") { [self] in resourceClosed() }
        exitSource.cancel()
        if stderrOpen {
            stderrOpen = false
            stderrSource.cancel()
        }
    }

    private func resourceClosed() {
        openResources -= 1
        guard openResources == 0, let exitStatus else { return }
        onEvent(.exited(exitStatus, stderrTail: String(decoding: stderrTail, as: UTF8.self)))
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
                stderrOpen = false
                stderrSource.cancel()
                return
            }
        }
    }
}
