import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The parent's record of one process across its children: the first attempt, retries
/// while it has lives, and the child that runs `error(_:)` after a crash on the last life.
/// `ProcessHandle` is the typed face of it.
///
/// `ProcessState` is the state machine; `ProcessCore` is its storage and the effects (spawning,
/// sending, signalling, resuming continuations, cancelling timers), which happen outside the
/// lock.
final class ProcessCore: Sendable {
    typealias Outcome = ProcessOutcome
    private typealias Machine = ProcessState<ChildProcess, CheckedContinuation<Bool, any Error>, OneShotTimer>

    /// How long a child that overran a section gets between SIGTERM and SIGKILL.
    static let terminationGrace = Duration.milliseconds(250)

    let processName: String
    /// Where its children run.
    let host: WorkerHost
    let mailbox = Mailbox()
    private let state: Mutex<Machine>
    private let output: OutputSettings
    /// What the children wrote to streams set to `.capture`, across retries.
    private let captured = Mutex(CapturedOutput())
    /// A child's output ended with lines forwarded to stdout (`StdoutWriter` may still be
    /// writing them when the process ends on its result).
    private let forwardedStdout = Atomic(false)
    /// Whether a child was spawned and not yet reaped, and who waits for its reap
    /// (`untilReaped`): a process ends on its child's result, a moment before the reap.
    private let reap = Mutex(ReapWaits())
    private struct ReapWaits {
        var childUnreaped = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    /// Its events' source (`events`).
    private let eventSource = EventHub.Source(process: EventHub.shared.makeSourceID(), pool: nil)

    /// `processName` names the type fully (for errors); `displayName` is how its forwarded
    /// output lines begin (the type's own name).
    init(processName: String, displayName: String, typeName: String, initialState: [UInt8],
         initialAttachments: AttachedDescriptors? = nil, config: ProcessConfig, host: WorkerHost = .local,
         runsErrorHandlerAfterCrash: Bool = true) {
        self.processName = processName
        self.host = host
        let settings = Machine.Settings(
            processName: processName, typeName: typeName, lives: config.lives, joinIn: config.joinIn,
            joinGrace: config.joinGrace, timeouts: config.timeouts, terminationGrace: Self.terminationGrace,
            runsErrorHandlerAfterCrash: runsErrorHandlerAfterCrash)
        state = Mutex(Machine(settings: settings, initialState: initialState, initialAttachments: initialAttachments))
        output = OutputSettings(stdout: config.stdout, stderr: config.stderr, name: displayName)
    }

    /// What the children wrote to streams set to `.capture`, so far (complete once ended).
    var capturedOutput: CapturedOutput { captured.withLock { $0 } }

    /// What happens to the process from now on; ends after its `exited` event.
    var events: ProcessEvents {
        ProcessEvents(filter: .process(eventSource.process!), hasEnded: { outcome != nil })
    }

    /// The children whose `ready` event was emitted: by the spawn once the start request is
    /// out, or by the exit if that came first (a child that answered had its start request,
    /// and the spawning task may resume after its exit was handled).
    private let readyChildren = Mutex<Set<Int32>>([])

    private func emitReady(_ pid: Int32) {
        guard readyChildren.withLock({ $0.insert(pid).inserted }) else { return }
        emit(.ready, pid: pid)
    }

    private func emit(_ kind: @autoclosure () -> ProcessEvent.Kind, pid: Int32?) {
        EventHub.shared.emit(eventSource) { ProcessEvent(process: output.name, pid: pid, kind: kind()) }
    }

    var isAlive: Bool { state.withLock { $0.isActive } }

    /// The running child's channel, for a listen that polls it before it sleeps.
    var channel: Channel? { state.withLock { $0.child?.channel } }

    var currentRun: Int { state.withLock { $0.currentRun } }

    /// The running child's pid (nil before its spawn and after its exit).
    var pid: Int32? { state.withLock { $0.child?.pid } }

    var timers: ProcessTimers { state.withLock { $0.timers } }

    var outcome: Outcome? { state.withLock { $0.outcome } }

    /// Whether the process ended on its child's result, before the child's exit (for tests).
    var endedOnResult: Bool { state.withLock { $0.endedOnResult } }

    /// Arms a timer that routes `purpose` back to the machine when it fires.
    private func arm(_ purpose: Machine.TimerPurpose, after limit: Duration) -> OneShotTimer {
        OneShotTimer(after: limit) { [weak self] in self?.timerFired(purpose) }
    }

    private func timerFired(_ purpose: Machine.TimerPurpose) {
        switch purpose {
        case .joinIn:
            state.withLock { $0.joinInPassed(arm: arm) }?.channel.post(urgent: Frame.encode(.stop))
        case .joinGrace:
            let (child, error) = state.withLock { ($0.joinGracePassed(), $0.joinTimeoutError) }
            guard let child else { return }
            emit(.timedOut(error), pid: child.pid)
            child.signal(SIGKILL)
        case .section(let token):
            guard let child = state.withLock({ $0.sectionOverran(token, arm: arm) }) else { return }
            if EventHub.shared.isListened, case .failure(let error)? = state.withLock({ $0.pendingReport }) {
                emit(.timedOut(error), pid: child.pid)
            }
            child.signal(SIGTERM)
        case .killGrace:
            state.withLock { $0.killGracePassed() }?.signal(SIGKILL)
        case .wait(let id):
            state.withLock { $0.withdrawWait(id) }?.waiter.resume(returning: false)
        }
    }

    // MARK: Starting

    /// Spawns the first child and sends it the process to run.
    func launch() async throws {
        let request = try state.withLock { state throws(ProcessingError) in try state.launch(arm: arm) }
        try await spawn(request)
    }

    private func spawn(_ request: StartRequest) async throws {
        let child: ChildProcess
        do {
            // A state over the size limit (a checkpoint's can grow) fails here, not in a child
            // that would wait for its start frame forever.
            try Frame.checkSize(request.state.count + request.typeName.utf8.count + 64, of: .start)
            if host.isLocal { SparePool.shared.noteStart(of: request.typeName) }
            child = try await ChildProcess.launch(output: output, on: host) { [self] event in handle(event) }
        } catch {
            finish(with: .failure(error))
            throw error
        }
        reap.withLock { $0.childUnreaped = true }
        mailbox.attach(child.channel)
        emit(.spawned, pid: child.pid)
        let launched = state.withLock { $0.launched(child) }
        // Watched from now on: its exit (however soon) finds the process starting it.
        child.startWatching()
        if launched.kill { return child.signal(SIGKILL) }
        var request = request
        request.stopRequested = launched.stopRequested
        request.minimumLogLevel = ProcessLog.minimumLevel
        request.logName = output.name
        let start: [UInt8]
        do {
            start = try Frame.encode(.start, attachmentCount: launched.attachments?.count ?? 0) {
                try BinaryEncoder().encode(request, appendingTo: &$0)
            }
        } catch {
            // Not sent: the child is ended, and the process fails with why.
            state.withLock { $0.startNotSent(error) }
            return child.signal(SIGKILL)
        }
        // The child exists: a joinIn that passed while it was spawned gives it its grace now.
        state.withLock { $0.armJoinGraceIfAwaited(arm: arm) }
        do {
            try await child.channel.send(start, attaching: launched.attachments)
            emitReady(child.pid)
            var pending = launched.pending
            repeat {
                for message in pending { try await child.channel.send(message) }
                pending = state.withLock { $0.started() }
            } while !pending.isEmpty
        } catch {
            // The child died at once; its exit event reports why.
        }
    }

    // MARK: Talking

    func send(_ frame: OutgoingFrame, operation: String) async throws {
        let child = try state.withLock { state throws(ProcessingError) in try state.send(frame, operation: operation) }
        try await child?.channel.send(frame)
    }

    /// Asks the process to stop gracefully. Returns at once: the stop goes ahead of messages
    /// not yet written, and reaches a child that reads nothing (stopped, busy) once it reads.
    func requestStop() {
        state.withLock { $0.requestStop() }?.channel.post(urgent: Frame.encode(.stop))
    }

    /// Kills the child now and gives up the process: no retry, no `error(_:)`.
    func kill() {
        state.withLock { $0.kill() }?.signal(SIGKILL)
    }

    /// The handle went away while its child ran: a child never outlives what owns it.
    func abandon() { kill() }

    // MARK: Waiting

    /// Waits until the last child spawned is reaped (at once if it is, or none was), even in a
    /// cancelled task: the reap follows its end at once (it was killed, or sent its result).
    func untilReaped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let reaped = reap.withLock { reap in
                if reap.childUnreaped { reap.waiters.append(continuation) }
                return !reap.childUnreaped
            }
            if reaped { continuation.resume() }
        }
    }

    /// Waits for the process to end, across retries; false if `timeout` passes first.
    func waitForEnd(timeout: Duration?) async throws -> Bool {
        guard let id = try state.withLock({ state throws(ProcessingError) in try state.beginWait() }) else { return true }
        if timeout == .zero { return false }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let found = state.withLock { state in
                    state.registerWait(continuation, id: id, timeout: timeout, cancelled: Task.isCancelled, arm: arm)
                }
                switch found {
                case .ended: continuation.resume(returning: true)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            guard let wait = state.withLock({ $0.withdrawWait(id) }) else { return }
            wait.timer?.cancel()
            wait.waiter.resume(throwing: CancellationError())
        }
    }

    // MARK: Events from the reactor

    private func handle(_ event: ChildEvent) {
        switch event {
        case .frame(let frame):
            received(frame)
        case .channelEnded(let end):
            let error = ProcessingError(.malformedFrame, "\(processName)'s channel broke: \(end.description); the process was killed")
            state.withLock { $0.channelEnded(error) }?.signal(SIGKILL)
        case .outputEnded(let output):
            if !output.captured.isEmpty { captured.withLock { $0.append(output.captured) } }
            if output.forwardedStdout { forwardedStdout.store(true, ordering: .releasing) }
            if state.withLock({ $0.outputEnded() }) { endOnResult() }
        case .exited(let status, let stderr, let output) where output.forwardedStdout:
            // Its last lines out before its end is seen (by a wait, a retry, `isAlive`), so
            // that what the program prints after waiting comes after them.
            StdoutWriter.shared.whenWritten { [self] in exited(status, stderr: stderr, output: output) }
        case .exited(let status, let stderr, let output):
            exited(status, stderr: stderr, output: output)
        }
    }

    /// Ends the process on its child's result, once the child's output has ended too, instead
    /// of at its exit (`ProcessState.endOnResult`). Forwarded lines go out first, as at an exit.
    private func endOnResult() {
        let end: @Sendable () -> Void = { [self] in
            guard let (finished, child) = state.withLock({ $0.endOnResult() }) else { return }
            emitReady(child.pid)
            // Its own children (in its process group) end before anyone hears of the end, as
            // they do when a child exits; the child is reaped a moment later (`ended()`).
            child.endGroup { [self] in perform(finished) }
        }
        if forwardedStdout.load(ordering: .acquiring) {
            StdoutWriter.shared.whenWritten(end)
        } else {
            end()
        }
    }

    private func exited(_ status: ExitStatus, stderr: StderrTail, output: ChildOutputRecord) {
        let reapWaiters = reap.withLock { reap in
            reap.childUnreaped = false
            defer { reap.waiters = [] }
            return reap.waiters
        }
        for waiter in reapWaiters { waiter.resume() }
        if !output.captured.isEmpty { captured.withLock { $0.append(output.captured) } }
        let cause = ProcessCrashError.Cause(status)
        let (after, ending, life, lives, exitedPID) = state.withLock { state in
            let pid = state.child?.pid
            let after = state.exited(cause: cause, stderr: stderr)
            return (after, state.lastEnding, state.life, state.settings.lives, pid)
        }
        if let exitedPID {
            // It answered (a result or a failure report), so it had its start request.
            switch ending {
            case .failure(is ProcessCrashError)?, nil: break
            default: emitReady(exitedPID)
            }
        }
        if EventHub.shared.isListened, case .failure(let crash as ProcessCrashError)? = ending {
            emit(crash.cause == .killed ? .killed : .crashed(crash), pid: exitedPID)
        }
        if case .launch(let request, _) = after, request.handleFailure == nil {
            emit(.restarted(life: life, of: lives), pid: nil)
        }
        switch after {
        case .ended:
            break
        case .finish(let finished):
            perform(finished)
        case .launch(let request, let timers):
            for timer in timers { timer.cancel() }
            Task { try? await spawn(request) }
        }
    }

    private func received(_ frame: Frame) {
        switch frame.kind {
        case .message:
            do {
                mailbox.deliver(try Message(frame))
            } catch {
                protocolViolation(error.description)
            }
        case .checkpoint:
            guard let checkpoint = decode(Checkpoint.self, from: frame, "a checkpoint") else { return }
            state.withLock { $0.checkpoint(checkpoint, attachments: frame.attachments) }
        case .section:
            do {
                let entered = try SectionMarker.decode(frame.payload)
                state.withLock { $0.sectionChanged(entered, arm: arm) }?.cancel()
            } catch {
                protocolViolation(error.description)
            }
        case .result:
            var offset = 0
            guard let run = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                return protocolViolation("a result frame without its run count")
            }
            if state.withLock({ $0.result(run: Int(run), bytes: Array(frame.payload[offset...])) }) {
                endOnResult()
            }
        case .failure:
            guard let report = decode(FailureReport.self, from: frame, "a failure report") else { return }
            state.withLock { $0.failureReported(report) }
        case .log:
            guard let entry = decode(LogEntry.self, from: frame, "a log entry") else { return }
            LogDelivery.shared.deliver(entry)
        case .start, .stop, .work, .batch, .spare:
            protocolViolation("a \(frame.kind) frame, which only a parent sends")
        case .batchReply:
            protocolViolation("a batch reply, which only a pool worker sends")
        case .relayBatch, .relayCredit, .relayEnd:
            protocolViolation("a \(frame.kind) frame, which travels only between relay stages")
        case .actorCall, .actorReply, .actorControl, .actorMessage:
            protocolViolation("a \(frame.kind) frame, which travels only on an actor connection")
        }
    }

    /// A frame's payload as a `T`, or nil after reporting the frame as a protocol violation.
    private func decode<T: Decodable>(_ type: T.Type, from frame: Frame, _ what: String) -> T? {
        do {
            return try BinaryDecoder().decode(T.self, from: frame.payload)
        } catch {
            protocolViolation("\(what) that did not decode: \(error)")
            return nil
        }
    }

    private func protocolViolation(_ what: String) {
        handle(.channelEnded(.malformed(what)))
    }

    private func finish(with outcome: Outcome) {
        perform(state.withLock { $0.finish(outcome) })
    }

    private func perform(_ finished: Machine.Finished) {
        for timer in finished.timers { timer.cancel() }
        mailbox.close(ProcessingError(.channelClosed, "\(processName) has ended and no message is left to listen for"))
        if case .failure(let error) = finished.outcome {
            emit(.exited(error: error), pid: nil)
        } else {
            emit(.exited(error: nil), pid: nil)
        }
        EventHub.shared.finish(.process(eventSource.process!))
        for waiter in finished.waiters { waiter.resume(returning: true) }
    }
}

extension ProcessCrashError.Cause {
    init(_ status: ExitStatus) {
        switch status {
        case .signaled(let signal): self = .signal(signal)
        case .exited(let code): self = .exit(code)
        case .unavailable: self = .statusUnavailable(sigchldIgnored: Syscall.ignoresChildSignal())
        }
    }
}
