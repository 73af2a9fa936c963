import CProcessingShims
import Foundation
import Synchronization

/// The child's end of a process: its channel to the parent, the messages the parent told it,
/// the stop flag and the run counter. One per worker process.
final class WorkerContext: Sendable {
    private static let shared = Mutex<WorkerContext?>(nil)

    /// The context of this worker process, or nil in an ordinary process.
    static var active: WorkerContext? { shared.withLock { $0 } }

    /// The active context, or an error saying the operation only works inside a child.
    static func require(_ operation: String) throws(ProcessingError) -> WorkerContext {
        guard let context = active else {
            throw ProcessingError(.notInWorker, """
                \(operation) on a process value works only inside its lifecycle hooks, which run in the \
                child; in the parent, call \(operation) on the ProcessHandle that start() returned
                """)
        }
        return context
    }

    static func writeToStderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func warnOutsideWorker(_ operation: String) {
        FileHandle.standardError.write(Data("""
            Processing: \(operation) on a process value works only inside its lifecycle hooks (in the child); \
            in the parent, use the ProcessHandle. Ignored.\n
            """.utf8))
    }

    let mailbox = Mailbox()
    private let stopFlag = Atomic<Bool>(false)
    private let run = Atomic<Int>(0)
    /// The descriptors that came with the start frame (pipe points in the process), taken by
    /// the lifecycle as it decodes the process.
    let startAttachments = Mutex<AttachedDescriptors?>(nil)
    private let starts = Mutex<(request: StartRequest?, waiter: CheckedContinuation<StartRequest, Never>?)>((nil, nil))
    private let channelBox = Mutex<Channel?>(nil)
    private let poolService = Mutex<PoolWorkerService?>(nil)

    var channel: Channel { channelBox.withLock { $0! } }
    var stopRequested: Bool { stopFlag.load(ordering: .acquiring) }
    var currentRun: Int { run.load(ordering: .relaxed) }

    /// Starts serving the control channel on `fd` and makes this the active context.
    static func start(fd: Int32) throws {
        let context = WorkerContext()
        try Channel.prepare(fd)
        let channel = Channel(fd: fd, onFrame: { [context] frame in context.received(frame) }, onEnd: { end in
            // The parent is gone: a worker has no one left to work for, and what it started
            // goes with it (its process group), as when the parent reaps it.
            if case .closed = end { processing_end_process_group() }
            FileHandle.standardError.write(Data("Processing worker: \(end.description); exiting.\n".utf8))
            Syscall.exitImmediately(.channelEnded)
        })
        context.channelBox.withLock { $0 = channel }
        shared.withLock { $0 = context }
        channel.start()
    }

    func requestStop() {
        stopFlag.store(true, ordering: .releasing)
    }

    func setCurrentRun(_ value: Int) { run.store(value, ordering: .relaxed) }

    func tell<T: Encodable>(_ value: T) async throws {
        try await channel.send(Message.frame(value, moves: false))
    }

    /// The longest log message sent whole; longer ones are cut (and say so).
    static let logMessageLimit = 1 << 20

    /// Sends a log entry to the parent without waiting (`log(_:level:)`).
    func post(_ entry: LogEntry) {
        var entry = entry
        if entry.message.utf8.count > Self.logMessageLimit {
            let whole = entry.message.utf8.count
            entry.message = String(decoding: entry.message.utf8.prefix(Self.logMessageLimit), as: UTF8.self)
                + " … (\(whole - Self.logMessageLimit) more bytes cut)"
        }
        guard let frame = Self.logFrame(entry) else {
            return Self.writeToStderr("Processing worker: a log entry did not fit a frame: \(entry.line)")
        }
        // A parent that has stopped reading must not make this process grow: past 4 MiB
        // waiting, entries are dropped, counted, and the count sent with the next one that fits.
        let dropped = droppedLogEntries.load(ordering: .relaxed)
        if dropped > 0, let report = Self.logFrame(Self.dropReport(dropped)),
           channel.post(report, queuedLimit: LogDelivery.byteLimit) {
            droppedLogEntries.subtract(dropped, ordering: .relaxed)
        }
        if !channel.post(frame, queuedLimit: LogDelivery.byteLimit) {
            droppedLogEntries.add(1, ordering: .relaxed)
        }
    }

    /// Log entries dropped because the parent read none for a while.
    private let droppedLogEntries = Atomic<Int>(0)

    private static func dropReport(_ count: Int) -> LogEntry {
        LogEntry(process: "Processing", pid: getpid(), level: .warning, message: """
            \(count) log entries of \(ProcessLog.ownName) were dropped: its parent read none while 4 MiB waited
            """)
    }

    /// `entry` as a `.log` frame; nil if it does not fit one.
    private static func logFrame(_ entry: LogEntry) -> [UInt8]? {
        try? Frame.encode(.log) { try BinaryEncoder().encode(entry, appendingTo: &$0) }
    }

    /// The process the parent asked for (waits for the `.start` frame).
    func nextStartRequest() async -> StartRequest {
        await withCheckedContinuation { continuation in
            let request: StartRequest? = starts.withLock { state in
                if let request = state.request {
                    state.request = nil
                    return request
                }
                state.waiter = continuation
                return nil
            }
            if let request { continuation.resume(returning: request) }
        }
    }

    /// Sends the last frame and leaves. Nothing runs after this in the worker.
    /// `releasingOutput`: the frame is the result, which the parent may answer with as soon as
    /// it has it and this worker's stdout and stderr have ended, without waiting for the exit
    /// (the kernel's teardown of a process takes about half a millisecond), so they end first.
    func finish(_ frame: [UInt8], releasingOutput: Bool = false) async -> Never {
        if releasingOutput { _ = Syscall.releaseWorkerOutput() }
        do {
            try await channel.send(frame)
        } catch {
            Syscall.exitImmediately(.resultUnsent)
        }
        Syscall.exitImmediately(.finished)
    }

    /// A frame from the parent (on the reactor thread).
    private func received(_ frame: Frame) {
        switch frame.kind {
        case .message:
            do {
                mailbox.deliver(try Message(frame))
            } catch {
                FileHandle.standardError.write(Data("Processing worker: \(error)\n".utf8))
            }
        case .stop:
            requestStop()
            mailbox.stop()
        case .start:
            guard let request = try? BinaryDecoder().decode(StartRequest.self, from: frame.payload) else {
                FileHandle.standardError.write(Data("Processing worker: the start request did not decode; exiting.\n".utf8))
                Syscall.exitImmediately(.channelEnded)
            }
            startAttachments.withLock { $0 = frame.attachments }
            ProcessLog.minimumLevel = request.minimumLogLevel
            LogDelivery.shared.ownName = request.logName
            if request.poolWorker {
                // Before the next frame (a .work) is read: this thread reads frames in order.
                poolService.withLock { $0 = PoolWorkerService(context: self) }
                // Ready: the parent times items from here, not from the spawn.
                let ready = Frame.control(.batchReply) { BinaryFormat.appendVarint(PoolWorker.readyBatchID, to: &$0) }
                let channel = channel
                Task { try? await channel.send(ready) }
            }
            let waiter = starts.withLock { state in
                guard let waiter = state.waiter else {
                    state.request = request
                    return nil as CheckedContinuation<StartRequest, Never>?
                }
                state.waiter = nil
                return waiter
            }
            waiter?.resume(returning: request)
        case .work:
            do {
                guard let service = poolService.withLock({ $0 }) else {
                    throw ProcessingError(.invalidState, "a work frame for a worker that is not a pool worker")
                }
                try service.install(frame)
            } catch {
                Self.writeToStderr("Processing pool worker: cannot install the work: \(error); exiting.")
                Syscall.exitImmediately(.poolBroken)
            }
        case .batch:
            guard let service = poolService.withLock({ $0 }) else {
                Self.writeToStderr("Processing worker: a batch frame for a worker that is not a pool worker; exiting.")
                Syscall.exitImmediately(.poolBroken)
            }
            service.run(frame.payload)
        case .spare:
            SpareStandby.adopt(frame.attachments)
        case .checkpoint, .result, .failure, .section, .batchReply, .log, .relayBatch, .relayCredit, .relayEnd,
             .actorCall, .actorReply, .actorControl, .actorMessage:
            FileHandle.standardError.write(Data("Processing worker: ignored a \(frame.kind) frame meant for a parent\n".utf8))
        }
    }
}
