import CProcessingShims
#if canImport(Glibc)
import Glibc
#endif

/// What happens to a child, as the reactor sees it.
enum ChildEvent: Sendable {
    case frame(Frame)
    /// The control channel ended before the child exited (a malformed frame, for instance).
    case channelEnded(ChannelEnd)
    /// Its stdout and stderr pipes ended while it still ran (a worker releases them just
    /// before it sends its result): what they left. The exit's record holds nothing of what
    /// was captured then, only whether lines were forwarded.
    case outputEnded(ChildOutputRecord)
    /// The child was reaped; `stderr` holds the end of what it wrote there (and the line that
    /// says why it died, if one did), `output` what it wrote to streams set to `.capture` and
    /// whether it forwarded stdout lines. Always the last event.
    case exited(ExitStatus, stderr: StderrTail, output: ChildOutputRecord)
}

/// What a child's output left for its exit: what it captured, and whether it forwarded lines
/// to stdout (which `StdoutWriter` may still be writing).
struct ChildOutputRecord: Sendable {
    var captured = CapturedOutput()
    var forwardedStdout = false
}

/// What a child's stdout and stderr do (`ChildOutput`), and the name their forwarded lines
/// are prefixed with.
struct OutputSettings: Sendable {
    var stdout = ChildOutput.forward
    var stderr = ChildOutput.forward
    var name: String
}

/// One worker process as the parent sees it: its control channel, its stderr pipe and the
/// exit descriptor that reports its exit (`Syscall.openExitDescriptor`). Callbacks run on the reactor thread, except that a `listen`
/// polling the channel may deliver `.frame`s on its own thread (still one at a time and in
/// order, under the channel's read lock); by `.exited` all of its fds are closed, the child is
/// reaped, and its process group (its own children, unless they left it) is killed.
final class ChildProcess: @unchecked Sendable {  // mutable state: the reactor thread only
    /// The child's pid: for a remote worker, its launcher's (ssh's) here.
    let pid: pid_t
    /// Where the worker runs.
    let host: WorkerHost
    let channel: Channel
    private let exitDescriptor: Int32
    private var exitWatch: ReactorWatch?
    private let onEvent: @Sendable (ChildEvent) -> Void
    private var stderrTail = StderrTail()
    private var stderr: OutputPipe
    private var stdout: OutputPipe?
    private var record = ChildOutputRecord()
    /// `Name[pid]: `, before each forwarded line.
    private let prefix: [UInt8]
    private var reaped = false
    /// `.outputEnded` was reported.
    private var outputEndReported = false

    /// The descriptor numbers a worker finds its channels on (posix_spawn maps them there).
    private static let childTargets: [Int32] = [STDOUT_FILENO, STDERR_FILENO, PROCESSING_WORKER_CONTROL_FD]

    /// The parent's end of the pipe a child's stdout or stderr goes to, and what to do with it.
    private struct OutputPipe {
        let fd: Int32
        let mode: ChildOutput
        let isStderr: Bool
        var watch: ReactorWatch?
        var isOpen = true
        var lines = LineSplitter()
    }

    /// Spawns a worker; `startWatching()` starts its events. `onEvent` runs on the reactor thread. Throws
    /// `ProcessingError` (`.spawnFailed`) naming the call that failed and, for a lack of
    /// descriptors or processes, what to raise; nothing opened here is left open then.
    static func launch(output: OutputSettings, on host: WorkerHost = .local,
                       onEvent: @escaping @Sendable (ChildEvent) -> Void) async throws -> ChildProcess {
        OutputForwarder.standardError.prepare()
        if !host.isLocal { return try await launchRemote(output: output, on: host, onEvent: onEvent) }
        if let spare = SparePool.shared.take() {
            do {
                return try adopt(spare, output: output, onEvent: onEvent)
            } catch {
                // It could not be handed its output (it died, or descriptors ran out): a fresh
                // worker is spawned instead, and fails as such if it must.
                SparePool.shared.discard(spare)
            }
        }
        do {
            // Owned descriptors: whatever is not handed over below is closed on the way out,
            // whichever step fails.
            let channelEnds = try Syscall.socketPair()
            let parentEnd = channelEnds.first
            // posix_spawn maps the child's ends onto 1, 2 and 3: one already numbered like a
            // target would be clobbered by another's mapping (or keep its close-on-exec flag).
            let control = try movedOffTargets(channelEnds.second)
            let stderrPipe = try Syscall.pipe()
            let stderrRead = stderrPipe.read
            let childStderr = try movedOffTargets(stderrPipe.write)
            // Everything that can fail happens before the spawn: after it, nothing may.
            try Channel.prepare(parentEnd.rawValue)
            try Syscall.setNonBlocking(stderrRead.rawValue)
            let spawned: SpawnedChild
            var stdoutRead: Int32?
            switch output.stdout {
            case .inherit:
                spawned = try await Spawner.shared.spawn(controlFD: control.rawValue, stderrFD: childStderr.rawValue, stdout: .inherit)
            case .discard:
                spawned = try await Spawner.shared.spawn(controlFD: control.rawValue, stderrFD: childStderr.rawValue, stdout: .null)
            case .forward, .capture:
                let stdoutPipe = try Syscall.pipe()
                let read = stdoutPipe.read
                let childStdout = try movedOffTargets(stdoutPipe.write)
                try Syscall.setNonBlocking(read.rawValue)
                spawned = try await Spawner.shared.spawn(controlFD: control.rawValue, stderrFD: childStderr.rawValue,
                                                         stdout: .pipe(childStdout.rawValue))
                childStdout.close()
                stdoutRead = read.release()
            }
            // The child has its own copies now.
            control.close()
            childStderr.close()
            return ChildProcess(spawned, channelFD: parentEnd.release(), stderrFD: stderrRead.release(),
                                stdoutFD: stdoutRead, output: output, onEvent: onEvent)
        } catch {
            if error is ProcessingError || error is CancellationError { throw error }
            throw ProcessingError(.spawnFailed, "a worker process could not be started: \(error)", causedBy: error)
        }
    }

    /// Makes a spare worker this child: it gets its stdout and stderr (as `output` says, as a
    /// fresh worker would have had them) in its first frame, which it applies before it reads
    /// any other, so that nothing it writes for its process goes elsewhere.
    private static func adopt(_ spare: SpareWorker, output: OutputSettings,
                              onEvent: @escaping @Sendable (ChildEvent) -> Void) throws -> ChildProcess {
        let stderrPipe = try Syscall.pipe()
        let stderrRead = stderrPipe.read
        let childStderr = stderrPipe.write
        try Syscall.setNonBlocking(stderrRead.rawValue)
        // Raw numbers from here: closed on every way out but the one that hands them over.
        var stdoutRead: Int32?
        var childStdout: Int32?
        defer {
            if let stdoutRead { Syscall.close(stdoutRead) }
            if let childStdout { Syscall.close(childStdout) }
        }
        switch output.stdout {
        case .inherit:
            break
        case .discard:
            childStdout = try Syscall.openNull()
        case .forward, .capture:
            let stdoutPipe = try Syscall.pipe()
            let (read, write) = stdoutPipe.release()
            (stdoutRead, childStdout) = (read, write)
            try Syscall.setNonBlocking(read)
        }
        let descriptors = [childStderr.rawValue, childStdout ?? STDOUT_FILENO]
        let frame = try Frame.encode(.spare, attachmentCount: descriptors.count) { _ in }
        let sent = try frame.withUnsafeBytes { bytes throws(SystemError) in
            try Syscall.send(spare.channelFD, bytes, attaching: descriptors)
        }
        // An idle spare's socket is empty: a frame this small goes whole, or the spare is gone.
        guard case .transferred(frame.count) = sent else {
            throw SystemError(call: "sendmsg (a spare worker's output)", errno: EPIPE)
        }
        let stdoutFD = stdoutRead
        stdoutRead = nil
        return ChildProcess(spare.child, channelFD: spare.channelFD, stderrFD: stderrRead.release(),
                            stdoutFD: stdoutFD, output: output, onEvent: onEvent)
    }

    /// Starts a worker on a remote host: its launcher (ssh) runs here as the child, with one
    /// end of the channel's socket as its stdin and stdout (the worker bridges them to its
    /// channel there) and the stderr pipe, through which the worker's stderr (and stdout)
    /// arrives. Throws `ProcessingError` (`.hostUnavailable`, `.buildMismatch`) if the host
    /// has no usable binary, before anything is spawned for the worker.
    private static func launchRemote(output: OutputSettings, on host: WorkerHost,
                                     onEvent: @escaping @Sendable (ChildEvent) -> Void) async throws -> ChildProcess {
        let binary = try await RemoteBinaries.shared.path(on: host)
        do {
            let channelEnds = try Syscall.socketPair()
            let parentEnd = channelEnds.first
            let launcherEnd = channelEnds.second
            let stderrPipe = try Syscall.pipe()
            let stderrRead = stderrPipe.read
            let launcherStderr = stderrPipe.write
            try Channel.prepare(parentEnd.rawValue)
            try Syscall.setNonBlocking(stderrRead.rawValue)
            let spawned = try await Spawner.shared.spawnCommand(
                RemoteLauncher(host: host).workerArguments(binary: binary),
                stdin: launcherEnd.rawValue, stdout: launcherEnd.rawValue, stderr: launcherStderr.rawValue)
            launcherEnd.close()
            launcherStderr.close()
            return ChildProcess(spawned, channelFD: parentEnd.release(), stderrFD: stderrRead.release(),
                                stdoutFD: nil, output: output, host: host, onEvent: onEvent)
        } catch {
            if error is ProcessingError || error is CancellationError { throw error }
            throw ProcessingError(.spawnFailed, "a worker on \(host.name) could not be started: \(error)", causedBy: error)
        }
    }

    /// `fd`, or a duplicate of it above the child's target numbers (the original closed).
    static func movedOffTargets(_ fd: consuming FileDescriptor) throws(SystemError) -> FileDescriptor {
        guard childTargets.contains(fd.rawValue) else { return fd }
        return FileDescriptor(owning: try Syscall.duplicate(fd.rawValue, atLeast: childTargets.max()! + 1))
    }

    private init(_ spawned: SpawnedChild, channelFD: Int32, stderrFD: Int32, stdoutFD: Int32?,
                 output: OutputSettings, host: WorkerHost = .local, onEvent: @escaping @Sendable (ChildEvent) -> Void) {
        pid = spawned.pid
        self.host = host
        exitDescriptor = spawned.exitDescriptor
        stderr = OutputPipe(fd: stderrFD, mode: output.stderr, isStderr: true)
        stdout = stdoutFD.map { OutputPipe(fd: $0, mode: output.stdout, isStderr: false) }
        prefix = Array((host.isLocal ? "\(output.name)[\(spawned.pid)]: " : "\(output.name)@\(host.name)[\(spawned.pid)]: ").utf8)
        self.onEvent = onEvent
        channel = Channel(fd: channelFD, onFrame: { onEvent(.frame($0)) }, onEnd: { end in
            if case .closed = end { return }  // a normal end: the exit follows
            onEvent(.channelEnded(end))
        })
    }

    /// Starts reading the child's channel and output and watching for its exit: its events
    /// begin. The owner calls it once it has recorded the child, so that no event (its exit
    /// least of all) comes before that.
    func startWatching() {
        channel.start()
        Reactor.shared.execute { [self] in
            let stderrWatch = Reactor.shared.watch(stderr.fd, onReadable: { [self] in
                readOutput(&stderr)
                reportOutputEndIfEnded()
            })
            let stdoutWatch = stdout.map { Reactor.shared.watch($0.fd, onReadable: { [self] in
                readOutput(&stdout!)
                reportOutputEndIfEnded()
            }) }
            // An exit descriptor is readable once its process has exited.
            let exitWatch = Reactor.shared.watch(exitDescriptor, onReadable: { [self] in childMayHaveExited() })
            (stderr.watch, self.exitWatch) = (stderrWatch, exitWatch)
            stdout?.watch = stdoutWatch
            do {
                try stderrWatch.want(reading: true, writing: false)
                try stdoutWatch?.want(reading: true, writing: false)
                try exitWatch.want(reading: true, writing: false)
            } catch {
                // Without its exit watch a child could never be reaped: end it now.
                Syscall.signal(exitDescriptor: exitDescriptor, SIGKILL)
                Syscall.signalGroup(pid, SIGKILL)
                Syscall.waitForExit(pid)
                return finish(.signaled(SIGKILL))
            }
        }
    }

    /// Sends a signal to the child and its process group, unless it was already reaped.
    func signal(_ signal: Int32) {
        Reactor.shared.execute { [self] in
            guard !reaped else { return }
            Syscall.signal(exitDescriptor: exitDescriptor, signal)
            Syscall.signalGroup(pid, signal)
        }
    }

    /// The child sent its result and let go of its output: what it started in its process
    /// group is killed now (with it, which has nothing left to send), as its reap would, unless
    /// it was reaped already; then `then` runs. On the reactor thread, where the reap happens,
    /// so that the group's number cannot have been reused.
    func endGroup(then: @escaping @Sendable () -> Void) {
        let job: @Sendable () -> Void = { [self] in
            if !reaped { Syscall.signalGroup(pid, SIGKILL) }
            then()
        }
        if Reactor.shared.isCurrent { job() } else { Reactor.shared.execute(job) }
    }

    private func childMayHaveExited() {
        guard Syscall.hasExited(exitDescriptor) else { return }
        // Its own children share its process group: they end with it, before the reap lets
        // the group's number be reused.
        Syscall.signalGroup(pid, SIGKILL)
        let status: ExitStatus
        do {
            guard let reaped = try Syscall.reap(exitDescriptor) else { return }
            status = reaped
        } catch {
            status = .unavailable
        }
        finish(host.isLocal ? status : remoteStatus(status))
    }

    /// A remote worker's end as the launcher tells it: the shell around the worker exits
    /// with 128 + the signal that killed it, and ssh with 255 when the connection failed
    /// (then the tail says so: ssh's own line may be all there is).
    private func remoteStatus(_ status: ExitStatus) -> ExitStatus {
        guard case .exited(let code) = status else { return status }
        if case .ssh = host.launcher, code == 255 {
            Array("Processing: the connection to \(host.name) ended (ssh exited with status 255)\n".utf8)
                .withUnsafeBytes { stderrTail.append($0) }
            return status
        }
        if code > 128, code < 128 + 65 { return .signaled(code - 128) }
        return status
    }

    /// The child is reaped: take what it wrote before it died (still in the socket and the
    /// pipe), close every fd, and report. (On the reactor thread, so no handler of the
    /// watches cancelled here can still be reading a descriptor closed here.)
    private func finish(_ status: ExitStatus) {
        reaped = true
        channel.readAvailable(ignoringPause: true)
        readOutput(&stderr, budget: .max)
        if stdout != nil { readOutput(&stdout!, budget: .max) }
        channel.close(reason: "the process has exited")
        exitWatch?.cancel()
        Syscall.close(exitDescriptor)
        close(&stderr)
        if stdout != nil { close(&stdout!) }
        onEvent(.exited(status, stderr: stderrTail, output: record))
    }

    /// Both streams ended before the exit: what they left goes out now, so that the owner can
    /// answer with the result the child sent without waiting for its exit.
    private func reportOutputEndIfEnded() {
        guard !reaped, !outputEndReported, !stderr.isOpen, stdout?.isOpen != true else { return }
        outputEndReported = true
        let output = record
        record.captured = CapturedOutput()
        onEvent(.outputEnded(output))
    }

    /// Ends a stream: its last line (without a newline) goes where the others went.
    private func close(_ pipe: inout OutputPipe) {
        guard pipe.isOpen else { return }
        pipe.isOpen = false
        pipe.watch?.cancel()
        Syscall.close(pipe.fd)
        if pipe.mode == .forward { pipe.lines.finish { forwardLine($0, toStderr: pipe.isStderr) } }
    }

    /// At most this much output is read per wakeup: a child that writes without pause must
    /// not keep the reactor from every other child (the watch fires again for the rest).
    private static let readBudget = 256 * 1024

    /// Reads what the child wrote to a stream and does with it what its mode says; stderr's
    /// tail is kept for crash reports whatever the mode. `budget`: how much to read now (all
    /// of it once the child has exited).
    private func readOutput(_ pipe: inout OutputPipe, budget: Int = ChildProcess.readBudget) {
        guard pipe.isOpen else { return }
        var left = budget
        withUnsafeTemporaryAllocation(byteCount: 16 * 1024, alignment: 16) { buffer in
            while left > 0 {
                switch try? Syscall.read(pipe.fd, into: buffer) {
                case .transferred(let count)?:
                    left -= count
                    let chunk = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                    if pipe.isStderr { stderrTail.append(chunk) }
                    switch pipe.mode {
                    case .inherit: OutputForwarder.standardError.forward(chunk)
                    case .forward:
                        let toStderr = pipe.isStderr
                        pipe.lines.feed(chunk) { forwardLine($0, toStderr: toStderr) }
                    case .capture: record.captured.append(chunk, toStderr: pipe.isStderr)
                    case .discard: break
                    }
                case .wouldBlock?:
                    return
                case .endOfFile?, nil:
                    close(&pipe)
                    return
                }
            }
        }
    }

    /// One line, prefixed by the process's name and pid, out in one piece.
    private func forwardLine(_ line: UnsafeRawBufferPointer, toStderr: Bool) {
        var bytes = prefix
        bytes.append(contentsOf: line)
        if toStderr {
            bytes.withUnsafeBytes { OutputForwarder.standardError.forward($0, whole: true) }
        } else {
            record.forwardedStdout = true
            StdoutWriter.shared.write(line: bytes)
        }
    }
}
