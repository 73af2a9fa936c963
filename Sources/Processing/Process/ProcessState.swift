/// How a process ended, as its handle reports it.
enum ProcessOutcome: Sendable {
    case output(run: Int, bytes: [UInt8])
    case failure(any Error)
}

/// A process's life across its children as a pure state machine: the first attempt, retries
/// while it has lives, the child that runs `error(_:)` after a crash on the last life, its
/// time-outs, stop and kill requests, and the tasks waiting for its end.
///
/// `ProcessCore` holds it under its lock, feeds it what happens (a call, a frame, a timer, the
/// child's exit) and performs what each event returns (spawning, sending, signalling, resuming
/// and cancelling) outside the lock. Timers are armed through the `arm` function an event is
/// given, with the purpose the storage routes back when it fires; the machine only keeps and
/// returns them. Generic over the child, the waiter and the timer, so that its tests need no
/// process.
///
/// Phases: **idle** (not started) → **launching** (a child is being spawned: the first, a
/// retry, or the one for `error(_:)`; messages told meanwhile are kept) → **running** (a child
/// runs) → back to launching after a failure a life can retry → **ended** with an outcome.
struct ProcessState<Child, Waiter, Timer> {
    /// What a timer is for: the storage arms it with this and routes it back when it fires.
    enum TimerPurpose: Equatable {
        /// `joinIn` passed: ask the process to stop.
        case joinIn
        /// The grace after `joinIn` passed: kill it.
        case joinGrace
        /// The section with this token overran its time-out: SIGTERM, then the kill grace.
        case section(token: UInt64)
        /// The grace after a section's SIGTERM: SIGKILL.
        case killGrace
        /// The wait with this id for the end timed out: it returns false.
        case wait(id: UInt64)
    }

    typealias Arm = (TimerPurpose, Duration) -> Timer

    /// What the machine needs of the process's configuration.
    struct Settings {
        var processName: String
        var typeName: String
        var lives: Int
        var joinIn: Duration?
        var joinGrace: Duration
        var timeouts: ProcessConfig.Timeouts
        /// Between a section's SIGTERM and its SIGKILL.
        var terminationGrace: Duration
        /// Whether a crash on the last life starts a child that runs only `error(_:)`; not for a
        /// relay stage, whose `error(_:)` is the default and whose connections went with the
        /// child that crashed.
        var runsErrorHandlerAfterCrash = true
    }

    /// The process ended: resume every waiter (with true: it ended), cancel every timer.
    struct Finished {
        let outcome: ProcessOutcome
        let waiters: [Waiter]
        let timers: [Timer]
    }

    /// What the child's exit leads to. Cancel `timers` (its section's) in both cases.
    enum AfterExit {
        case finish(Finished)
        /// Spawn another child with this request (a retry, or the one for `error(_:)`).
        case launch(StartRequest, cancel: [Timer])
        /// It ended already, on the child's result (`endOnResult`): nothing more to do.
        case ended
    }

    /// What to do with a child that was just spawned.
    struct Launched {
        /// `kill()` came while it was spawned: kill it, send nothing.
        let kill: Bool
        let stopRequested: Bool
        let attachments: AttachedDescriptors?
        /// Told while no child ran: send after the start request, in order.
        let pending: [OutgoingFrame]
    }

    /// What a wait for the end finds as it registers.
    enum WaitCheck: Equatable {
        /// Ended already: it returns true.
        case ended
        /// Its task was cancelled before it could wait.
        case cancelled
    }

    private enum Phase {
        case idle
        case launching
        /// Spawned, and being sent its start request and the messages kept meanwhile: what is
        /// told now is kept too, so that nothing overtakes them.
        case starting(Child)
        case running(Child)
        case ended(ProcessOutcome)
    }

    /// A section the child said it entered, which has a time-out.
    private struct TimedSection {
        var token: UInt64
        var section: ProcessSection
        var run: Int
        var limit: Duration
    }

    let settings: Settings
    private var phase = Phase.idle
    private(set) var currentRun = 0
    /// What the current child reported (or what broke) before it exited; final at its exit.
    private var reported: ProcessOutcome?
    private var killRequested = false
    private var stopRequested = false
    private var livesLeft: Int
    /// Where a retry starts: the state and run of the last checkpoint.
    private var resumeState: [UInt8]
    /// The descriptors of the pipe points in `resumeState`, sent with each start.
    private var resumeAttachments: AttachedDescriptors?
    private var resumeRun = 0
    /// The failure being handed to `error(_:)` in a child of its own.
    private var handlingFailure: (any ProcessError)?
    private var timedSection: TimedSection?
    private var nextToken: UInt64 = 0
    private(set) var timers = ProcessTimers()
    /// Messages told while no child was running (between a failure and its retry).
    private var pendingMessages: [OutgoingFrame] = []
    private var waits = WaiterList<(waiter: Waiter, timer: Timer?)>()
    /// The time-outs running for the process; each is cancelled when its wait ends, and all when
    /// the process ends (so none keeps it alive).
    private var joinTimer: Timer?
    private var sectionTimer: Timer?
    private var killTimer: Timer?
    /// `joinIn` and its grace passed with the process still running: it was killed, and ends
    /// with `JoinTimeoutError` (no retry).
    private var joinExpired = false
    /// How the child that exited last ended: what it reported, or the crash (for events).
    private(set) var lastEnding: ProcessOutcome?
    /// The running child's stdout and stderr have ended (it released them with its result).
    private var childOutputEnded = false
    /// The process ended on its child's result, before the child's exit (`endOnResult`).
    private(set) var endedOnResult = false

    /// What the running child reported so far (a time-out's failure, once it overran).
    var pendingReport: ProcessOutcome? { reported }

    /// The attempt running or about to run: 1 for the first, up to `settings.lives`.
    var life: Int { max(settings.lives, 1) - livesLeft + 1 }

    init(settings: Settings, initialState: [UInt8], initialAttachments: AttachedDescriptors?) {
        self.settings = settings
        livesLeft = max(settings.lives, 1)
        resumeState = initialState
        resumeAttachments = initialAttachments
    }

    var child: Child? {
        switch phase {
        case .starting(let child), .running(let child): child
        case .idle, .launching, .ended: nil
        }
    }

    /// Launching, starting or running.
    var isActive: Bool {
        switch phase {
        case .launching, .starting, .running: true
        case .idle, .ended: false
        }
    }

    var outcome: ProcessOutcome? {
        if case .ended(let outcome) = phase { return outcome }
        return nil
    }

    /// How many tasks wait for the end.
    var waitingCount: Int { waits.count }

    // MARK: Starting

    /// `start()`: the first child's request; `joinIn`'s timer is armed.
    mutating func launch(arm: Arm) throws(ProcessingError) -> StartRequest {
        guard case .idle = phase else {
            throw ProcessingError(.invalidState, "\(settings.processName) was already started; a handle starts one process once")
        }
        phase = .launching
        if let joinIn = settings.joinIn { joinTimer = arm(.joinIn, joinIn) }
        return makeRequest()
    }

    /// A child was spawned for the request: it is sent its start request and the messages
    /// kept (`started()` says when that is done). Its exit cannot come before this: the
    /// storage starts watching it after.
    mutating func launched(_ child: Child) -> Launched {
        precondition(isLaunching, "a child was spawned for a process that is not launching one")
        phase = .starting(child)
        childOutputEnded = false
        let attachments = resumeAttachments
        // Only a retry needs them again; holding pipe points here would hide their peer's end.
        if settings.lives <= 1 { resumeAttachments = nil }
        defer { pendingMessages = [] }
        return Launched(kill: killRequested, stopRequested: stopRequested, attachments: attachments, pending: pendingMessages)
    }

    private var isLaunching: Bool {
        if case .launching = phase { return true }
        return false
    }

    /// The start request and the messages so far are sent: the messages told meanwhile, to
    /// send next (then ask again), or none, and the child runs.
    mutating func started() -> [OutgoingFrame] {
        guard case .starting(let child) = phase else { return [] }
        if !pendingMessages.isEmpty {
            defer { pendingMessages = [] }
            return pendingMessages
        }
        phase = .running(child)
        return []
    }

    /// The start request could not be sent (it did not encode): the process fails with why,
    /// once the child, which the storage kills, has exited.
    mutating func startNotSent(_ error: any Error) {
        if reported == nil { reported = .failure(error) }
    }

    private func makeRequest() -> StartRequest {
        var request = StartRequest(typeName: settings.typeName, state: resumeState)
        request.firstRun = resumeRun
        request.isLastLife = livesLeft <= 1
        request.sendsStateCheckpoints = settings.lives > 1
        request.timedSections = ProcessSection.allCases.filter { settings.timeouts[$0] != nil }
        request.handleFailure = handlingFailure.map(FailureReport.init)
        return request
    }

    // MARK: Calls

    /// A message to send: to the running child (returned), or kept for the next one while one
    /// is launching (nil returned).
    mutating func send(_ frame: OutgoingFrame, operation: String) throws(ProcessingError) -> Child? {
        switch phase {
        case .running(let child): return child
        case .launching, .starting:
            pendingMessages.append(frame)
            return nil
        case .idle:
            throw ProcessingError(.invalidState, "\(operation): \(settings.processName) was not started (call start() first)")
        case .ended:
            throw ProcessingError(.invalidState, "\(operation): \(settings.processName) has ended")
        }
    }

    /// `stop()`: sticky for the process's children to come; the running one to tell now.
    mutating func requestStop() -> Child? {
        guard isActive else { return nil }
        stopRequested = true
        return child
    }

    /// `kill()`: no retry, no `error(_:)`; the running child to kill now.
    mutating func kill() -> Child? {
        guard isActive else { return nil }
        killRequested = true
        return child
    }

    // MARK: Waiting for the end

    /// A new wait for the end: its id, or nil when the process has ended already.
    mutating func beginWait() throws(ProcessingError) -> UInt64? {
        switch phase {
        case .ended: return nil
        case .idle: throw ProcessingError(.invalidState, "\(settings.processName) was not started: call start() before waiting for it")
        case .launching, .starting, .running: return waits.makeID()
        }
    }

    /// The wait `id` waits, with a time-out armed if it has one (under the storage's lock, so
    /// that it cannot fire before the wait is there); or what it finds at once.
    mutating func registerWait(_ waiter: Waiter, id: UInt64, timeout: Duration?, cancelled: Bool, arm: Arm) -> WaitCheck? {
        if cancelled { return .cancelled }
        if case .ended = phase { return .ended }
        let timer = timeout.map { arm(.wait(id: id), $0) }
        _ = waits.register((waiter, timer), id: id, cancelled: false)
        return nil
    }

    /// The wait `id` stops (cancelled, or timed out): its waiter and timer, if it still waits.
    mutating func withdrawWait(_ id: UInt64) -> (waiter: Waiter, timer: Timer?)? {
        waits.withdraw(id)
    }

    // MARK: Time-outs

    /// `joinIn` passed: the grace is armed and a stop requested (the running child to tell).
    /// Nothing if the process ended meanwhile.
    mutating func joinInPassed(arm: Arm) -> Child? {
        guard isActive else { return nil }
        // The grace is the child's time to stop: while it is still being spawned (a slow
        // spawn on a loaded machine), it begins once the child exists.
        if isLaunching {
            joinGraceAwaitsChild = true
        } else {
            joinTimer = arm(.joinGrace, settings.joinGrace)
        }
        return requestStop()
    }

    /// `joinIn` passed while the child was spawned: its grace, armed once the child exists
    /// (its start request asks it to stop).
    private var joinGraceAwaitsChild = false

    /// The child spawned after `joinIn` passed exists: its grace begins.
    mutating func armJoinGraceIfAwaited(arm: Arm) {
        guard joinGraceAwaitsChild, isActive else { return }
        joinGraceAwaitsChild = false
        joinTimer = arm(.joinGrace, settings.joinGrace)
    }

    /// The grace after `joinIn` passed too: the process ends with `JoinTimeoutError`, once the
    /// child the storage kills has exited.
    /// What a process ends with once `joinIn` and its grace have passed.
    var joinTimeoutError: JoinTimeoutError {
        JoinTimeoutError(joinIn: settings.joinIn ?? .zero, grace: settings.joinGrace, currentRun: currentRun)
    }

    mutating func joinGracePassed() -> Child? {
        guard isActive else { return nil }
        joinExpired = true
        killRequested = true
        return child
    }

    /// The child entered a section (nil: left every timed one). Arms that section's time-out;
    /// returns the previous one's timer to cancel.
    mutating func sectionChanged(_ entered: (section: ProcessSection, run: Int)?, arm: Arm) -> Timer? {
        let previous = sectionTimer
        (timedSection, sectionTimer) = (nil, nil)
        guard let entered, let limit = settings.timeouts[entered.section] else { return previous }
        nextToken += 1
        timedSection = TimedSection(token: nextToken, section: entered.section, run: entered.run, limit: limit)
        sectionTimer = arm(.section(token: nextToken), limit)
        return previous
    }

    /// The section with `token` overran: the process fails with `ProcessTimeoutError` (unless
    /// the child reported first), the kill grace is armed, and the running child is returned to
    /// SIGTERM. The parent enforces time-outs: Swift has no safe way to interrupt a thread.
    mutating func sectionOverran(_ token: UInt64, arm: Arm) -> Child? {
        guard let timed = timedSection, timed.token == token, let child else { return nil }
        timedSection = nil
        sectionTimer = nil
        if reported == nil {
            reported = .failure(ProcessTimeoutError(section: timed.section, timeout: timed.limit, currentRun: timed.run))
        }
        killTimer = arm(.killGrace, settings.terminationGrace)
        return child
    }

    /// The grace after a SIGTERM passed: the child to SIGKILL.
    mutating func killGracePassed() -> Child? {
        guard killTimer != nil else { return nil }
        killTimer = nil
        return child
    }

    // MARK: What the child sends

    /// The child's channel broke or it broke the protocol: it fails with `error` (unless it
    /// reported first), and the running child is returned to kill.
    mutating func channelEnded(_ error: any Error) -> Child? {
        if reported == nil { reported = .failure(error) }
        return child
    }

    mutating func checkpoint(_ checkpoint: Checkpoint, attachments: AttachedDescriptors?) {
        currentRun = checkpoint.currentRun
        timers.merge(checkpoint.timings)
        if let state = checkpoint.state {
            resumeState = state
            resumeAttachments = attachments
            resumeRun = checkpoint.currentRun
        }
    }

    /// The child's result. True when the process can end on it now (`endOnResult`): its
    /// output has ended too.
    mutating func result(run: Int, bytes: [UInt8]) -> Bool {
        currentRun = run
        reported = .output(run: run, bytes: bytes)
        return childOutputEnded
    }

    /// The running child's stdout and stderr ended before its exit. True when the process can
    /// end now (`endOnResult`): the child's result is in.
    mutating func outputEnded() -> Bool {
        guard child != nil else { return false }
        childOutputEnded = true
        if case .output? = reported { return true }
        return false
    }

    /// The child sent its result and its output has ended: the process ends with the result
    /// now, as its exit would end it (a result decides whatever the exit status says), without
    /// waiting for the kernel to tear the child down. Its exit, when it comes, changes nothing.
    /// Nil unless that is still so.
    mutating func endOnResult() -> (finished: Finished, child: Child)? {
        guard childOutputEnded, case .output? = reported, let child else { return nil }
        let cancel = [sectionTimer, killTimer].compactMap { $0 }
        (timedSection, sectionTimer, killTimer) = (nil, nil, nil)
        lastEnding = reported
        let outcome = reported!
        reported = nil
        endedOnResult = true
        return (finish(alsoCancelling: cancel, outcome), child)
    }

    mutating func failureReported(_ report: FailureReport) {
        currentRun = report.currentRun
        reported = .failure(report.error)
    }

    // MARK: The end

    /// The child was reaped, with `cause` (as its status says). The heart of `lives`: a failure
    /// that a retry can fix starts a new child from the last checkpoint; on the last life, a
    /// crash or time-out (which left no child to run `error(_:)`) starts one that runs only
    /// `error(_:)`. Anything else ends the process.
    mutating func exited(cause statusCause: ProcessCrashError.Cause, stderr: StderrTail) -> AfterExit {
        if case .ended = phase { return .ended }
        let cancel = [sectionTimer, killTimer].compactMap { $0 }
        (timedSection, sectionTimer, killTimer) = (nil, nil, nil)
        let crashed = reported == nil
        let cause: ProcessCrashError.Cause = killRequested ? .killed : statusCause
        let ending = reported ?? .failure(ProcessCrashError(
            cause: cause, stderr: stderr, processName: settings.processName, currentRun: currentRun))
        reported = nil
        lastEnding = ending
        if joinExpired {
            guard crashed else { return .finish(finish(alsoCancelling: cancel, ending)) }
            return .finish(finish(alsoCancelling: cancel, .failure(joinTimeoutError)))
        }
        if killRequested { return .finish(finish(alsoCancelling: cancel, ending)) }
        if let original = handlingFailure {
            // The child that ran error(_:) decided, unless it died too: then the failure stands.
            return .finish(finish(alsoCancelling: cancel, crashed ? .failure(original) : ending))
        }
        guard case .failure(let error) = ending, let failure = error as? any ProcessError,
              failure is any SectionError || failure is ProcessCrashError || failure is ProcessTimeoutError else {
            return .finish(finish(alsoCancelling: cancel, ending))
        }
        if livesLeft > 1 {
            livesLeft -= 1
            currentRun = resumeRun
        } else if failure is ProcessCrashError || failure is ProcessTimeoutError, settings.runsErrorHandlerAfterCrash {
            handlingFailure = failure
        } else {
            return .finish(finish(alsoCancelling: cancel, ending))    // error(_:) already ran in the child
        }
        phase = .launching
        return .launch(makeRequest(), cancel: cancel)
    }

    /// The process ends with `outcome` (also when a child could not be spawned). What its waits
    /// and timers were, taken out.
    mutating func finish(alsoCancelling cancel: [Timer] = [], _ outcome: ProcessOutcome) -> Finished {
        phase = .ended(outcome)
        pendingMessages = []
        resumeAttachments = nil
        timedSection = nil
        let waiting = waits.takeAll()
        let timers = cancel + [joinTimer, sectionTimer, killTimer].compactMap { $0 } + waiting.compactMap(\.timer)
        (joinTimer, sectionTimer, killTimer) = (nil, nil, nil)
        return Finished(outcome: outcome, waiters: waiting.map(\.waiter), timers: timers)
    }
}

extension ProcessState.Finished: Sendable where Waiter: Sendable, Timer: Sendable {}
