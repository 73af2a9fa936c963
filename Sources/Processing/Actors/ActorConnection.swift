import Distributed
import Synchronization

/// A connection between two `ProcessActorSystem`s (a parent and an actor process it
/// spawned): a socket with a frame channel on the reactor, carrying calls either way, their
/// replies, the spawned actor's ready, its stop, and the messages it sends out.
///
/// `ActorConnectionState` is its state machine; this is the storage and the effects. Frames
/// arrive on the reactor thread, which never waits here: a call that arrives runs as a task
/// of its own, and replies resume their callers.
final class ActorConnection: @unchecked Sendable {  // `channel`: set once in init, before self is shared; `weakSystem`: a weak reference, set once in init (weak loads are atomic); `state`, `ready`, `pollBudget`: Mutexes; the rest is immutable
    /// What a reply says, after its call ID.
    enum ReplyStatus: UInt8 {
        case value = 0, void = 1, error = 2, systemError = 3
    }

    /// The most bytes of frames that may wait for a peer that does not read when this side
    /// refuses one of its calls: past that, the peer is flooding, and the connection is closed.
    static let queuedLimit = 16 << 20

    /// A call's flag: its caller had no other call in flight (it polls for the reply, and
    /// the other side may poll for the next call).
    static let callerIsAlone: UInt8 = 1

    /// What a control frame says (its first byte).
    enum ControlOperation: UInt8 {
        case cancel = 1, stop = 2, ready = 3, readyFailed = 4, credit = 5
        /// The sender of messages waits for credit: grant what was read.
        case creditWanted = 6
    }

    typealias State = ActorConnectionState<
        [UInt8], UnsafeContinuation<[UInt8], any Error>, Task<Void, Never>,
        UnsafeContinuation<[UInt8]?, any Error>, UnsafeContinuation<Void, any Error>, IncomingCall>

    /// A call of the other side, as it waits for its turn.
    struct IncomingCall: Sendable {
        let id: UInt64
        let identifier: String
        let actor: any DistributedActor
        let system: ProcessActorSystem
        let payload: [UInt8]
        let offset: Int
        let callerIsAlone: Bool
    }

    private enum Ready {
        case waiting(UnsafeContinuation<ProcessActorID, any Error>?)
        case arrived(Result<ProcessActorID, any Error>)
    }

    /// Weak: the system holds its connections, and a system nobody holds any more must go
    /// (its actor processes with it).
    private weak var weakSystem: ProcessActorSystem?
    /// The other system's host number.
    let peerToken: UInt64
    /// Who is at the other end, for errors: "Detector (pid 4242)", "the parent".
    let peer: String
    private var channel: Channel!
    private let state: Mutex<State>
    private let ready = Mutex(Ready.waiting(nil))
    /// How long a lone caller, or a hosting side that just answered, reads the socket itself
    /// before it sleeps (as `listen` does: a reply or call that comes meanwhile costs no
    /// thread wake-up, and a round trip takes a fraction of the time).
    private let pollBudget = Mutex(PollBudget())
    /// The error the connection's calls get once it ends (a crash report, when the peer's
    /// process crashed), found after the channel ended.
    private let endError: @Sendable (ChannelEnd) async -> any Error

    /// Takes ownership of `fd`, made ready with `Channel.prepare`; `start()` begins reading.
    init(fd: Int32, system: ProcessActorSystem, peerToken: UInt64, peer: String, messageWindow: Int = 256,
         endError: @escaping @Sendable (ChannelEnd) async -> any Error) {
        weakSystem = system
        self.peerToken = peerToken
        self.peer = peer
        self.endError = endError
        state = Mutex(State(messageWindow: messageWindow))
        channel = Channel(fd: fd, onFrame: { [weak self] frame in self?.received(frame) },
                          onEnd: { [weak self] end in self?.channelEnded(end) })
    }

    func start() { channel.start() }

    deinit {
        closeChannel()
    }

    /// Closes the socket; what waits fails with `error`.
    func close(_ error: any Error) {
        finish(error)
        closeChannel()
    }

    /// On the reactor thread, after what it does now (never from inside a frame handler,
    /// which holds the channel's read lock).
    private func closeChannel() {
        let channel = channel!
        let peer = peer
        Reactor.shared.execute { channel.close(reason: "the actor connection to \(peer) was closed") }
    }

    // MARK: Calls this side makes

    /// Calls the method `target` of actor `number` at the other end; returns the reply's
    /// payload (see `decodeReply`).
    func call(_ number: UInt64, target: RemoteCallTarget, invocation: ProcessInvocationEncoder,
              timeout: Duration?) async throws -> [UInt8] {
        let (id, alone) = try state.withLock { state in
            (try state.beginCall().get(), state.callsInFlight == 1)
        }
        // A caller counts as alone after two lone calls in a row: with many callers, a
        // moment with one call in flight is common, and polling then would only spin.
        let streak = alone ? loneCalls.add(1, ordering: .relaxed).newValue : 0
        if !alone { loneCalls.store(0, ordering: .relaxed) }
        let polls = streak >= 2
        let frame: [UInt8]
        do {
            frame = try Frame.encode(.actorCall) { bytes in
                BinaryFormat.appendVarint(id, to: &bytes)
                BinaryFormat.appendVarint(number, to: &bytes)
                bytes.append(polls ? Self.callerIsAlone : 0)
                Self.append(target.identifier, to: &bytes)
                invocation.append(to: &bytes)
            }
        } catch {
            state.withLock { $0.forget(id) }
            throw error
        }
        let timer = timeout.map { timeout in
            let method = target.description
            return OneShotTimer(after: timeout) { [weak self] in
                self?.giveUp(id, ProcessActorError(.callTimedOut, """
                    \(method) on \(self?.peer ?? "an actor process") did not return within \(timeout); \
                    it was cancelled there
                    """))
            }
        }
        defer { timer?.cancel() }
        // Not waited for: the caller waits for the reply, which a peer that does not read never
        // sends (its time-out and cancellation end the wait). What waits for such a peer is
        // this program's own calls, one per caller.
        channel.post(frame)
        let missed = polls ? pollForReply(id) : nil
        // A reply that came after the poll gave up still teaches the budget how long replies take.
        defer { if let missed { learn(waited: ContinuousClock.now - missed) } }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                if let result = state.withLock({ $0.wait(for: id, continuation) }) {
                    continuation.resume(with: result)
                }
            }
        } onCancel: {
            giveUp(id, CancellationError())
        }
    }

    /// A lone call reads the socket for its reply for a moment before it sleeps; with
    /// others in flight the reactor reads (it takes many replies per wake-up). Returns when
    /// the poll began if it gave up before the reply came.
    private func pollForReply(_ id: UInt64) -> ContinuousClock.Instant? {
        guard state.withLock({ $0.callsInFlight == 1 && !$0.isDecided(id) }) else { return nil }
        return poll { self.state.withLock { $0.isDecided(id) } }
    }

    /// An instant as nanoseconds since the first one asked for (to keep it in an atomic).
    private static func nanoseconds(_ instant: ContinuousClock.Instant) -> Int64 {
        let (seconds, attoseconds) = (instant - epoch).components
        return max(1, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    private static let epoch = ContinuousClock.now

    private func learn(waited: Duration) {
        pollBudget.withLock { $0.adapt(waited: waited) }
    }

    /// When the hosting side's last poll for a lone caller's next call gave up (nanoseconds
    /// of the continuous clock; 0: none): that call's arrival says how long it took.
    private let missedPollStart = Atomic<Int64>(0)

    /// Calls made in a row with no other in flight.
    private let loneCalls = Atomic<Int>(0)

    /// Reads the channel on this thread until `done` or the budget passes. Learns from a
    /// poll that found it; returns when the poll began if it gave up (the caller learns once
    /// the awaited frame comes).
    private func poll(until done: () -> Bool) -> ContinuousClock.Instant? {
        let budget = pollBudget.withLock { $0.duration }
        guard budget > .zero else { return nil }
        let start = ContinuousClock.now
        let deadline = start + budget
        channel.setPolling(true)
        defer { channel.setPolling(false) }
        var found = false
        repeat {
            _ = channel.poll()
            if done() {
                found = true
                break
            }
        } while ContinuousClock.now < deadline && !Task.isCancelled
        guard found else { return start }
        learn(waited: ContinuousClock.now - start)
        return nil
    }

    /// Ends call `id` with `error` here, and cancels it at the other end.
    private func giveUp(_ id: UInt64, _ error: any Error) {
        let waiter = state.withLock { $0.withdraw(id, error) }
        waiter?.resume(throwing: error)
        channel.post(Frame.control(.actorControl) { bytes in
            bytes.append(ControlOperation.cancel.rawValue)
            BinaryFormat.appendVarint(id, to: &bytes)
        })
    }

    /// The value in a reply's payload, decoded as `R`; or the error it carries, thrown.
    func decodeReply<R: Decodable>(_ payload: [UInt8], as type: R.Type) throws -> R {
        let (status, offset) = try Self.replyStatus(payload)
        guard status == .value else {
            try throwError(status, payload, offset)
            throw ProcessActorError(.callFailed, "\(peer) returned nothing where a \(String(reflecting: R.self)) was expected")
        }
        do {
            return try payload.withUnsafeBytes { buffer in
                try ActorDecoding.$system.withValue(weakSystem) {
                    try BinaryDecoder().decode(R.self, from: UnsafeRawBufferPointer(rebasing: buffer[offset...]))
                }
            }
        } catch {
            throw ProcessActorError(.callFailed, "a result from \(peer) did not decode as \(String(reflecting: R.self)): \(error)")
        }
    }

    /// Throws the error a `Void` call's reply carries, if any.
    func checkVoidReply(_ payload: [UInt8]) throws {
        let (status, offset) = try Self.replyStatus(payload)
        if status != .void { try throwError(status, payload, offset) }
    }

    private static func replyStatus(_ payload: [UInt8]) throws -> (ReplyStatus, Int) {
        var offset = 0
        guard BinaryFormat.readVarint(payload, at: &offset) != nil, offset < payload.count,
              let status = ReplyStatus(rawValue: payload[offset]) else {
            throw ProcessActorError(.callFailed, "a malformed reply arrived")
        }
        return (status, offset + 1)
    }

    private func throwError(_ status: ReplyStatus, _ payload: [UInt8], _ offset: Int) throws {
        switch status {
        case .error:
            let remote = try decodePayload(RemoteErrorPayload.self, payload, offset).remoteError
            throw remote.value ?? remote
        case .systemError:
            throw try decodePayload(ActorErrorPayload.self, payload, offset).error
        case .value, .void:
            return
        }
    }

    private func decodePayload<T: Decodable>(_ type: T.Type, _ payload: [UInt8], _ offset: Int) throws -> T {
        do {
            return try payload.withUnsafeBytes { try BinaryDecoder().decode(T.self, from: UnsafeRawBufferPointer(rebasing: $0[offset...])) }
        } catch {
            throw ProcessActorError(.callFailed, "a malformed reply arrived from \(peer): \(error)")
        }
    }

    // MARK: Calls the other side makes

    /// A reply frame for call `id`, its payload written by `write`.
    func replyFrame(_ id: UInt64, _ status: ReplyStatus, _ write: (inout [UInt8]) throws -> Void) throws -> [UInt8] {
        try Frame.encode(.actorReply) { bytes in
            BinaryFormat.appendVarint(id, to: &bytes)
            bytes.append(status.rawValue)
            try write(&bytes)
        }
    }

    /// Sends a reply; waits until the kernel has it.
    func sendReply(_ frame: [UInt8]) async throws {
        try await channel.send(frame)
    }

    private func refuse(_ id: UInt64, _ error: ProcessActorError) {
        guard let frame = try? replyFrame(id, .systemError, { try BinaryEncoder().encode(ActorErrorPayload(error), appendingTo: &$0) })
        else { return }
        post(frame)
    }

    /// A call arrived (on the reactor thread): it runs as a task of its own, or waits for its
    /// turn behind `runningLimit` others.
    private func arrived(call frame: Frame) {
        let payload = frame.payload
        var offset = 0
        guard let id = BinaryFormat.readVarint(payload, at: &offset),
              let number = BinaryFormat.readVarint(payload, at: &offset), offset < payload.count else {
            return protocolViolation("a malformed call")
        }
        let flags = payload[offset]
        offset += 1
        guard let identifier = Self.readString(payload, at: &offset) else {
            return protocolViolation("a call without its method's name")
        }
        guard let system = weakSystem, let actor = system.localActor(number) else {
            return refuse(id, ProcessActorError(.actorNotFound, """
                no actor \(number) lives in \(ProcessActorSystem.processDescription) (released or stopped); \
                the call \(RemoteCallTarget(identifier)) did not run
                """))
        }
        let missed = missedPollStart.exchange(0, ordering: .relaxed)
        if missed != 0 { learn(waited: .nanoseconds(Self.nanoseconds(ContinuousClock.now) - missed)) }
        let call = IncomingCall(id: id, identifier: identifier, actor: actor, system: system, payload: payload,
                                offset: offset, callerIsAlone: flags & Self.callerIsAlone != 0)
        switch state.withLock({ $0.admit(id, later: call) }) {
        case .admitted: start(call)
        case .queued: break  // started when a running call finishes
        case .duplicate: protocolViolation("a call whose ID is that of one still running")
        case .overflow: protocolViolation("more calls than may wait (\(State.queuedCallLimit)) without waiting for their replies")
        case .refused:
            refuse(id, ProcessActorError(.stopping, """
                \(ProcessActorSystem.processDescription) is stopping: it finishes the calls it has and takes no new ones \
                (\(RemoteCallTarget(identifier)) did not run)
                """))
        }
    }

    /// Runs an admitted call as a task of its own, made outside the lock (which the calls
    /// that finish meanwhile need).
    private func start(_ call: IncomingCall) {
        let task = Task {
            await self.execute(call.id, RemoteCallTarget(call.identifier), on: call.actor, in: call.system,
                               payload: call.payload, offset: call.offset, callerIsAlone: call.callerIsAlone)
        }
        if state.withLock({ $0.attach(call.id, task) }) { task.cancel() }
    }

    private func execute(_ id: UInt64, _ target: RemoteCallTarget, on actor: any DistributedActor, in system: ProcessActorSystem,
                         payload: [UInt8], offset: Int, callerIsAlone: Bool) async {
        let handler = ProcessResultHandler(connection: self, callID: id)
        var decoder = ProcessInvocationDecoder(payload: payload, offset: offset, system: system)
        do {
            try await Self.execute(system, on: actor, target, &decoder, handler)
        } catch {
            let failure = error as? ProcessActorError ?? ProcessActorError(.callFailed, """
                \(target) could not run in \(ProcessActorSystem.processDescription): \(error)
                """)
            try? await handler.onThrow(error: failure)
        }
        // A lone caller's call just answered: its next one usually follows at once, so this
        // thread reads for it a moment before it lets go. (With many callers, the reactor
        // reads their calls in batches, and a thread that polled would keep the others'
        // tasks from the cooperative pool.)
        if callerIsAlone, state.withLock({ $0.runningCount == 1 && $0.acceptsCalls }),
           let missed = poll(until: { self.state.withLock { $0.runningCount > 1 } }) {
            missedPollStart.store(Self.nanoseconds(missed), ordering: .relaxed)
        }
        let (drained, next) = state.withLock { $0.finished(id) }
        if let next { start(next.call) }
        drained?.resume()
    }

    private static func execute<A: DistributedActor>(_ system: ProcessActorSystem, on actor: A, _ target: RemoteCallTarget,
                                                     _ decoder: inout ProcessInvocationDecoder,
                                                     _ handler: ProcessResultHandler) async throws {
        try await ActorDecoding.$system.withValue(system) {
            try await system.executeDistributedTarget(on: actor, target: target, invocationDecoder: &decoder, handler: handler)
        }
    }

    // MARK: Ready, stop

    /// Hosting side: the spawned actor is made and started.
    func announceReady(_ id: ProcessActorID) async throws {
        try await channel.send(Frame.control(.actorControl) { bytes in
            bytes.append(ControlOperation.ready.rawValue)
            BinaryFormat.appendVarint(id.host, to: &bytes)
            BinaryFormat.appendVarint(id.number, to: &bytes)
        })
    }

    /// Hosting side: making or starting the actor threw `error`.
    func announceFailure(_ error: any Error) async throws {
        let payload = try BinaryEncoder().encode(RemoteErrorPayload(error))
        try await channel.send(try Frame.encode(.actorControl) { bytes in
            bytes.append(ControlOperation.readyFailed.rawValue)
            bytes.append(contentsOf: payload)
        })
    }

    /// Spawning side: the actor's ID once it is ready; what its making threw, or the crash.
    func waitUntilReady() async throws -> ProcessActorID {
        try await withUnsafeThrowingContinuation { continuation in
            let arrived: Result<ProcessActorID, any Error>? = ready.withLock { ready in
                if case .arrived(let result) = ready { return result }
                ready = .waiting(continuation)
                return nil
            }
            if let arrived { continuation.resume(with: arrived) }
        }
    }

    private func setReady(_ result: Result<ProcessActorID, any Error>) {
        let waiter: UnsafeContinuation<ProcessActorID, any Error>? = ready.withLock { ready in
            guard case .waiting(let waiter) = ready else { return nil }
            ready = .arrived(result)
            return waiter
        }
        waiter?.resume(with: result)
    }

    /// Spawning side: asks the actor's process to stop (urgent: ahead of calls not yet written).
    func requestStop() {
        channel.post(urgent: Frame.control(.actorControl) { $0.append(ControlOperation.stop.rawValue) })
    }

    /// Hosting side: waits until a stop came and the calls running finished.
    func waitUntilStopped() async {
        _ = try? await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            if !state.withLock({ $0.waitUntilDrained(continuation) }) { continuation.resume() }
        }
    }

    // MARK: Messages sent out

    /// Hosting side: sends `value` to the parent's reader; waits while the reader holds as
    /// many as it may (backpressure).
    func sendOut<T: Encodable>(_ value: T) async throws {
        let frame = try Frame.encode(.actorMessage) { try BinaryEncoder().encode(value, appendingTo: &$0) }
        // The payload's size, as the reader counts it (the frame without its header).
        let bytes = frame.count - Frame.headerLength - 1
        let waitID = state.withLock { $0.makeCreditWaitID() }
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                // Cancelled before it waited: its cancellation handler found nothing to withdraw.
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                switch state.withLock({ $0.takeCredit(waitID, bytes: bytes, continuation) }) {
                case .success(true): continuation.resume()
                case .success(false):
                    // The reader grants in steps; one that has read what it holds grants now.
                    channel.post(Frame.control(.actorControl) { $0.append(ControlOperation.creditWanted.rawValue) })
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            let (withdrawn, resumed) = state.withLock { $0.withdrawCreditWaiter(waitID) }
            withdrawn?.resume(throwing: CancellationError())
            for sender in resumed { sender.resume() }
        }
        // Posted, not awaited, once its credit is taken: a cancellation cannot withdraw it
        // now, so the credit always comes back with the reader's grant.
        channel.post(frame)
    }

    /// Spawning side: the next message's bytes, nil once the connection ended.
    func nextMessage() async throws -> [UInt8]? {
        let id = readerIDs.add(1, ordering: .relaxed).newValue
        let message = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[UInt8]?, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                switch state.withLock({ $0.nextMessage(id, continuation) }) {
                case .message(let message, let grant):
                    self.grant(grant)
                    continuation.resume(returning: message)
                case .ended: continuation.resume(returning: nil)
                case .wait: break
                case .busy:
                    continuation.resume(throwing: ProcessActorError(.invalidUse, """
                        the messages of \(peer) are read by one reader at a time, and another one waits
                        """))
                }
            }
        } onCancel: {
            state.withLock { $0.withdrawMessageWaiter(id) }?.resume(throwing: CancellationError())
        }
        return message
    }

    /// Numbers the reads of messages (so that a cancelled one withdraws only its own wait).
    private let readerIDs = Atomic<UInt64>(0)

    private func grant(_ grant: State.Grant?) {
        guard let grant else { return }
        channel.post(Frame.control(.actorControl) { bytes in
            bytes.append(ControlOperation.credit.rawValue)
            BinaryFormat.appendVarint(UInt64(grant.count), to: &bytes)
            BinaryFormat.appendVarint(UInt64(grant.bytes), to: &bytes)
        })
    }

    // MARK: Frames

    private func received(_ frame: Frame) {
        switch frame.kind {
        case .actorCall:
            arrived(call: frame)
        case .actorReply:
            var offset = 0
            guard let id = BinaryFormat.readVarint(frame.payload, at: &offset) else {
                return protocolViolation("a reply without its call ID")
            }
            state.withLock { $0.replied(id, frame.payload) }?.resume(returning: frame.payload)
        case .actorControl:
            control(frame.payload)
        case .actorMessage:
            let (accepted, reader, grant) = state.withLock { state in
                let (accepted, reader) = state.messageArrived(frame.payload)
                return (accepted, reader, reader == nil ? nil : state.takeGrant())
            }
            guard accepted else { return protocolViolation("more messages than the reader granted") }
            reader?.resume(returning: frame.payload)
            self.grant(grant)
        default:
            protocolViolation("a frame of kind \(frame.kind)")
        }
    }

    private func control(_ payload: [UInt8]) {
        guard let first = payload.first, let operation = ControlOperation(rawValue: first) else {
            return protocolViolation("an unknown control frame")
        }
        var offset = 1
        switch operation {
        case .cancel:
            guard let id = BinaryFormat.readVarint(payload, at: &offset) else { return protocolViolation("a cancel without its call") }
            state.withLock { $0.cancelRunning(id) }?.cancel()
        case .stop:
            state.withLock { $0.requestStop() }?.resume()
        case .ready:
            guard let host = BinaryFormat.readVarint(payload, at: &offset),
                  let number = BinaryFormat.readVarint(payload, at: &offset) else {
                return protocolViolation("a ready without the actor's ID")
            }
            setReady(.success(ProcessActorID(host: host, number: number)))
        case .readyFailed:
            let remote = (try? BinaryDecoder().decode(RemoteErrorPayload.self, from: Array(payload[1...])))?.remoteError
            setReady(.failure(remote.map { $0.value ?? $0 } ?? ProcessActorError(.callFailed, "\(peer) failed to start")))
        case .credit:
            guard let count = BinaryFormat.readVarint(payload, at: &offset),
                  let bytes = BinaryFormat.readVarint(payload, at: &offset) else {
                return protocolViolation("credit without its counts")
            }
            let grant = State.Grant(count: Int(clamping: count), bytes: Int(clamping: bytes))
            for sender in state.withLock({ $0.granted(grant) }) { sender.resume() }
        case .creditWanted:
            grant(state.withLock { $0.senderWantsCredit() })
        }
    }

    /// Posts a refusal; a peer that leaves more than `queuedLimit` unread while it sends calls
    /// is flooding, and the connection is closed instead of growing.
    private func post(_ frame: [UInt8]) {
        if !channel.post(frame, queuedLimit: Self.queuedLimit) {
            protocolViolation("nothing for so long that \(Self.queuedLimit >> 20) MiB waited (it does not read)")
        }
    }

    /// The peer broke the protocol: the connection ends (its process is not trusted further).
    private func protocolViolation(_ what: String) {
        close(ProcessActorError(.callFailed, "\(peer) sent \(what); the connection was closed"))
    }

    private func channelEnded(_ end: ChannelEnd) {
        Task {
            finish(await endError(end))
            closeChannel()
        }
    }

    /// Everything that waits fails with `error`; calls running here are cancelled.
    private func finish(_ error: any Error) {
        setReady(.failure(error))
        guard let ended = state.withLock({ $0.end(error) }) else { return }
        for caller in ended.callers { caller.resume(throwing: error) }
        ended.drainWaiter?.resume()
        ended.reader?.resume(returning: nil)
        for sender in ended.senders { sender.resume(throwing: error) }
        for task in ended.running { task.cancel() }
    }

    // MARK: Strings in frames

    private static func append(_ string: String, to bytes: inout [UInt8]) {
        BinaryFormat.appendVarint(UInt64(string.utf8.count), to: &bytes)
        bytes.append(contentsOf: string.utf8)
    }

    private static func readString(_ bytes: [UInt8], at offset: inout Int) -> String? {
        guard let length = BinaryFormat.readVarint(bytes, at: &offset), length <= bytes.count - offset else { return nil }
        defer { offset += Int(length) }
        return String(decoding: bytes[offset..<(offset + Int(length))], as: UTF8.self)
    }
}
