import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One pool worker process as the parent sees it: the work values installed in it and the
/// one batch it runs at a time.
final class PoolWorker: Sendable {
    private struct State {
        var installed: Set<Int> = []
        var pending: CheckedContinuation<[UInt8], any Error>?
        var pendingBatch: UInt64 = 0
        var nextBatch: UInt64 = 0
        /// Set once the child has exited (or its channel broke): why it is gone.
        var ended: ProcessCrashError?
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
        var exited = false
        var isReady = false
        var readyWaiter: CheckedContinuation<Void, any Error>?
    }

    /// The batch id of the worker's first reply, which says it is ready for batches.
    static let readyBatchID: UInt64 = 0

    /// Set by `launch` before anything is sent to the child; cleared at its exit, which breaks
    /// the cycle through the child's event handler.
    private let childBox = Mutex<ChildProcess?>(nil)
    private let state = Mutex(State())

    private var child: ChildProcess? { childBox.withLock { $0 } }

    private init() {}

    /// Spawns a worker and tells it to serve batches.
    static func launch() async throws -> PoolWorker {
        let worker = PoolWorker()
        let child = try await ChildProcess.launch { [worker] event in worker.handle(event) }
        worker.childBox.withLock { $0 = child }
        var request = StartRequest(typeName: "", state: [])
        request.poolWorker = true
        try? await child.channel.send(Frame.encode(.start) { try BinaryEncoder().encode(request, appendingTo: &$0) })
        do {
            try await worker.waitUntilReady()
        } catch {
            worker.kill()
            throw error
        }
        return worker
    }

    var isDead: Bool { state.withLock { $0.ended != nil } }

    /// Waits for the worker's ready reply (throws `ProcessCrashError` if it dies first, and
    /// `CancellationError` if the waiting task is cancelled).
    private func waitUntilReady() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = state.withLock { state in
                    if state.isReady { return .success(()) }
                    if let ended = state.ended { return .failure(ended) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.readyWaiter = continuation
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.readyWaiter = nil }
                return state.readyWaiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Runs one batch of encoded inputs with work `work` (installed first if this worker does
    /// not have it yet) and returns the encoded reply. Throws `ProcessCrashError` if the worker
    /// dies meanwhile, and `PoolTimeoutError` (killing it) if the batch runs past `timeout`; a
    /// cancelled call kills the worker, which is busy with the batch.
    func run(batch inputs: [UInt8], work: PoolWorkInstall, attachments: AttachedDescriptors? = nil,
             timeout: Duration? = nil) async throws -> [UInt8] {
        let (install, batchID) = try state.withLock { state throws(ProcessCrashError) in
            if let ended = state.ended { throw ended }
            state.nextBatch += 1
            return (state.installed.insert(work.id).inserted, state.nextBatch)
        }
        guard let child else { throw state.withLock { $0.ended } ?? ProcessCrashError(cause: .killed, stderrTail: "", processName: "a pool worker", currentRun: 0) }
        if install {
            try await child.channel.send(Frame.encode(.work, attachmentCount: attachments?.count ?? 0) {
                try BinaryEncoder().encode(work, appendingTo: &$0)
            }, attaching: attachments)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let failure: (any Error)? = state.withLock { state in
                    if let ended = state.ended { return ended }
                    if Task.isCancelled { return CancellationError() }
                    state.pending = continuation
                    state.pendingBatch = batchID
                    return nil
                }
                if let failure { return continuation.resume(throwing: failure) }
                if let timeout {
                    Reactor.after(timeout) { [self] in expire(batchID, timeout: timeout) }
                }
                Task {
                    do {
                        try await child.channel.send(Frame.encode(.batch) { bytes in
                            BinaryFormat.appendVarint(batchID, to: &bytes)
                            BinaryFormat.appendVarint(UInt64(work.id), to: &bytes)
                            bytes.append(contentsOf: inputs)
                        })
                    } catch {
                        // The worker is gone; its exit fails the batch.
                    }
                }
            }
        } onCancel: {
            let pending = state.withLock { state in
                defer { state.pending = nil }
                return state.pending
            }
            kill()
            pending?.resume(throwing: CancellationError())
        }
    }

    /// The batch's time is up: if it is still running, fail it and kill the worker.
    private func expire(_ batchID: UInt64, timeout: Duration) {
        let pending = state.withLock { state in
            guard state.pendingBatch == batchID, let pending = state.pending else { return nil as CheckedContinuation<[UInt8], any Error>? }
            state.pending = nil
            return pending
        }
        guard let pending else { return }
        kill()
        pending.resume(throwing: PoolTimeoutError(timeout: timeout))
    }

    /// Kills the worker (idle or not). It counts as dead from now on, so that it is not
    /// handed out again before its exit arrives.
    func kill() {
        state.withLock { state in
            if state.ended == nil {
                state.ended = ProcessCrashError(cause: .killed, stderrTail: "", processName: "a pool worker", currentRun: 0)
            }
        }
        child?.signal(SIGKILL)
    }

    /// Waits until the worker has been reaped.
    func waitForExit() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if !state.exited { state.exitWaiters.append(continuation) }
                return state.exited
            }
            if done { continuation.resume() }
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
                let waiter = state.withLock { state in
                    state.isReady = true
                    defer { state.readyWaiter = nil }
                    return state.readyWaiter
                }
                waiter?.resume()
                return
            }
            let pending = state.withLock { state in
                guard state.pendingBatch == batchID, let pending = state.pending else { return nil as CheckedContinuation<[UInt8], any Error>? }
                state.pending = nil
                return pending
            }
            pending?.resume(returning: Array(frame.payload[offset...]))
        case .frame(let frame):
            if frame.kind != .message { brokeProtocol("a \(frame.kind) frame, which pool workers do not send") }
        case .channelEnded(let end):
            brokeProtocol(end.description)
        case .exited(let status, let stderrTail):
            let crash = ProcessCrashError(cause: .init(status), stderrTail: stderrTail, processName: "a pool worker", currentRun: 0)
            let (pending, waiters, readyWaiter) = state.withLock { state in
                if state.ended == nil { state.ended = crash }
                state.exited = true
                defer { state.pending = nil; state.exitWaiters = []; state.readyWaiter = nil }
                childBox.withLock { $0 = nil }
                return (state.pending, state.exitWaiters, state.readyWaiter)
            }
            let ended = state.withLock { $0.ended! }
            pending?.resume(throwing: ended)
            readyWaiter?.resume(throwing: ended)
            for waiter in waiters { waiter.resume() }
        }
    }

    private func brokeProtocol(_ what: String) {
        WorkerContext.writeToStderr("Processing: a pool worker broke the protocol (\(what)); it was killed.")
        child?.signal(SIGKILL)
    }
}
