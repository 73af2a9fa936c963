/// One connection between two `ProcessActorSystem`s as a pure state machine: the calls this
/// side made and awaits (`Waiter`s for their `Reply`s), the calls the other side made that run
/// here (`Running`), the stop (its drain, a `VoidWaiter`) of the hosting side, and the messages it sends out
/// (`sendOut`), with their credit.
///
/// `ActorConnection` holds it under its lock and does what each transition returns (resuming
/// waiters, posting frames, cancelling tasks) after letting go of the lock.
struct ActorConnectionState<Reply, Waiter, Running, MessageWaiter, VoidWaiter, Queued> {
    /// Where the connection is.
    enum Phase {
        case open
        /// It ended with this error, which every call, old or new, gets.
        case ended(any Error)
    }

    private(set) var phase = Phase.open

    // MARK: Calls this side made

    private enum Call {
        /// Sent; nobody waits for the reply yet.
        case sent
        case waiting(Waiter)
        /// Decided before its caller began to wait.
        case decided(Result<Reply, any Error>)
    }

    private var nextCallID: UInt64 = 1
    private var calls: [UInt64: Call] = [:]

    /// Calls made and not yet answered.
    var callsInFlight: Int { calls.count }

    /// A new call's ID, or the error the connection ended with.
    mutating func beginCall() -> Result<UInt64, any Error> {
        if case .ended(let error) = phase { return .failure(error) }
        defer { nextCallID += 1 }
        calls[nextCallID] = .sent
        return .success(nextCallID)
    }

    /// The caller waits: nil if it must (`waiter` is kept), or how the call ended already.
    mutating func wait(for id: UInt64, _ waiter: Waiter) -> Result<Reply, any Error>? {
        switch calls[id] {
        case .sent?:
            calls[id] = .waiting(waiter)
            return nil
        case .decided(let result)?:
            calls[id] = nil
            return result
        case .waiting?, nil:
            preconditionFailure("a call waited for twice, or after it was withdrawn")
        }
    }

    /// The reply to `id` came: the waiter to resume with it, if one waits (a reply to a call
    /// given up on, or an ID never used, is dropped).
    mutating func replied(_ id: UInt64, _ reply: Reply) -> Waiter? {
        decide(id, .success(reply))
    }

    /// The call ends with `error` instead (cancelled, timed out, its frame not sent): the
    /// waiter to resume, if one waits.
    mutating func withdraw(_ id: UInt64, _ error: any Error) -> Waiter? {
        decide(id, .failure(error))
    }

    private mutating func decide(_ id: UInt64, _ result: Result<Reply, any Error>) -> Waiter? {
        switch calls[id] {
        case .sent?:
            calls[id] = .decided(result)
            return nil
        case .waiting(let waiter)?:
            calls[id] = nil
            return waiter
        case .decided?, nil:
            return nil
        }
    }

    /// Whether call `id` has its outcome already (its caller need not sleep).
    func isDecided(_ id: UInt64) -> Bool {
        if case .decided? = calls[id] { return true }
        return false
    }

    /// Calls of the other side running here.
    var runningCount: Int { running.count }

    /// The most calls of the other side that run here at once; more wait their turn (up to
    /// `queuedCallLimit`: a peer that sends more breaks the protocol).
    static var runningLimit: Int { 1024 }
    static var queuedCallLimit: Int { 8192 }

    /// Forgets a call whose caller will not wait (its frame failed to send).
    mutating func forget(_ id: UInt64) {
        calls[id] = nil
    }

    // MARK: Calls the other side made, running here

    /// A call running here: its task once it has one (it is made outside the lock), and
    /// whether its caller gave up on it before that.
    private enum RunningCall {
        /// Waiting for its turn (`runningLimit` run already), in `queue`.
        case queued
        case starting(cancelled: Bool)
        case task(Running)
    }

    /// The calls admitted: running, or queued for their turn.
    private var running: [UInt64: RunningCall] = [:]
    private var queue: [(id: UInt64, call: Queued)] = []
    private var stopRequested = false
    private var drainWaiter: VoidWaiter?

    /// Whether a call that arrives now may run (not once the stop came, nor after the end).
    var acceptsCalls: Bool {
        if case .ended = phase { return false }
        return !stopRequested
    }

    /// A call arrived: whether it runs now (its task is to be made and `attach`ed), waits
    /// for its turn (`later` is kept, and handed back by `finished`), or is refused.
    mutating func admit(_ id: UInt64, later: @autoclosure () -> Queued) -> Admission {
        guard acceptsCalls else { return .refused }
        guard running[id] == nil else { return .duplicate }
        if running.count - queue.count < Self.runningLimit {
            running[id] = .starting(cancelled: false)
            return .admitted
        }
        guard queue.count < Self.queuedCallLimit else { return .overflow }
        running[id] = .queued
        queue.append((id, later()))
        return .queued
    }

    /// Whether a call that arrived may run.
    enum Admission: Equatable {
        case admitted
        /// Kept until a running call finishes.
        case queued
        /// Stopping or ended.
        case refused
        /// Its ID is that of a call still running: the peer broke the protocol.
        case duplicate
        /// More calls than may wait: the peer does not wait for its calls' replies.
        case overflow
    }

    /// The call `id` runs as `task`: true if that task is to be cancelled at once (its caller
    /// gave up meanwhile, or the connection ended).
    mutating func attach(_ id: UInt64, _ task: Running) -> Bool {
        // After the end, which found no task to cancel.
        if case .ended = phase { return true }
        guard case .starting(let cancelled)? = running[id] else { return false }  // finished already
        running[id] = .task(task)
        return cancelled
    }

    /// The call `id` finished: the waiter for the drain to resume, if it was the last one
    /// after a stop.
    mutating func finished(_ id: UInt64) -> (drained: VoidWaiter?, next: (id: UInt64, call: Queued)?) {
        running[id] = nil
        if !queue.isEmpty {
            let next = queue.removeFirst()
            running[next.id] = .starting(cancelled: false)
            return (nil, next)
        }
        return (takeDrainWaiterIfDrained(), nil)
    }

    /// The caller gave up on `id`: the task to cancel (or it is cancelled once attached).
    mutating func cancelRunning(_ id: UInt64) -> Running? {
        switch running[id] {
        case .task(let task)?: return task
        case .starting?: running[id] = .starting(cancelled: true)
        case .queued?:
            // Given up on before its turn: it never runs.
            running[id] = nil
            queue.removeAll { $0.id == id }
        case nil: break
        }
        return nil
    }

    /// The other side asked this one to stop: no new calls; the drain waiter to resume if
    /// nothing runs.
    mutating func requestStop() -> VoidWaiter? {
        stopRequested = true
        return takeDrainWaiterIfDrained()
    }

    /// Whether a stop was asked for.
    var isStopRequested: Bool { stopRequested }

    /// Waits until a stop came and every running call finished: false if that is so already
    /// (do not wait), true if `waiter` is kept.
    mutating func waitUntilDrained(_ waiter: VoidWaiter) -> Bool {
        if case .ended = phase { return false }
        guard !(stopRequested && running.isEmpty) else { return false }
        drainWaiter = waiter
        return true
    }

    private mutating func takeDrainWaiterIfDrained() -> VoidWaiter? {
        guard stopRequested, running.isEmpty, let waiter = drainWaiter else { return nil }
        drainWaiter = nil
        return waiter
    }

    // MARK: Messages sent out (the hosting side sends, the spawning side reads)

    /// Messages the reader may be sent before it grants more.
    let messageWindow: Int
    /// Bytes of messages the reader may be sent before it grants more; one message larger
    /// than this may go when nothing else is outstanding.
    let messageByteWindow: Int

    private var messages: [[UInt8]] = []
    private var messageHead = 0
    private var messageWaiter: (id: UInt64, waiter: MessageWaiter)?
    /// Reading side: the sender said it waits for credit; grant what was read at once.
    private var creditWanted = false
    /// Reading side: messages (and their bytes) that arrived and were not granted back yet.
    private var ungranted = (count: 0, bytes: 0)
    /// Reading side: of those, the ones read.
    private var readSinceGrant = (count: 0, bytes: 0)
    /// Sending side: messages it may still send, and the bytes it sent that were not granted back.
    private var credit: Int
    private var outstandingBytes = 0
    private var creditWaiters: [(id: UInt64, bytes: Int, waiter: VoidWaiter)] = []
    private var nextVoidWaiter: UInt64 = 0

    init(messageWindow: Int, messageByteWindow: Int = 16 << 20) {
        self.messageWindow = messageWindow
        self.messageByteWindow = messageByteWindow
        credit = messageWindow
    }

    /// Whether a sender with `outstanding` bytes ungranted may send `bytes` more (the same
    /// rule on both sides, so that a sender that keeps to it is never refused).
    private func fits(_ bytes: Int, after outstanding: Int) -> Bool {
        outstanding == 0 || outstanding + bytes <= messageByteWindow
    }

    /// Reading side: a message came. False if the sender went over its credit (the
    /// connection must end: it does not keep to the protocol); else the reader to resume.
    mutating func messageArrived(_ message: [UInt8]) -> (accepted: Bool, reader: MessageWaiter?) {
        guard ungranted.count < messageWindow, fits(message.count, after: ungranted.bytes) else { return (false, nil) }
        ungranted.count += 1
        ungranted.bytes += message.count
        if let waiter = messageWaiter {
            messageWaiter = nil
            read(message)
            return (true, waiter.waiter)
        }
        messages.append(message)
        return (true, nil)
    }

    private mutating func read(_ message: [UInt8]) {
        readSinceGrant.count += 1
        readSinceGrant.bytes += message.count
    }

    /// What a reader gets now.
    enum MessageTake {
        /// This message, and credit to grant the sender (nil: none yet).
        case message([UInt8], grant: Grant?)
        /// Nothing more comes: the connection ended.
        case ended(any Error)
        /// Nothing yet: the waiter was kept.
        case wait
        /// Another reader waits already.
        case busy
    }

    /// Reading side: the next message, or the end, or keep `waiter` until one comes.
    mutating func nextMessage(_ id: UInt64, _ waiter: MessageWaiter) -> MessageTake {
        if messageHead < messages.count {
            let message = messages[messageHead]
            messages[messageHead] = []
            messageHead += 1
            // Compacted once half of it is read: a reader that never quite catches up must
            // not keep every message it read.
            if messageHead == messages.count {
                messages.removeAll(keepingCapacity: true)
                messageHead = 0
            } else if messageHead > messages.count / 2 {
                messages.removeFirst(messageHead)
                messageHead = 0
            }
            read(message)
            return .message(message, grant: takeGrant())
        }
        if case .ended(let error) = phase { return .ended(error) }
        guard messageWaiter == nil else { return .busy }
        messageWaiter = (id, waiter)
        return .wait
    }

    /// Credit given back to the sender: messages, and their bytes.
    struct Grant: Equatable {
        var count: Int
        var bytes: Int
    }

    /// Reading side: credit to grant once half a window (of messages or of bytes) was read.
    mutating func takeGrant() -> Grant? {
        guard readSinceGrant.count > 0,
              creditWanted || readSinceGrant.count >= messageWindow / 2 || readSinceGrant.bytes >= messageByteWindow / 2
        else { return nil }
        defer {
            creditWanted = false
            ungranted.count -= readSinceGrant.count
            ungranted.bytes -= readSinceGrant.bytes
            readSinceGrant = (0, 0)
        }
        return Grant(count: readSinceGrant.count, bytes: readSinceGrant.bytes)
    }

    /// Reading side: the reader went away (its task was cancelled): the waiter to resume.
    mutating func withdrawMessageWaiter(_ id: UInt64) -> MessageWaiter? {
        guard let waiting = messageWaiter, waiting.id == id else { return nil }
        messageWaiter = nil
        return waiting.waiter
    }

    /// Reading side: the sender waits for credit (a message that does not fit what is
    /// outstanding): what was read is granted now, or as soon as something is read.
    mutating func senderWantsCredit() -> Grant? {
        creditWanted = true
        return takeGrant()
    }

    /// Sending side: take credit for a message of `bytes`, or wait (`waiter` kept under
    /// `id`; returns false), or fail with the end.
    mutating func takeCredit(_ id: UInt64, bytes: Int, _ waiter: VoidWaiter) -> Result<Bool, any Error> {
        if case .ended(let error) = phase { return .failure(error) }
        if creditWaiters.isEmpty, credit > 0, fits(bytes, after: outstandingBytes) {
            credit -= 1
            outstandingBytes += bytes
            return .success(true)
        }
        creditWaiters.append((id, bytes, waiter))
        return .success(false)
    }

    /// Sending side: a message taken credit for was not sent after all (its task was
    /// cancelled first): the credit comes back; the senders that may go now.
    mutating func returnCredit(bytes: Int) -> [VoidWaiter] {
        granted(Grant(count: 1, bytes: bytes))
    }

    /// Sending side: an ID for a credit wait (for its cancellation).
    mutating func makeCreditWaitID() -> UInt64 {
        nextVoidWaiter += 1
        return nextVoidWaiter
    }

    /// Sending side: credit came; the senders that may go now, in order (each has taken its
    /// credit).
    mutating func granted(_ grant: Grant) -> [VoidWaiter] {
        credit = min(credit + max(0, grant.count), messageWindow)
        outstandingBytes = max(0, outstandingBytes - max(0, grant.bytes))
        var resumed: [VoidWaiter] = []
        while let first = creditWaiters.first, credit > 0, fits(first.bytes, after: outstandingBytes) {
            credit -= 1
            outstandingBytes += first.bytes
            resumed.append(creditWaiters.removeFirst().waiter)
        }
        return resumed
    }

    /// Sending side: a sender gave up waiting: its waiter, if it still waited.
    mutating func withdrawCreditWaiter(_ id: UInt64) -> (withdrawn: VoidWaiter?, resumed: [VoidWaiter]) {
        guard let index = creditWaiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
        let withdrawn = creditWaiters.remove(at: index).waiter
        // The ones behind it may fit now.
        return (withdrawn, granted(Grant(count: 0, bytes: 0)))
    }

    // MARK: The end

    /// What the end releases.
    struct Ended {
        var callers: [Waiter] = []
        var drainWaiter: VoidWaiter?
        var reader: MessageWaiter?
        var senders: [VoidWaiter] = []
        var running: [Running] = []
    }

    /// The connection ended with `error`: everything that waits, to resume with it, and the
    /// calls running here, to cancel. Nil if it had ended already.
    mutating func end(_ error: any Error) -> Ended? {
        if case .ended = phase { return nil }
        phase = .ended(error)
        var ended = Ended()
        for (id, call) in calls {
            switch call {
            case .waiting(let waiter):
                ended.callers.append(waiter)
                calls[id] = nil
            case .sent:
                calls[id] = .decided(.failure(error))
            case .decided:
                break
            }
        }
        ended.drainWaiter = drainWaiter
        drainWaiter = nil
        ended.reader = messageWaiter?.waiter
        messageWaiter = nil
        ended.senders = creditWaiters.map(\.waiter)
        creditWaiters = []
        ended.running = running.values.compactMap { call in
            if case .task(let task) = call { return task }
            return nil
        }
        for queued in queue { running[queued.id] = nil }
        queue = []
        return ended
    }
}
