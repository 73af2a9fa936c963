import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The parent's record of one child process, apart from the process type (`ProcessHandle`
/// is the typed face of it).
///
/// `State` is the state machine; `ProcessCore` is its storage and the effects (sending,
/// signalling, resuming continuations outside the lock).
final class ProcessCore: Sendable {
    enum Outcome: Sendable {
        case output(run: Int, bytes: [UInt8])
        case failure(any Error)
    }

    private enum Phase {
        case idle
        case launching
        case running(ChildProcess)
        case ended(Outcome)
    }

    private struct State {
        var phase = Phase.idle
        var currentRun = 0
        /// What the child reported (or what broke) before it exited; final at the exit.
        var reported: Outcome?
        var killRequested = false
        var waiters: [UInt64: CheckedContinuation<Bool, any Error>] = [:]
        var nextWaiterID: UInt64 = 1

        var child: ChildProcess? {
            if case .running(let child) = phase { return child }
            return nil
        }
    }

    let processName: String
    let mailbox = Mailbox()
    private let state = Mutex(State())

    init(processName: String) {
        self.processName = processName
    }

    var isAlive: Bool {
        state.withLock { state in
            switch state.phase {
            case .launching, .running: true
            case .idle, .ended: false
            }
        }
    }

    var currentRun: Int { state.withLock { $0.currentRun } }

    var outcome: Outcome? {
        state.withLock { state in
            if case .ended(let outcome) = state.phase { return outcome }
            return nil
        }
    }

    // MARK: Starting

    /// Spawns the child and sends it the process to run.
    func launch(_ request: StartRequest) async throws {
        try state.withLock { state in
            guard case .idle = state.phase else {
                throw ProcessingError(.invalidState, "\(processName) was already started; a handle starts one process once")
            }
            state.phase = .launching
        }
        let child: ChildProcess
        do {
            child = try await ChildProcess.launch { [self] event in handle(event) }
        } catch {
            finish(with: .failure(error))
            throw error
        }
        state.withLock { $0.phase = .running(child) }
        do {
            try await child.channel.send(Frame.encode(.start) { try BinaryEncoder().encode(request, appendingTo: &$0) })
        } catch {
            // The child died at once; its exit event reports why.
        }
    }

    // MARK: Talking

    func send(_ frame: [UInt8], operation: String) async throws {
        guard let child = state.withLock({ $0.child }) else {
            throw ProcessingError(.invalidState, "\(operation): \(processName) is not running (start it first, or it has ended)")
        }
        try await child.channel.send(frame)
    }

    func requestStop() async {
        guard let child = state.withLock({ $0.child }) else { return }
        try? await child.channel.send(Frame.encode(.stop))
    }

    func kill() {
        let child: ChildProcess? = state.withLock { state in
            guard let child = state.child else { return nil }
            state.killRequested = true
            return child
        }
        child?.signal(SIGKILL)
    }

    /// The handle went away while its child ran: a child never outlives what owns it.
    func abandon() { kill() }

    // MARK: Waiting

    /// Waits for the child to end; false if `timeout` passes first.
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
                    state.waiters[id] = continuation
                    return nil
                }
                if let immediate {
                    continuation.resume(with: immediate)
                } else if let timeout {
                    Reactor.after(timeout) { [self] in
                        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
                    }
                }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
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
        case .exited(let status, let stderrTail):
            let ending: Outcome = state.withLock { state in
                if let reported = state.reported { return reported }
                let cause: ProcessCrashError.Cause = switch status {
                case _ where state.killRequested: .killed
                case .signaled(let signal): .signal(signal)
                case .exited(let code): .exit(code)
                }
                return .failure(ProcessCrashError(cause: cause, stderrTail: stderrTail, processName: processName,
                                                  currentRun: state.currentRun))
            }
            finish(with: ending)
        }
    }

    private func received(_ frame: Frame) {
        switch frame.kind {
        case .message:
            do {
                mailbox.deliver(try Message(payload: frame.payload))
            } catch {
                protocolViolation(error.description)
            }
        case .progress:
            var offset = 0
            if let run = BinaryFormat.readVarint(frame.payload, at: &offset) {
                state.withLock { $0.currentRun = Int(run) }
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
            let report: FailureReport
            do {
                report = try BinaryDecoder().decode(FailureReport.self, from: frame.payload)
            } catch {
                return protocolViolation("a failure report that did not decode: \(error)")
            }
            state.withLock { state in
                state.currentRun = report.currentRun
                state.reported = .failure(report.error)
            }
        case .start, .stop:
            protocolViolation("a \(frame.kind) frame, which only a parent sends")
        }
    }

    private func protocolViolation(_ what: String) {
        handle(.channelEnded(.malformed(what)))
    }

    private func finish(with outcome: Outcome) {
        let waiters = state.withLock { state in
            state.phase = .ended(outcome)
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        mailbox.close(ProcessingError(.channelClosed, "\(processName) has ended and no message is left to listen for"))
        for waiter in waiters { waiter.resume(returning: true) }
    }
}
