import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One pool worker process as the parent sees it: the work values installed in it and the
/// one batch it runs at a time.
///
/// Its phases: starting (until its ready reply), idle, running one batch, ended (dead, or
/// killed and not yet reaped). Every wait on it (for the ready reply, a batch's reply, its
/// exit) ends when the waiting task is cancelled.
final class PoolWorker: Sendable {
    private typealias Reply = CheckedContinuation<[UInt8], any Error>

    private struct Batch {
        let id: UInt64
        /// Set once the batch is sent; nil while its work is being installed.
        var reply: Reply?
        var timer: OneShotTimer?
    }

    private struct State {
        var installed: Set<Int> = []
        var nextBatch: UInt64 = 0
        /// The batch running now, from `run` claiming the worker to its reply.
        var batch: Batch?
        /// Set once the child has exited (or was killed, or broke the protocol): why it is gone.
        var ended: ProcessCrashError?
        var exited = false
        var exitWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var isReady = false
        var readyWaiter: CheckedContinuation<Void, any Error>?

        /// Ends the batch in progress: its reply continuation, to resume, and its timer cancelled.
        mutating func takeBatch(_ id: UInt64? = nil) -> Reply? {
            guard let batch, id == nil || batch.id == id else { return nil }
            self.batch = nil
            batch.timer?.cancel()
            return batch.reply
        }
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

    /// Whether a batch has claimed this worker and not yet had its reply.
    var isRunningBatch: Bool { state.withLock { $0.batch != nil } }

    private static func killedError() -> ProcessCrashError {
        ProcessCrashError(cause: .killed, stderrTail: "", processName: "a pool worker", currentRun: 0)
    }

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
    /// dies meanwhile, `PoolTimeoutError` (killing it) if the batch runs past `timeout`, and
    /// `ProcessingError` (`.invalidState`) if it is running a batch already; a cancelled call
    /// kills the worker, which is busy with the batch.
    func run(batch inputs: [UInt8], work: PoolWorkInstall, attachments: AttachedDescriptors? = nil,
             timeout: Duration? = nil) async throws -> [UInt8] {
        // Encoded before the worker is claimed: a batch over the size limit leaves it as it was.
        try Frame.checkSize(inputs.count + 32, of: .batch)
        let (install, batchID) = try state.withLock { state throws(any Error) in
            if let ended = state.ended { throw ended }
            if let running = state.batch {
                throw ProcessingError(.invalidState, "a pool worker runs one batch at a time, and this one is running batch \(running.id)")
            }
            state.nextBatch += 1
            state.batch = Batch(id: state.nextBatch)
            return (state.installed.insert(work.id).inserted, state.nextBatch)
        }
        guard let child else {
            _ = state.withLock { $0.takeBatch(batchID) }
            throw state.withLock { $0.ended } ?? Self.killedError()
        }
        if install {
            do {
                try await child.channel.send(Frame.encode(.work, attachmentCount: attachments?.count ?? 0) {
                    try BinaryEncoder().encode(work, appendingTo: &$0)
                }, attaching: attachments)
            } catch {
                _ = state.withLock { state in
                    state.installed.remove(work.id)
                    return state.takeBatch(batchID)
                }
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
                let failure: (any Error)? = state.withLock { state in
                    if let ended = state.ended {
                        _ = state.takeBatch(batchID)
                        return ended
                    }
                    if Task.isCancelled {
                        _ = state.takeBatch(batchID)
                        return CancellationError()
                    }
                    state.batch?.reply = continuation
                    if let timeout {
                        state.batch?.timer = OneShotTimer(after: timeout) { [weak self] in self?.expire(batchID, timeout: timeout) }
                    }
                    return nil
                }
                if let failure {
                    if failure is CancellationError { kill() }
                    return continuation.resume(throwing: failure)
                }
                Task {
                    // A worker that is gone fails the batch through its exit.
                    try? await child.channel.send(frame)
                }
            }
        } onCancel: {
            let reply = state.withLock { $0.takeBatch(batchID) }
            guard let reply else { return }
            kill()
            reply.resume(throwing: CancellationError())
        }
    }

    /// The batch's time is up: if it is still running, fail it and kill the worker.
    private func expire(_ batchID: UInt64, timeout: Duration) {
        guard let reply = state.withLock({ $0.takeBatch(batchID) }) else { return }
        kill()
        reply.resume(throwing: PoolTimeoutError(timeout: timeout))
    }

    /// Kills the worker (idle or not). It counts as dead from now on, so that it is not
    /// handed out again before its exit arrives.
    func kill() {
        state.withLock { state in
            if state.ended == nil { state.ended = Self.killedError() }
        }
        child?.signal(SIGKILL)
    }

    /// Waits until the worker has been reaped, or until the waiting task is cancelled.
    func waitForExit() async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state in
                    if !state.exited && !Task.isCancelled { state.exitWaiters[id] = continuation }
                    return state.exited || Task.isCancelled
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.exitWaiters.removeValue(forKey: id) }?.resume()
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
            state.withLock { $0.takeBatch(batchID) }?.resume(returning: Array(frame.payload[offset...]))
        case .frame(let frame) where frame.kind == .message:
            // Pool work has no one to tell (a process value's tell() called in it, say): say so
            // rather than lose it in silence.
            StderrForwarder.shared.forward(line: "Processing: pool work told a message, which has no listener in a pool; it was dropped.")
        case .frame(let frame):
            brokeProtocol("a \(frame.kind) frame, which pool workers do not send")
        case .channelEnded(let end):
            brokeProtocol(end.description)
        case .exited(let status, let stderr):
            let crash = ProcessCrashError(cause: .init(status), stderr: stderr, processName: "a pool worker", currentRun: 0)
            let (reply, waiters, readyWaiter, ended) = state.withLock { state in
                if state.ended == nil { state.ended = crash }
                state.exited = true
                defer { state.exitWaiters = [:]; state.readyWaiter = nil }
                childBox.withLock { $0 = nil }
                return (state.takeBatch(), Array(state.exitWaiters.values), state.readyWaiter, state.ended!)
            }
            reply?.resume(throwing: ended)
            readyWaiter?.resume(throwing: ended)
            for waiter in waiters { waiter.resume() }
        }
    }

    private func brokeProtocol(_ what: String) {
        StderrForwarder.shared.forward(line: "Processing: a pool worker broke the protocol (\(what)); it was killed.")
        child?.signal(SIGKILL)
    }
}
