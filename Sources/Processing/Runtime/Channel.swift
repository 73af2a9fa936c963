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
/// Reads happen on the reactor thread (it drains the socket until `EAGAIN` and hands each
/// complete frame to `onFrame`). Writes happen on the caller's thread under the `writer`
/// lock: a nonblocking `send` that usually completes at once; what the kernel does not take
/// waits in `pending` until the reactor reports the socket writable, and the sender waits
/// until its frame is out (backpressure, no unbounded buffer).
final class Channel: Sendable {
    let fd: Int32
    private let onFrame: @Sendable (Frame) -> Void
    private let onEnd: @Sendable (ChannelEnd) -> Void

    /// Reading state, touched on the reactor thread; the lock makes that checkable rather
    /// than assumed, and frames are delivered under it, in order.
    private let reading: Mutex<ReadState>

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

    private struct PendingWrite {
        let ticket: UInt64
        let bytes: [UInt8]
        var offset: Int
        /// Sent with the first byte; kept alive until then.
        var attachments: AttachedDescriptors?
    }

    private struct WriterState {
        var pending: [PendingWrite] = []
        var nextTicket: UInt64 = 1
        var completedThrough: UInt64 = 0
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var failure: ProcessingError?
        /// The reactor registration, once `start()` made it and until reading ends.
        var registration: Reactor.Registration?
        /// Whether the registration asks for writability (while `pending` is not empty).
        var wantsWrite = false
        /// Listens reading the socket from their own threads for a moment; while there are any
        /// the reactor does not watch for reads, so it does not wake to race them.
        var pollers = 0
        /// What the registration asks for now.
        var registeredInterest: Reactor.Interest = .read

        var interest: Reactor.Interest {
            var interest: Reactor.Interest = pollers == 0 ? .read : []
            if wantsWrite { interest.insert(.write) }
            return interest
        }

        /// Tells the reactor when what the channel wants to hear about changed.
        mutating func updateRegistration() {
            let interest = interest
            guard let registration, interest != registeredInterest else { return }
            registeredInterest = interest
            Reactor.shared.update(registration, interest: interest)
        }
    }

    private let writer = Mutex(WriterState())

    /// Takes ownership of `fd` (made nonblocking here); call `start()` to begin reading.
    init(fd: Int32, onFrame: @escaping @Sendable (Frame) -> Void, onEnd: @escaping @Sendable (ChannelEnd) -> Void) throws {
        try Syscall.setNonBlocking(fd)
        Syscall.setSocketBuffers(fd, bytes: 1 << 20)
        self.fd = fd
        self.onFrame = onFrame
        self.onEnd = onEnd
        reading = Mutex(ReadState())
    }

    /// Registers with the reactor; frames start arriving on the reactor thread.
    func start() {
        Reactor.shared.execute { [self] in
            let registration: Reactor.Registration
            do {
                registration = try Reactor.shared.register(fd, interest: .read) { [self] events in
                    if events.readable { readAvailable() }
                    if events.writable { writeReady() }
                }
            } catch {
                endReading(.failed(error as? SystemError ?? SystemError(call: "epoll_ctl", errno: EIO)))
                return
            }
            writer.withLock { state in
                state.registration = registration
                state.updateRegistration()
            }
        }
    }

    // MARK: Writing

    /// Sends one encoded frame (see `Frame.encode`), with the descriptors it announced.
    /// Returns once the kernel has all of it.
    func send(_ bytes: [UInt8], attaching attachments: AttachedDescriptors? = nil) async throws {
        if FrameTap.isRecording { bytes.withUnsafeBytes(FrameTap.record) }
        let ticket: UInt64? = try writer.withLock { state in
            if let failure = state.failure { throw failure }
            var offset = 0
            if state.pending.isEmpty {
                offset = try write(bytes, from: 0, attaching: attachments, state: &state)
                if offset == bytes.count { return nil }
            }
            let ticket = state.nextTicket
            state.nextTicket += 1
            state.pending.append(PendingWrite(ticket: ticket, bytes: bytes, offset: offset,
                                              attachments: offset == 0 ? attachments : nil))
            if !state.wantsWrite {
                state.wantsWrite = true
                state.updateRegistration()
            }
            return ticket
        }
        guard let ticket else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            writer.withLock { state in
                if state.completedThrough >= ticket {
                    continuation.resume()
                } else if let failure = state.failure {
                    continuation.resume(throwing: failure)
                } else {
                    state.waiters.append((ticket, continuation))
                }
            }
        }
    }

    /// Sends one frame with its attachments.
    func send(_ frame: OutgoingFrame) async throws {
        try await send(frame.bytes, attaching: frame.attachments)
    }

    /// Writes as much of `bytes` as the socket takes now; returns the new offset. Attachments
    /// go with the first byte written.
    private func write(_ bytes: [UInt8], from start: Int, attaching attachments: AttachedDescriptors? = nil,
                       state: inout WriterState) throws(ProcessingError) -> Int {
        var offset = start
        while offset < bytes.count {
            let result: IOResult
            do {
                result = try bytes.withUnsafeBytes { buffer throws(SystemError) in
                    let rest = UnsafeRawBufferPointer(rebasing: buffer[offset...])
                    return try Syscall.send(fd, rest, attaching: offset == 0 ? attachments?.descriptors ?? [] : [])
                }
            } catch {
                let failure = ProcessingError(.channelClosed, "the other process is gone (\(error))")
                state.failure = failure
                throw failure
            }
            guard case .transferred(let count) = result else { break }
            offset += count
        }
        return offset
    }

    /// The socket is writable: push out pending frames, wake the senders whose frames are out.
    private func writeReady() {
        let resumed: [(CheckedContinuation<Void, any Error>, (any Error)?)] = writer.withLock { state in
            do {
                while var first = state.pending.first {
                    first.offset = try write(first.bytes, from: first.offset, attaching: first.attachments, state: &state)
                    if first.offset > 0 { first.attachments = nil }
                    if first.offset < first.bytes.count {
                        state.pending[0] = first
                        break
                    }
                    state.completedThrough = first.ticket
                    state.pending.removeFirst()
                }
            } catch {
                state.pending.removeAll()
            }
            if state.pending.isEmpty && state.wantsWrite {
                state.wantsWrite = false
                state.updateRegistration()
            }
            var resumed: [(CheckedContinuation<Void, any Error>, (any Error)?)] = []
            state.waiters.removeAll { waiter in
                if waiter.ticket <= state.completedThrough {
                    resumed.append((waiter.continuation, nil))
                } else if let failure = state.failure {
                    resumed.append((waiter.continuation, failure))
                } else {
                    return false
                }
                return true
            }
            return resumed
        }
        for (continuation, error) in resumed {
            if let error { continuation.resume(throwing: error) } else { continuation.resume() }
        }
    }

    // MARK: Reading

    /// Reads everything available now and delivers the complete frames. Runs on the reactor
    /// thread: when the socket is readable, and to drain the channel once its child has
    /// exited, so no frame written before the exit is lost.
    func readAvailable() {
        reading.withLock { drain(&$0, onReactor: true) }
    }

    /// Reads what is there now from the caller's thread (a listen polling before it sleeps);
    /// an end found here is left to the reactor. Returns false while a large frame is coming
    /// in: polling for bulk transfers halved 1 MiB throughput (BENCHMARKS.md), so the
    /// reactor reads them.
    func poll() -> Bool {
        // Never wait for the reactor's read: what it reads reaches the mailbox anyway.
        reading.withLockIfAvailable { state in
            drain(&state, onReactor: false)
            return state.reader.missingBodyBytes < state.scratch.count
        } ?? true
    }

    /// A listen starts or stops polling the socket itself.
    func setPolling(_ polling: Bool) {
        writer.withLock { state in
            state.pollers += polling ? 1 : -1
            state.updateRegistration()
        }
    }

    private func drain(_ state: inout ReadState, onReactor: Bool) {
        guard !state.ended else { return }
        do {
            while !state.ended {
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
                stopWatching()
                onEnd(end)
            }
            return
        }
        stopWatching()
        onEnd(end)
    }

    private func endReading(_ end: ChannelEnd) {
        reading.withLock { endReading(&$0, end) }
    }

    /// Leaves the reactor: an ended socket stays readable (EOF) and would be reported forever.
    private func stopWatching() {
        let registration = writer.withLock { state in
            defer { state.registration = nil }
            return state.registration
        }
        if let registration { Reactor.shared.deregister(registration) }
    }

    // MARK: Closing

    /// Stops reading and writing and closes the fd. Pending senders fail with
    /// `ProcessingError.channelClosed`. Runs on the reactor thread.
    func close(reason: String = "the channel was closed") {
        precondition(Reactor.shared.isCurrent, "Channel.close runs on the reactor thread")
        let alreadyClosed = reading.withLock { state in
            defer { (state.closed, state.ended) = (true, true) }
            return state.closed
        }
        guard !alreadyClosed else { return }
        stopWatching()
        let waiters = writer.withLock { state in
            if state.failure == nil { state.failure = ProcessingError(.channelClosed, reason) }
            state.pending.removeAll()
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.continuation)
        }
        Syscall.close(fd)
        let failure = ProcessingError(.channelClosed, reason)
        for continuation in waiters { continuation.resume(throwing: failure) }
    }
}
