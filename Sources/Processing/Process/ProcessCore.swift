import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The parent's record of one process across its children: the first attempt, retries
/// while it has lives, and the child that runs `error(_:)` after a crash on the last life.
/// `ProcessHandle` is the typed face of it.
///
/// `State` is the state machine; `ProcessCore` is its storage and the effects (spawning,
/// sending, signalling, resuming continuations), which happen outside the lock.
final class ProcessCore: Sendable {
    enum Outcome: Sendable {
        case output(run: Int, bytes: [UInt8])
        case failure(any Error)
    }

    /// How long a child that overran a section gets between SIGTERM and SIGKILL.
    static let terminationGrace = Duration.milliseconds(250)

    private enum Phase {
        case idle
        /// Spawning a child: the first one, a retry, or the one that runs `error(_:)`.
        case launching
        case running(ChildProcess)
        case ended(Outcome)
    }

    /// A section the child said it entered, which has a time-out.
    private struct TimedSection {
        var token: UInt64
        var section: ProcessSection
        var run: Int
        var limit: Duration
    }

    /// What to do once a child has exited.
    private enum AfterExit {
        case finish(Outcome)
        case launch(StartRequest)
    }

    private struct State {
        var phase = Phase.idle
        var currentRun = 0
        /// What the current child reported (or what broke) before it exited; final at its exit.
        var reported: Outcome?
        var killRequested = false
        var stopRequested = false
        var livesLeft: Int
        /// Where a retry starts: the state and run of the last checkpoint.
        var resumeState: [UInt8]
        /// The descriptors of the pipe points in `resumeState`, sent with each start.
        var resumeAttachments: AttachedDescriptors?
        var resumeRun = 0
        /// The failure being handed to `error(_:)` in a child of its own.
        var handlingFailure: (any ProcessError)?
        var timedSection: TimedSection?
        var nextToken: UInt64 = 0
        var timers = ProcessTimers()
        /// Messages told while no child was running (between a failure and its retry).
        var pendingMessages: [OutgoingFrame] = []
        var waiters: [UInt64: (continuation: CheckedContinuation<Bool, any Error>, timer: OneShotTimer?)] = [:]
        var nextWaiterID: UInt64 = 1
        /// The time-outs running for this process; each is cancelled when its wait ends, and all
        /// when the process ends (so none keeps it alive).
        var joinTimer: OneShotTimer?
        var sectionTimer: OneShotTimer?
        var killTimer: OneShotTimer?
        /// `joinIn` and its grace passed with the process still running: it was killed, and
        /// ends with `JoinTimeoutError` (no retry).
        var joinExpired = false

        /// The timers to cancel, taken out.
        mutating func takeTimers() -> [OneShotTimer] {
            defer { (joinTimer, sectionTimer, killTimer) = (nil, nil, nil) }
            return [joinTimer, sectionTimer, killTimer].compactMap { $0 }
        }

        var child: ChildProcess? {
            if case .running(let child) = phase { return child }
            return nil
        }

        var isActive: Bool {
            switch phase {
            case .launching, .running: true
            case .idle, .ended: false
            }
        }
    }

    let processName: String
    let mailbox = Mailbox()
    private let typeName: String
    private let config: ProcessConfig
    private let state: Mutex<State>

    init(processName: String, typeName: String, initialState: [UInt8], initialAttachments: AttachedDescriptors? = nil,
         config: ProcessConfig) {
        self.processName = processName
        self.typeName = typeName
        self.config = config
        state = Mutex(State(livesLeft: max(config.lives, 1), resumeState: initialState, resumeAttachments: initialAttachments))
    }

    var isAlive: Bool { state.withLock { $0.isActive } }

    /// The running child's channel, for a listen that polls it before it sleeps.
    var channel: Channel? { state.withLock { $0.child?.channel } }

    var currentRun: Int { state.withLock { $0.currentRun } }

    var timers: ProcessTimers { state.withLock { $0.timers } }

    var outcome: Outcome? {
        state.withLock { state in
            if case .ended(let outcome) = state.phase { return outcome }
            return nil
        }
    }

    // MARK: Starting

    /// Spawns the first child and sends it the process to run.
    func launch() async throws {
        let request = try state.withLock { state throws(ProcessingError) in
            guard case .idle = state.phase else {
                throw ProcessingError(.invalidState, "\(processName) was already started; a handle starts one process once")
            }
            state.phase = .launching
            if let joinIn = config.joinIn {
                state.joinTimer = OneShotTimer(after: joinIn) { [weak self] in self?.joinInPassed() }
            }
            return makeRequest(state)
        }
        try await spawn(request)
    }

    /// `joinIn` passed: ask the process to stop, and kill it if it has not within its grace.
    private func joinInPassed() {
        let active = state.withLock { state in
            guard state.isActive else { return false }
            state.joinTimer = OneShotTimer(after: config.joinGrace) { [weak self] in self?.joinGracePassed() }
            return true
        }
        if active { requestStop() }
    }

    private func joinGracePassed() {
        let child: ChildProcess? = state.withLock { state in
            guard state.isActive else { return nil }
            state.joinExpired = true
            state.killRequested = true
            return state.child
        }
        child?.signal(SIGKILL)
    }

    private func makeRequest(_ state: State) -> StartRequest {
        var request = StartRequest(typeName: typeName, state: state.resumeState)
        request.firstRun = state.resumeRun
        request.isLastLife = state.livesLeft <= 1
        request.sendsStateCheckpoints = config.lives > 1
        request.timedSections = ProcessSection.allCases.filter { config.timeouts[$0] != nil }
        request.handleFailure = state.handlingFailure.map(FailureReport.init)
        return request
    }

    private func spawn(_ request: StartRequest) async throws {
        let child: ChildProcess
        do {
            // A state over the size limit (a checkpoint's can grow) fails here, not in a child
            // that would wait for its start frame forever.
            try Frame.checkSize(request.state.count + request.typeName.utf8.count + 64, of: .start)
            child = try await ChildProcess.launch { [self] event in handle(event) }
        } catch {
            finish(with: .failure(error))
            throw error
        }
        mailbox.attach(child.channel)
        var request = request
        let (killed, pending, attachments): (Bool, [OutgoingFrame], AttachedDescriptors?) = state.withLock { state in
            state.phase = .running(child)
            request.stopRequested = state.stopRequested
            let attachments = state.resumeAttachments
            // Only a retry needs them again; holding pipe points here would hide their peer's end.
            if config.lives <= 1 { state.resumeAttachments = nil }
            defer { state.pendingMessages = [] }
            return (state.killRequested, state.pendingMessages, attachments)
        }
        if killed { return child.signal(SIGKILL) }
        let start: [UInt8]
        do {
            start = try Frame.encode(.start, attachmentCount: attachments?.count ?? 0) {
                try BinaryEncoder().encode(request, appendingTo: &$0)
            }
        } catch {
            // Not sent: the child is ended, and the process fails with why.
            state.withLock { state in if state.reported == nil { state.reported = .failure(error) } }
            return child.signal(SIGKILL)
        }
        do {
            try await child.channel.send(start, attaching: attachments)
            for message in pending { try await child.channel.send(message) }
        } catch {
            // The child died at once; its exit event reports why.
        }
    }

    // MARK: Talking

    func send(_ frame: OutgoingFrame, operation: String) async throws {
        let child: ChildProcess? = try state.withLock { state throws(ProcessingError) in
            switch state.phase {
            case .running(let child): return child
            case .launching:
                state.pendingMessages.append(frame)
                return nil
            case .idle:
                throw ProcessingError(.invalidState, "\(operation): \(processName) was not started (call start() first)")
            case .ended:
                throw ProcessingError(.invalidState, "\(operation): \(processName) has ended")
            }
        }
        try await child?.channel.send(frame)
    }

    /// Asks the process to stop gracefully. Returns at once: the stop goes ahead of messages
    /// not yet written, and reaches a child that reads nothing (stopped, busy) once it reads.
    func requestStop() {
        let child: ChildProcess? = state.withLock { state in
            guard state.isActive else { return nil }
            state.stopRequested = true
            return state.child
        }
        child?.channel.post(urgent: Frame.encode(.stop))
    }

    /// Kills the child now and gives up the process: no retry, no `error(_:)`.
    func kill() {
        let child: ChildProcess? = state.withLock { state in
            guard state.isActive else { return nil }
            state.killRequested = true
            return state.child
        }
        child?.signal(SIGKILL)
    }

    /// The handle went away while its child ran: a child never outlives what owns it.
    func abandon() { kill() }

    // MARK: Waiting

    /// Waits for the process to end, across retries; false if `timeout` passes first.
    func waitForEnd(timeout: Duration?) async throws -> Bool {
        let id: UInt64? = try state.withLock { state in
            switch state.phase {
            case .ended: return nil
            case .idle: throw ProcessingError(.invalidState, "\(processName) was not started: call start() before waiting for it")
            case .launching, .running:
                defer { state.nextWaiterID += 1 }
                return state.nextWaiterID
            }
        }
        guard let id else { return true }
        if timeout == .zero { return false }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let immediate: Result<Bool, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if case .ended = state.phase { return .success(true) }
                    // Armed under the lock, so that it cannot fire before the waiter is there.
                    let timer = timeout.map { limit in
                        OneShotTimer(after: limit) { [weak self] in
                            self?.state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: false)
                        }
                    }
                    state.waiters[id] = (continuation, timer)
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.timer?.cancel()
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    // MARK: Events from the reactor

    private func handle(_ event: ChildEvent) {
        switch event {
        case .frame(let frame):
            received(frame)
        case .channelEnded(let end):
            let error = ProcessingError(.malformedFrame, "\(processName)'s channel broke: \(end.description); the process was killed")
            let child: ChildProcess? = state.withLock { state in
                if state.reported == nil { state.reported = .failure(error) }
                return state.child
            }
            child?.signal(SIGKILL)
        case .exited(let status, let stderr):
            switch state.withLock({ afterExit(&$0, status: status, stderr: stderr) }) {
            case .finish(let outcome):
                finish(with: outcome)
            case .launch(let request):
                Task { try? await spawn(request) }
            }
        }
    }

    /// The heart of `lives`: a failure that a retry can fix starts a new child from the last
    /// checkpoint; on the last life, a crash or time-out (which left no child to run
    /// `error(_:)`) starts one that runs only `error(_:)`.
    private func afterExit(_ state: inout State, status: ExitStatus, stderr: StderrTail) -> AfterExit {
        state.timedSection = nil
        state.sectionTimer?.cancel()
        state.killTimer?.cancel()
        (state.sectionTimer, state.killTimer) = (nil, nil)
        let crashed = state.reported == nil
        let cause: ProcessCrashError.Cause = state.killRequested ? .killed : ProcessCrashError.Cause(status)
        let ending = state.reported ?? .failure(ProcessCrashError(
            cause: cause, stderr: stderr, processName: processName, currentRun: state.currentRun))
        state.reported = nil
        if state.joinExpired {
            guard crashed else { return .finish(ending) }
            return .finish(.failure(JoinTimeoutError(joinIn: config.joinIn ?? .zero, grace: config.joinGrace,
                                                     currentRun: state.currentRun)))
        }
        if state.killRequested { return .finish(ending) }
        if let original = state.handlingFailure {
            // The child that ran error(_:) decided, unless it died too: then the failure stands.
            return .finish(crashed ? .failure(original) : ending)
        }
        guard case .failure(let error) = ending, let failure = error as? any ProcessError,
              failure is any SectionError || failure is ProcessCrashError || failure is ProcessTimeoutError else {
            return .finish(ending)
        }
        if state.livesLeft > 1 {
            state.livesLeft -= 1
            state.currentRun = state.resumeRun
        } else if failure is ProcessCrashError || failure is ProcessTimeoutError {
            state.handlingFailure = failure
        } else {
            return .finish(ending)    // error(_:) already ran in the child
        }
        state.phase = .launching
        return .launch(makeRequest(state))
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
            state.withLock { state in
                state.currentRun = checkpoint.currentRun
                state.timers.merge(checkpoint.timings)
                if let resumeState = checkpoint.state {
                    state.resumeState = resumeState
                    state.resumeAttachments = frame.attachments
                    state.resumeRun = checkpoint.currentRun
                }
            }
        case .section:
            do {
                try sectionChanged(SectionMarker.decode(frame.payload))
            } catch {
                protocolViolation(error.description)
            }
        case .result:
            var offset = 0
            guard let run = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                return protocolViolation("a result frame without its run count")
            }
            state.withLock { state in
                state.currentRun = Int(run)
                state.reported = .output(run: Int(run), bytes: Array(frame.payload[offset...]))
            }
        case .failure:
            guard let report = decode(FailureReport.self, from: frame, "a failure report") else { return }
            state.withLock { state in
                state.currentRun = report.currentRun
                state.reported = .failure(report.error)
            }
        case .start, .stop, .work, .batch:
            protocolViolation("a \(frame.kind) frame, which only a parent sends")
        case .batchReply:
            protocolViolation("a batch reply, which only a pool worker sends")
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

    // MARK: Section time-outs

    private func sectionChanged(_ entered: (section: ProcessSection, run: Int)?) {
        let previous: OneShotTimer? = state.withLock { state in
            let previous = state.sectionTimer
            (state.timedSection, state.sectionTimer) = (nil, nil)
            guard let entered, let limit = config.timeouts[entered.section] else { return previous }
            state.nextToken += 1
            let token = state.nextToken
            state.timedSection = TimedSection(token: token, section: entered.section, run: entered.run, limit: limit)
            state.sectionTimer = OneShotTimer(after: limit) { [weak self] in self?.sectionOverran(token) }
            return previous
        }
        previous?.cancel()
    }

    /// The parent enforces time-outs (Swift has no safe way to interrupt a thread): SIGTERM,
    /// then SIGKILL after a grace period, through its exit descriptor.
    private func sectionOverran(_ token: UInt64) {
        let child: ChildProcess? = state.withLock { state in
            guard let timed = state.timedSection, timed.token == token, let child = state.child else { return nil }
            state.timedSection = nil
            state.sectionTimer = nil
            if state.reported == nil {
                state.reported = .failure(ProcessTimeoutError(section: timed.section, timeout: timed.limit, currentRun: timed.run))
            }
            state.killTimer = OneShotTimer(after: Self.terminationGrace) { child.signal(SIGKILL) }
            return child
        }
        child?.signal(SIGTERM)
    }

    private func protocolViolation(_ what: String) {
        handle(.channelEnded(.malformed(what)))
    }

    private func finish(with outcome: Outcome) {
        let (waiters, timers) = state.withLock { state in
            state.phase = .ended(outcome)
            state.pendingMessages = []
            state.resumeAttachments = nil
            defer { state.waiters.removeAll() }
            return (Array(state.waiters.values), state.takeTimers())
        }
        for timer in timers { timer.cancel() }
        mailbox.close(ProcessingError(.channelClosed, "\(processName) has ended and no message is left to listen for"))
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: true)
        }
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
