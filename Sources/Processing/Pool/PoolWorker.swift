import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One pool worker process as the parent sees it: the work values installed in it and the
/// one batch it runs at a time.
///
/// Its phases and their transitions are `PoolWorkerState`; this is their storage and the
/// effects. Every wait on it (for the ready reply, a batch's reply, its exit) ends when the
/// waiting task is cancelled.
final class PoolWorker: Sendable {
    private typealias Machine = PoolWorkerState<
        CheckedContinuation<[UInt8], any Error>, CheckedContinuation<Void, any Error>,
        CheckedContinuation<Void, Never>, OneShotTimer>

    /// The batch id of the worker's first reply, which says it is ready for batches.
    static let readyBatchID: UInt64 = 0

    /// Set by `launch` before anything is sent to the child; cleared at its exit, which breaks
    /// the cycle through the child's event handler.
    private let childBox = Mutex<ChildProcess?>(nil)
    private let state = Mutex(Machine())

    private var child: ChildProcess? { childBox.withLock { $0 } }
    /// Its pool's events (`Pool.events`).
    private let eventSource: EventHub.Source
    private let pidValue = Atomic<Int32>(0)
    /// When it was launched and when it said it was ready (for a map's trace).
    let launchedAt = ContinuousClock.now
    private let readyInstant = Mutex<ContinuousClock.Instant?>(nil)

    /// The child's process id (0 before the spawn).
    var pid: Int32 { pidValue.load(ordering: .relaxed) }
    var readyAt: ContinuousClock.Instant? { readyInstant.withLock { $0 } }

    /// Which entry of its pool's placement it runs on.
    let place: Int

    private init(eventSource: EventHub.Source, place: Int) {
        self.eventSource = eventSource
        self.place = place
    }

    private func emit(_ kind: @autoclosure () -> ProcessEvent.Kind) {
        let pid = pid
        EventHub.shared.emit(eventSource) { ProcessEvent(process: "pool worker", pid: pid == 0 ? nil : pid, kind: kind()) }
    }

    /// Spawns a worker and tells it to serve batches. `captured`: what it wrote to streams set
    /// to `.capture`, given once its output has ended (at its exit at the latest).
    static func launch(output: OutputSettings = OutputSettings(name: "pool worker"), on host: WorkerHost = .local, place: Int = 0,
                       events: EventHub.Source = EventHub.Source(process: nil, pool: nil),
                       captured: @escaping @Sendable (CapturedOutput) -> Void = { _ in }) async throws -> PoolWorker {
        let worker = PoolWorker(eventSource: events, place: place)
        let child = try await ChildProcess.launch(output: output, on: host) { [worker] event in
            switch event {
            case .exited(_, _, let output) where !output.captured.isEmpty, .outputEnded(let output) where !output.captured.isEmpty:
                captured(output.captured)
            default:
                break
            }
            worker.handle(event)
        }
        worker.pidValue.store(child.pid, ordering: .relaxed)
        worker.childBox.withLock { $0 = child }
        // Watched once recorded: an exit however soon clears the box (no cycle is left).
        child.startWatching()
        worker.emit(.spawned)
        var request = StartRequest(typeName: "", state: [])
        request.poolWorker = true
        request.minimumLogLevel = ProcessLog.minimumLevel
        try? await child.channel.send(Frame.encode(.start) { try BinaryEncoder().encode(request, appendingTo: &$0) })
        do {
            try await worker.waitUntilReady()
        } catch {
            worker.kill()
            throw error
        }
        return worker
    }

    var isDead: Bool { state.withLock { $0.isDead } }

    /// Whether a batch has claimed this worker and not yet had its reply.
    var isRunningBatch: Bool { state.withLock { $0.isRunningBatch } }

    /// Waits for the worker's ready reply (throws `ProcessCrashError` if it dies first, and
    /// `CancellationError` if the waiting task is cancelled).
    private func waitUntilReady() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                switch state.withLock({ $0.waitForReady(continuation, cancelled: Task.isCancelled) }) {
                case .ready: continuation.resume()
                case .failed(let error): continuation.resume(throwing: error)
                case .waiting: break
                }
            }
        } onCancel: {
            state.withLock { $0.cancelReadyWait() }?.resume(throwing: CancellationError())
        }
    }

    /// Runs one batch of encoded inputs with work `work` (installed first if this worker does
    /// not have it yet) and returns the encoded reply. Throws `ProcessCrashError` if the worker
    /// dies meanwhile, `PoolTimeoutError` (killing it) if the batch runs past `timeout`, and
    /// `ProcessingError` (`.invalidState`) if it is running a batch already. A call cancelled
    /// once its batch was sent kills the worker, which is busy with it; one cancelled before
    /// leaves it idle.
    func run(batch inputs: [UInt8], work: PoolWorkInstall, attachments: AttachedDescriptors? = nil,
             timeout: Duration? = nil) async throws -> [UInt8] {
        // Encoded before the worker is claimed: a batch over the size limit leaves it as it was.
        try Frame.checkSize(inputs.count + 32, of: .batch)
        let (batchID, install) = try state.withLock { state throws(any Error) in try state.claim(workID: work.id) }
        guard let child else {
            _ = state.withLock { $0.endBatch(batchID) }
            throw state.withLock { $0.deathError } ?? Machine.killedError()
        }
        if install {
            do {
                try await child.channel.send(Frame.encode(.work, attachmentCount: attachments?.count ?? 0) {
                    try BinaryEncoder().encode(work, appendingTo: &$0)
                }, attaching: attachments)
            } catch {
                state.withLock { $0.installFailed(batchID: batchID, workID: work.id) }
                throw error
            }
        }
        let frame = Frame.control(.batch) { bytes in  // its size was checked above
            BinaryFormat.appendVarint(batchID, to: &bytes)
            BinaryFormat.appendVarint(UInt64(work.id), to: &bytes)
            bytes.append(contentsOf: inputs)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let decision = state.withLock { state in
                    // Armed under the lock, so that it cannot fire before the reply waits.
                    let timer = timeout.map { timeout in
                        OneShotTimer(after: timeout) { [weak self] in self?.expire(batchID, timeout: timeout) }
                    }
                    return state.awaitReply(batchID: batchID, reply: continuation, timer: timer, cancelled: Task.isCancelled)
                }
                switch decision {
                case .send:
                    Task {
                        // A worker that is gone fails the batch through its exit.
                        try? await child.channel.send(frame)
                    }
                case .fail(let error, let timer):
                    timer?.cancel()
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            guard let ended = state.withLock({ $0.endBatch(batchID) }) else { return }
            ended.timer?.cancel()
            // Not yet waiting: the batch was not sent, and the wait fails when it comes.
            guard let reply = ended.reply else { return }
            kill()
            reply.resume(throwing: CancellationError())
        }
    }

    /// The batch's time is up: if it is still running, fail it and kill the worker.
    private func expire(_ batchID: UInt64, timeout: Duration) {
        guard let reply = state.withLock({ $0.endBatch(batchID) })?.reply else { return }
        emit(.timedOut(PoolTimeoutError(timeout: timeout)))
        kill()
        reply.resume(throwing: PoolTimeoutError(timeout: timeout))
    }

    /// Kills the worker (idle or not). It counts as dead from now on, so that it is not
    /// handed out again before its exit arrives.
    func kill() {
        let (wasDead, waiting) = state.withLock { state in (state.isDead, state.kill()) }
        if !wasDead { emit(.killed) }
        if let (waiter, error) = waiting { waiter.resume(throwing: error) }
        child?.signal(SIGKILL)
    }

    /// Waits until the worker has been reaped, or until the waiting task is cancelled.
    func waitForExit() async {
        let id = state.withLock { $0.makeExitWaitID() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if !state.withLock({ $0.waitForExit(continuation, id: id, cancelled: Task.isCancelled) }) {
                    continuation.resume()
                }
            }
        } onCancel: {
            state.withLock { $0.cancelExitWait(id) }?.resume()
        }
    }

    private func handle(_ event: ChildEvent) {
        switch event {
        case .frame(let frame) where frame.kind == .batchReply:
            var offset = 0
            guard let batchID = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                return brokeProtocol("a batch reply without its id")
            }
            if batchID == Self.readyBatchID {
                readyInstant.withLock { $0 = .now }
                emit(.ready)
                state.withLock { $0.readyReplied() }?.resume()
                return
            }
            guard let ended = state.withLock({ $0.endBatch(batchID) }) else { return }
            ended.timer?.cancel()
            ended.reply?.resume(returning: Array(frame.payload[offset...]))
        case .frame(let frame) where frame.kind == .log:
            guard let entry = try? BinaryDecoder().decode(LogEntry.self, from: frame.payload) else {
                return brokeProtocol("a log entry that did not decode")
            }
            LogDelivery.shared.deliver(entry)
        case .frame(let frame) where frame.kind == .message:
            // Pool work has no one to tell (a process value's tell() called in it, say): say so
            // rather than lose it in silence.
            OutputForwarder.standardError.forward(line: "Processing: pool work told a message, which has no listener in a pool; it was dropped.")
        case .frame(let frame):
            brokeProtocol("a \(frame.kind) frame, which pool workers do not send")
        case .channelEnded(let end):
            brokeProtocol(end.description)
        case .outputEnded:
            break  // a pool worker's output ends with it
        case .exited(let status, let stderr, _):
            let crash = ProcessCrashError(cause: .init(status), stderr: stderr, processName: "a pool worker", currentRun: 0)
            let exit = state.withLock { $0.exited(crash) }
            childBox.withLock { $0 = nil }
            if exit.error.cause != .killed { emit(.crashed(exit.error)) }
            emit(.exited(error: exit.error.cause == .killed ? nil : exit.error))
            exit.batch?.timer?.cancel()
            exit.batch?.reply?.resume(throwing: exit.error)
            exit.readyWaiter?.resume(throwing: exit.error)
            for waiter in exit.exitWaiters { waiter.resume() }
        }
    }

    private func brokeProtocol(_ what: String) {
        OutputForwarder.standardError.forward(line: "Processing: a pool worker broke the protocol (\(what)); it was killed.")
        child?.signal(SIGKILL)
    }
}
