#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Why a channel stopped delivering frames.
enum ChannelEnd: Sendable {
    /// The peer closed the connection between frames.
    case closed
    /// The peer closed in the middle of a frame.
    case truncated(String)
    /// The bytes were not a valid frame.
    case malformed(String)
    /// Reading failed.
    case failed(SystemError)

    var description: String {
        switch self {
        case .closed: "the channel was closed"
        case .truncated(let what): "the channel ended with \(what)"
        case .malformed(let what): "a malformed frame arrived: \(what)"
        case .failed(let error): "reading the channel failed: \(error)"
        }
    }
}

/// A control channel: length-prefixed frames over one nonblocking Unix socket.
///
/// Reads happen on the reactor thread (its read handler drains the socket until `EAGAIN` and
/// hands each complete frame to `onFrame`), and from a `listen` polling the socket on its own
/// thread; both under the `reading` lock, so frames are delivered one at a time and in order. Writes
/// happen on the caller's thread under the `writer` lock: a nonblocking `send` that usually
/// completes at once; what the kernel does not take waits in the `ChannelWriter` until the
/// reactor reports the socket writable, and the sender waits until its frame is out
/// (backpressure, no unbounded buffer), or until it is cancelled.
///
/// Reading can be paused (`pauseReading`): the mailbox a channel feeds does so when it holds
/// as much as it may, so that the peer's sends wait instead of this process's memory growing.
///
/// Lock order: `reading`, then `writer`.
final class Channel: Sendable {
    let fd: Int32
    private let onFrame: @Sendable (Frame) -> Void
    private let onEnd: @Sendable (ChannelEnd) -> Void

    /// Reading state: the frame being reassembled, descriptors not yet claimed.
    private let reading: Mutex<ReadState>
    /// Set by `pauseReading` (possibly from inside `onFrame`, under the read lock, hence an
    /// atomic); the reader checks it between reads.
    private let readingPaused = Atomic<Bool>(false)

    private struct ReadState: ~Copyable {
        var reader = FrameReader()
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        var ended = false
        var closed = false
        /// Descriptors that arrived and no frame has claimed yet, in arrival order (they come
        /// no later than the first byte of their frame).
        var receivedDescriptors: [Int32] = []

        deinit {
            scratch.deallocate()
            for fd in receivedDescriptors { Syscall.close(fd) }
        }
    }

    private struct WriterState {
        var frames = ChannelWriter()
        /// The reactor's watch of the socket, once `start()` made it; cancelled when reading ends.
        var watch: ReactorWatch?
        /// Listens reading the socket from their own threads for a moment; while there are any
        /// the reactor does not watch for reads, so it does not wake to race them.
        var pollers = 0

    }

    private let writer = Mutex(WriterState())

    /// Tells the reactor what the channel wants to hear about now (a no-op when unchanged);
    /// under the writer lock. Epoll may refuse (no room for another watch: `ENOSPC`,
    /// `ENOMEM`); then nothing would read the socket or wake its senders, so the channel
    /// ends, failed, instead (on the reactor thread, where ends are handled).
    private func updateRegistration(_ state: inout WriterState) {
        let reading = state.pollers == 0 && !readingPaused.load(ordering: .acquiring)
        do {
            try state.watch?.want(reading: reading, writing: state.frames.hasPending)
        } catch {
            Reactor.shared.execute { [self] in endReading(.failed(error)) }
        }
    }

    /// Makes `fd` ready to be a channel (nonblocking, with large socket buffers); do it before
    /// `init`, which cannot fail.
    static func prepare(_ fd: Int32) throws(SystemError) {
        try Syscall.setNonBlocking(fd)
        Syscall.setSocketBuffers(fd, bytes: 1 << 20)
    }

    /// Takes ownership of `fd`, which `prepare` made ready; call `start()` to begin reading.
    init(fd: Int32, onFrame: @escaping @Sendable (Frame) -> Void, onEnd: @escaping @Sendable (ChannelEnd) -> Void) {
        self.fd = fd
        self.onFrame = onFrame
        self.onEnd = onEnd
        reading = Mutex(ReadState())
    }

    /// Registers with the reactor; frames start arriving on the reactor thread. A channel
    /// closed meanwhile registers nothing (its number may belong to another descriptor now).
    func start() {
        Reactor.shared.execute { [self] in
            guard !reading.withLock({ $0.closed }) else { return }
            let watch = Reactor.shared.watch(fd, onReadable: { [self] in readAvailable() },
                                             onWritable: { [self] in writeReady() })
            writer.withLock { state in
                state.watch = watch
                updateRegistration(&state)
            }
        }
    }

    // MARK: Writing

    /// Sends one encoded frame (see `Frame.encode`), with the descriptors it announced.
    /// Returns once the kernel has all of it. Cancelling the caller ends the wait at once with
    /// `CancellationError`: the frame is withdrawn if none of it was written yet, and finished
    /// otherwise (a frame cannot be cut).
    func send(_ bytes: [UInt8], attaching attachments: AttachedDescriptors? = nil) async throws {
        if FrameTap.isRecording { bytes.withUnsafeBytes(FrameTap.record) }
        let sent = try writer.withLock { state throws(ProcessingError) in
            let sent = try state.frames.send(bytes, attachments: attachments, urgent: false, write: write)
            if case .queued = sent { updateRegistration(&state) }
            return sent
        }
        guard case .queued(let ticket) = sent else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now: Result<Void, any Error>? = writer.withLock { state in
                    if Task.isCancelled {
                        _ = state.frames.cancel(ticket)
                        return .failure(CancellationError())
                    }
                    return state.frames.wait(for: ticket, continuation)
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            writer.withLock { $0.frames.cancel(ticket) }?.resume(throwing: CancellationError())
        }
    }

    /// Sends one frame with its attachments.
    func send(_ frame: OutgoingFrame) async throws {
        try await send(frame.bytes, attaching: frame.attachments)
    }

    /// Queues an urgent frame (a stop) ahead of every frame not yet begun, and returns without
    /// waiting for it to be written: a peer that reads nothing cannot hold the caller. Dropped
    /// silently if the channel has ended.
    func post(urgent bytes: [UInt8]) {
        if FrameTap.isRecording { bytes.withUnsafeBytes(FrameTap.record) }
        writer.withLock { state in
            guard case .queued? = try? state.frames.send(bytes, attachments: nil, urgent: true, waits: false, write: write) else { return }
            updateRegistration(&state)
        }
    }

    /// Sends a frame in order with the others without waiting for it: written now if the
    /// socket takes it, queued otherwise (a log entry), unless `queuedLimit` bytes wait
    /// already: then it is dropped and false returned. Dropped silently if the channel has
    /// ended (true: nothing is owed to a peer that is gone).
    @discardableResult
    func post(_ bytes: [UInt8], queuedLimit: Int = .max) -> Bool {
        if FrameTap.isRecording { bytes.withUnsafeBytes(FrameTap.record) }
        return writer.withLock { state in
            if state.frames.queuedBytes > queuedLimit { return false }
            guard case .queued? = try? state.frames.send(bytes, attachments: nil, urgent: false, waits: false, write: write) else { return true }
            updateRegistration(&state)
            return true
        }
    }

    /// Writes as much of `buffer` as the socket takes now, with `attachments` on the first byte.
    private func write(_ buffer: UnsafeRawBufferPointer, _ attachments: AttachedDescriptors?) throws(ProcessingError) -> Int {
        var offset = 0
        while offset < buffer.count {
            let result: IOResult
            do {
                result = try Syscall.send(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...]),
                                          attaching: offset == 0 ? attachments?.descriptors ?? [] : [])
            } catch {
                throw ProcessingError(.channelClosed, "the other process is gone (\(error))")
            }
            guard case .transferred(let count) = result else { break }
            offset += count
        }
        return offset
    }

    /// The socket is writable: push out pending frames, wake the senders whose frames are out.
    private func writeReady() {
        let resumed = writer.withLock { state in
            let resumed = state.frames.flush(write: write)
            updateRegistration(&state)
            return resumed
        }
        for (continuation, error) in resumed {
            if let error { continuation.resume(throwing: error) } else { continuation.resume() }
        }
    }

    // MARK: Reading

    /// Reads everything available now and delivers the complete frames. Runs on the reactor
    /// thread: when the socket is readable, and (`ignoringPause`) to drain the channel once its
    /// child has exited, so no frame written before the exit is lost.
    func readAvailable(ignoringPause: Bool = false) {
        reading.withLock { drain(&$0, onReactor: true, ignoringPause: ignoringPause) }
    }

    /// Reads what is there now from the caller's thread (a listen polling before it sleeps);
    /// an end found here is left to the reactor. Returns false while a large frame is coming
    /// in: polling for bulk transfers halved 1 MiB throughput (BENCHMARKS.md), so the
    /// reactor reads them.
    func poll() -> Bool {
        // Never wait for the reactor's read: what it reads reaches the mailbox anyway.
        reading.withLockIfAvailable { state in
            drain(&state, onReactor: false, ignoringPause: false)
            return state.reader.missingBodyBytes < state.scratch.count
        } ?? true
    }

    /// A listen starts or stops polling the socket itself.
    func setPolling(_ polling: Bool) {
        writer.withLock { state in
            state.pollers += polling ? 1 : -1
            updateRegistration(&state)
        }
    }

    /// Stops reading until `resumeReading()`: what the peer sends then waits in the sockets,
    /// and its sends wait once they are full. Any thread, also from inside `onFrame`.
    func pauseReading() {
        readingPaused.store(true, ordering: .releasing)
    }

    /// Reads again after `pauseReading()`.
    func resumeReading() {
        guard readingPaused.exchange(false, ordering: .acquiringAndReleasing) else { return }
        // Level-triggered: once read interest is back, the reactor hears what is waiting.
        writer.withLock { updateRegistration(&$0) }
    }

    /// How many bytes the frame being read holds now (for tests: what a frame in progress costs).
    var bufferedFrameBytes: Int { reading.withLock { $0.reader.bufferedCapacity } }

    private func drain(_ state: inout ReadState, onReactor: Bool, ignoringPause: Bool) {
        guard !state.ended else { return }
        do {
            while !state.ended {
                if !ignoringPause, readingPaused.load(ordering: .acquiring) {
                    // Loaded again under the lock: a resume in between must not be undone.
                    writer.withLock { updateRegistration(&$0) }
                    return
                }
                var outcome = IOResult.wouldBlock
                var frames: [Frame] = []
                if state.reader.missingBodyBytes >= state.scratch.count {
                    // A large frame: read straight into its buffer.
                    if let frame = try state.reader.fillBody({ buffer in
                        outcome = try Syscall.receive(fd, into: buffer, fds: &state.receivedDescriptors)
                        if case .transferred(let count) = outcome {
                            if FrameTap.isRecording { FrameTap.record(UnsafeRawBufferPointer(rebasing: buffer[..<count])) }
                            return count
                        }
                        return 0
                    }) {
                        frames.append(frame)
                    }
                } else {
                    outcome = try Syscall.receive(fd, into: state.scratch, fds: &state.receivedDescriptors)
                    if case .transferred(let count) = outcome {
                        if FrameTap.isRecording { FrameTap.record(UnsafeRawBufferPointer(rebasing: state.scratch[..<count])) }
                        try state.reader.consume(UnsafeRawBufferPointer(rebasing: state.scratch[..<count]), into: &frames)
                    }
                }
                for var frame in frames {
                    if frame.attachmentCount > 0 {
                        guard state.receivedDescriptors.count >= frame.attachmentCount else {
                            throw MalformedFrame(description: "a \(frame.kind) frame announced \(frame.attachmentCount) descriptors and \(state.receivedDescriptors.count) arrived")
                        }
                        frame.attachments = AttachedDescriptors(Array(state.receivedDescriptors.prefix(frame.attachmentCount)))
                        state.receivedDescriptors.removeFirst(frame.attachmentCount)
                    }
                    onFrame(frame)
                }
                switch outcome {
                case .transferred: continue
                case .wouldBlock: return
                case .endOfFile:
                    guard onReactor else { return }
                    endReading(&state, state.reader.isAtFrameBoundary ? .closed : .truncated(state.reader.partialDescription))
                }
            }
        } catch let error as MalformedFrame {
            endReading(&state, .malformed(error.description), onReactor: onReactor)
        } catch let error as SystemError {
            endReading(&state, error.errno == ECONNRESET ? .closed : .failed(error), onReactor: onReactor)
        } catch {
            endReading(&state, .failed(SystemError(call: "read", errno: EIO)), onReactor: onReactor)
        }
    }

    private func endReading(_ state: inout ReadState, _ end: ChannelEnd, onReactor: Bool = true) {
        guard !state.ended else { return }
        state.ended = true
        guard onReactor else {
            // The end's handlers run on the reactor thread.
            Reactor.shared.execute { [self] in
                stopWatching(failing: "the channel ended: \(end.description)")
                onEnd(end)
            }
            return
        }
        stopWatching(failing: "the channel ended: \(end.description)")
        onEnd(end)
    }

    private func endReading(_ end: ChannelEnd) {
        reading.withLock { endReading(&$0, end) }
    }

    /// Leaves the reactor: an ended socket stays readable (EOF) and would be reported forever.
    /// Frames still queued can no longer be written (nothing watches for writability, and the
    /// peer is gone or broke the protocol): their senders fail instead of waiting forever.
    private func stopWatching(failing reason: String) {
        let (watch, waiters) = writer.withLock { state in
            (state.watch, state.frames.fail(ProcessingError(.channelClosed, reason)))
        }
        watch?.cancel()
        for (continuation, error) in waiters { continuation.resume(throwing: error ?? CancellationError()) }
    }

    // MARK: Closing

    /// Stops reading and writing and closes the fd (after its watch's handlers: this runs on
    /// the reactor thread, where they do). Pending senders fail with
    /// `ProcessingError.channelClosed`.
    func close(reason: String = "the channel was closed") {
        precondition(Reactor.shared.isCurrent, "Channel.close runs on the reactor thread")
        let alreadyClosed = reading.withLock { state in
            defer { (state.closed, state.ended) = (true, true) }
            return state.closed
        }
        guard !alreadyClosed else { return }
        stopWatching(failing: reason)
        Syscall.close(fd)
    }
}
