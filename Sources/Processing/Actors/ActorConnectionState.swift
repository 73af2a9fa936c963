/// One connection between two `ProcessActorSystem`s as a pure state machine: the calls this
/// side made and awaits (`Waiter`s for their `Reply`s), the calls the other side made that run
/// here (`Running`), the stop (its drain, a `VoidWaiter`) of the hosting side, and the messages it sends out
/// (`sendOut`), with their credit.
///
/// `ActorConnection` holds it under its lock and does what each transition returns (resuming
/// waiters, posting frames, cancelling tasks) after letting go of the lock.
struct ActorConnectionState<Reply, Waiter, Running, MessageWaiter, VoidWaiter> {
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

    /// The most calls of the other side that run here at once: at that many, the connection
    /// stops reading (the peer's sends wait) until one finishes.
    static var runningLimit: Int { 1024 }

    /// Forgets a call whose caller will not wait (its frame failed to send).
    mutating func forget(_ id: UInt64) {
        calls[id] = nil
    }

    // MARK: Calls the other side made, running here

    /// A call running here: its task once it has one (it is made outside the lock), and
    /// whether its caller gave up on it before that.
    private enum RunningCall {
        case starting(cancelled: Bool)
        case task(Running)
    }

    private var running: [UInt64: RunningCall] = [:]
    private var stopRequested = false
    private var drainWaiter: VoidWaiter?

    /// Whether a call that arrives now may run (not once the stop came, nor after the end).
    var acceptsCalls: Bool {
        if case .ended = phase { return false }
        return !stopRequested
    }

    /// A call arrived: false if it may not run (stopping, ended); else it counts as running
    /// from now on, and its task is to be made and `attach`ed.
    mutating func admit(_ id: UInt64) -> Admission {
        guard acceptsCalls else { return .refused }
        guard running[id] == nil else { return .duplicate }
        running[id] = .starting(cancelled: false)
        return .admitted
    }

    /// Whether a call that arrived may run.
    enum Admission: Equatable {
        case admitted
        /// Stopping or ended.
        case refused
        /// Its ID is that of a call still running: the peer broke the protocol.
        case duplicate
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
    mutating func finished(_ id: UInt64) -> VoidWaiter? {
        running[id] = nil
        return takeDrainWaiterIfDrained()
    }

    /// The caller gave up on `id`: the task to cancel (or it is cancelled once attached).
    mutating func cancelRunning(_ id: UInt64) -> Running? {
        switch running[id] {
        case .task(let task)?: return task
        case .starting?: running[id] = .starting(cancelled: true)
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

    private var messages: [[UInt8]] = []
    private var messageHead = 0
    private var messageWaiter: MessageWaiter?
    private var readSinceGrant = 0
    /// The sending side: messages it may still send.
    private var credit: Int
    private var creditWaiters: [(id: UInt64, waiter: VoidWaiter)] = []
    private var nextVoidWaiter: UInt64 = 0

    init(messageWindow: Int) {
        self.messageWindow = messageWindow
        credit = messageWindow
    }

    /// Reading side: a message came. False if the sender went over its credit (the
    /// connection must end: it does not keep to the protocol); else the reader to resume.
    mutating func messageArrived(_ message: [UInt8]) -> (accepted: Bool, reader: MessageWaiter?) {
        guard messages.count - messageHead < messageWindow else { return (false, nil) }
        if let waiter = messageWaiter {
            messageWaiter = nil
            readSinceGrant += 1
            return (true, waiter)
        }
        messages.append(message)
        return (true, nil)
    }

    /// What a reader gets now.
    enum MessageTake {
        /// This message, and credit to grant the sender (0: none yet).
        case message([UInt8], grant: Int)
        /// Nothing more comes: the connection ended.
        case ended(any Error)
        /// Nothing yet: the waiter was kept.
        case wait
        /// Another reader waits already.
        case busy
    }

    /// Reading side: the next message, or the end, or keep `waiter` until one comes.
    mutating func nextMessage(_ waiter: MessageWaiter) -> MessageTake {
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
            readSinceGrant += 1
            return .message(message, grant: takeGrant())
        }
        if case .ended(let error) = phase { return .ended(error) }
        guard messageWaiter == nil else { return .busy }
        messageWaiter = waiter
        return .wait
    }

    /// Reading side: credit to grant after a reader was resumed with a message directly.
    mutating func takeGrant() -> Int {
        guard readSinceGrant >= messageWindow / 2 else { return 0 }
        defer { readSinceGrant = 0 }
        return readSinceGrant
    }

    /// Reading side: the reader went away (its task was cancelled): the waiter to resume.
    mutating func withdrawMessageWaiter() -> MessageWaiter? {
        defer { messageWaiter = nil }
        return messageWaiter
    }

    /// Sending side: take one credit, or wait (`waiter` kept under `id`; returns false), or
    /// fail with the end.
    mutating func takeCredit(_ id: UInt64, _ waiter: VoidWaiter) -> Result<Bool, any Error> {
        if case .ended(let error) = phase { return .failure(error) }
        if credit > 0, creditWaiters.isEmpty {
            credit -= 1
            return .success(true)
        }
        creditWaiters.append((id, waiter))
        return .success(false)
    }

    /// Sending side: an ID for a credit wait (for its cancellation).
    mutating func makeCreditWaitID() -> UInt64 {
        nextVoidWaiter += 1
        return nextVoidWaiter
    }

    /// Sending side: credit came; the senders that may go now (each has taken its credit).
    mutating func granted(_ count: Int) -> [VoidWaiter] {
        credit = min(credit + count, messageWindow)
        var resumed: [VoidWaiter] = []
        while credit > 0, !creditWaiters.isEmpty {
            credit -= 1
            resumed.append(creditWaiters.removeFirst().waiter)
        }
        return resumed
    }

    /// Sending side: a sender gave up waiting: its waiter, if it still waited.
    mutating func withdrawCreditWaiter(_ id: UInt64) -> VoidWaiter? {
        guard let index = creditWaiters.firstIndex(where: { $0.id == id }) else { return nil }
        return creditWaiters.remove(at: index).waiter
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
        ended.reader = messageWaiter
        messageWaiter = nil
        ended.senders = creditWaiters.map(\.waiter)
        creditWaiters = []
        ended.running = running.values.compactMap { call in
            if case .task(let task) = call { return task }
            return nil
        }
        return ended
    }
}
