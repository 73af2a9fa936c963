/// A pool worker's phases as a pure state machine: what it runs, who waits on it, and what each
/// event does. `PoolWorker` holds it under its lock and performs what the events return
/// (resuming continuations, cancelling timers, signalling the child) outside that lock.
///
/// - **starting** until the child's ready reply; one task may wait for that.
/// - **idle**, then **running** one batch from the moment `claim` takes the worker (its work is
///   installed and the batch sent after that) to its reply, its time-out, or its cancellation.
/// - **killed**: signalled, not yet reaped. It counts as dead (never handed out again); a batch
///   it was running fails at the exit, unless its reply comes first.
/// - **exited**: reaped. Everything still waiting fails or ends then, with why it is gone.
///
/// Generic over its waiters and timer, so that its tests need no process.
struct PoolWorkerState<Reply, ReadyWaiter, ExitWaiter, Timer> {
    struct Batch {
        let id: UInt64
        /// Set once the batch is sent; nil while its work is being installed.
        var reply: Reply?
        var timer: Timer?
    }

    private enum Phase {
        case starting(ReadyWaiter?)
        case idle
        case running(Batch)
        case killed(ProcessCrashError, Batch?)
        case exited(ProcessCrashError)
    }

    /// What a wait for the ready reply finds at once.
    enum ReadyCheck {
        case ready
        case failed(any Error)
        /// Registered: the ready reply, the exit or the cancellation resumes it.
        case waiting
    }

    /// What `awaitReply` decided for a batch that was sent.
    enum AwaitDecision {
        /// Waiting: send the batch.
        case send
        /// Resume the reply with this error now and cancel the timer. The batch was not sent, so
        /// a worker that was not dead already is idle again.
        case fail(any Error, cancel: Timer?)
    }

    /// The batch a reply, a time-out or a cancellation ended: resume `reply` (if it was
    /// registered), cancel `timer`.
    struct EndedBatch {
        var reply: Reply?
        var timer: Timer?
    }

    /// What the exit ends.
    struct Exit {
        let error: ProcessCrashError
        var batch: EndedBatch?
        var readyWaiter: ReadyWaiter?
        var exitWaiters: [ExitWaiter]
    }

    private var phase = Phase.starting(nil)
    private var installed: Set<Int> = []
    private var lastBatch: UInt64 = 0
    private var exitWaits = WaiterList<ExitWaiter>()

    /// Killed or exited: not to be handed out again.
    var isDead: Bool {
        switch phase {
        case .killed, .exited: true
        case .starting, .idle, .running: false
        }
    }

    /// Whether a batch has claimed the worker and has not ended.
    var isRunningBatch: Bool {
        switch phase {
        case .running, .killed(_, .some): true
        case .starting, .idle, .killed(_, nil), .exited: false
        }
    }

    var hasExited: Bool {
        if case .exited = phase { return true }
        return false
    }

    /// Why the worker is gone, once it is killed or exited.
    var deathError: ProcessCrashError? {
        switch phase {
        case .killed(let error, _), .exited(let error): error
        case .starting, .idle, .running: nil
        }
    }

    static func killedError() -> ProcessCrashError {
        ProcessCrashError(cause: .killed, stderrTail: "", processName: "a pool worker", currentRun: 0)
    }

    // MARK: Ready

    /// A wait for the ready reply; `cancelled`: its task was cancelled before it could wait.
    mutating func waitForReady(_ waiter: ReadyWaiter, cancelled: Bool) -> ReadyCheck {
        switch phase {
        case .idle, .running: return .ready
        case .killed(let error, _), .exited(let error): return .failed(error)
        case .starting(let existing):
            if cancelled { return .failed(CancellationError()) }
            precondition(existing == nil, "one task waits for a pool worker's ready reply")
            phase = .starting(waiter)
            return .waiting
        }
    }

    /// The ready wait's task was cancelled: its waiter, if it still waits.
    mutating func cancelReadyWait() -> ReadyWaiter? {
        guard case .starting(let waiter?) = phase else { return nil }
        phase = .starting(nil)
        return waiter
    }

    /// The child's ready reply: the worker is idle, and its waiter (if any) resumes.
    mutating func readyReplied() -> ReadyWaiter? {
        guard case .starting(let waiter) = phase else { return nil }
        phase = .idle
        return waiter
    }

    // MARK: Batches

    /// Claims the idle worker for a batch of work `workID`: the batch's id, and whether that
    /// work must be installed first. Throws why it cannot run one.
    mutating func claim(workID: Int) throws(any Error) -> (batchID: UInt64, install: Bool) {
        switch phase {
        case .idle:
            lastBatch += 1
            phase = .running(Batch(id: lastBatch))
            return (lastBatch, installed.insert(workID).inserted)
        case .running(let batch), .killed(_, let batch?):
            throw ProcessingError(.invalidState, "a pool worker runs one batch at a time, and this one is running batch \(batch.id)")
        case .killed(let error, nil), .exited(let error):
            throw error
        case .starting:
            throw ProcessingError(.invalidState, "a pool worker takes batches once it is ready")
        }
    }

    /// Installing work `workID` for batch `batchID` failed: the work is not there, and the
    /// batch has ended (nothing waited on it yet).
    mutating func installFailed(batchID: UInt64, workID: Int) {
        installed.remove(workID)
        _ = endBatch(batchID)
    }

    /// Batch `batchID` was sent (or is about to be): its reply waits, with `timer` armed for it.
    /// `cancelled`: the task was cancelled before it could wait.
    mutating func awaitReply(batchID: UInt64, reply: Reply, timer: Timer?, cancelled: Bool) -> AwaitDecision {
        switch phase {
        case .running(var batch) where batch.id == batchID:
            if cancelled {
                phase = .idle
                return .fail(CancellationError(), cancel: timer)
            }
            batch.reply = reply
            batch.timer = timer
            phase = .running(batch)
            return .send
        case .killed(let error, let batch) where batch?.id == batchID:
            phase = .killed(error, nil)
            return .fail(error, cancel: timer)
        case .killed(let error, _), .exited(let error):
            return .fail(error, cancel: timer)
        case .starting, .idle, .running:
            // The batch ended before it could wait: only its cancellation does that.
            return .fail(CancellationError(), cancel: timer)
        }
    }

    /// Batch `batchID` ends (its reply came, its time passed, its task was cancelled): what
    /// waited for it, or nil if it had ended already.
    mutating func endBatch(_ batchID: UInt64) -> EndedBatch? {
        switch phase {
        case .running(let batch) where batch.id == batchID:
            phase = .idle
            return EndedBatch(reply: batch.reply, timer: batch.timer)
        case .killed(let error, let batch?) where batch.id == batchID:
            phase = .killed(error, nil)
            return EndedBatch(reply: batch.reply, timer: batch.timer)
        default:
            return nil
        }
    }

    // MARK: The end

    /// The worker is being killed: dead from now on. A ready waiter fails at once; a running
    /// batch waits for the exit (or its reply). Returns the ready waiter to fail, with why.
    mutating func kill() -> (readyWaiter: ReadyWaiter, error: ProcessCrashError)? {
        let error = Self.killedError()
        switch phase {
        case .starting(let waiter):
            phase = .killed(error, nil)
            return waiter.map { ($0, error) }
        case .idle:
            phase = .killed(error, nil)
        case .running(let batch):
            phase = .killed(error, batch)
        case .killed, .exited:
            break
        }
        return nil
    }

    /// The child was reaped. `crash` says how it ended; a kill before it is the reason kept.
    mutating func exited(_ crash: ProcessCrashError) -> Exit {
        var exit = Exit(error: deathError ?? crash, exitWaiters: exitWaits.takeAll())
        switch phase {
        case .starting(let waiter): exit.readyWaiter = waiter
        case .running(let batch), .killed(_, let batch?): exit.batch = EndedBatch(reply: batch.reply, timer: batch.timer)
        case .idle, .killed(_, nil), .exited: break
        }
        phase = .exited(exit.error)
        return exit
    }

    /// A new exit wait's id.
    mutating func makeExitWaitID() -> UInt64 { exitWaits.makeID() }

    /// A wait for the exit: false when it need not wait (reaped, or cancelled already).
    mutating func waitForExit(_ waiter: ExitWaiter, id: UInt64, cancelled: Bool) -> Bool {
        if hasExited { return false }
        return exitWaits.register(waiter, id: id, cancelled: cancelled)
    }

    /// The exit wait `id` was cancelled: its waiter, if it still waits.
    mutating func cancelExitWait(_ id: UInt64) -> ExitWaiter? {
        exitWaits.withdraw(id)
    }
}
