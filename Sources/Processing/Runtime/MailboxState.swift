/// A mailbox's state machine: the messages queued, the listens waiting, and what each event
/// does to them. Pure: no lock, no continuation, no I/O. `Mailbox` runs it under its lock and
/// performs what it returns; it is generic over the waiter so that its tests need no process.
///
/// - A message goes to the first waiting listen for its type. When none waits for it, it is
///   queued; a listen takes the first queued message, or fails with a mismatch (consuming
///   nothing) when that is of another type. So a message queued while only listens for other
///   types wait makes those listens fail, as if they had just begun.
/// - Closed (the channel ended): a listen that finds nothing queued fails with the error.
///   Stopped (the child was asked to stop): it returns nil. Both are sticky, and queued
///   messages are still taken first.
/// - Attached to a channel, it holds at most `capacity` bytes of queued messages: past that it
///   says `.pause`, and `.resume` once half is listened for.
struct MailboxState<Waiter> {
    /// A listen waiting for a message.
    struct Listen {
        let id: UInt64
        /// The mangled name of the type it asked for (nil: the type has none, and no message
        /// can be of it).
        let typeName: String?
        let waiter: Waiter
    }

    /// A change to the feeding channel's reading, for the storage to apply in order.
    enum FlowChange: Equatable {
        case pause
        case resume
    }

    /// What a delivered message did.
    enum Delivery {
        /// Handed to this waiting listen.
        case handed(to: Listen)
        /// Queued. `failing`: the listens waiting for other types, which fail now because
        /// this message is first in line.
        case queued(failing: [Listen])
        /// Dropped (no one can listen); `reason` on the first drop only, to say it once.
        case dropped(firstReason: String?)
    }

    /// What a listen finds at once, without waiting.
    enum Found {
        /// The first queued message, of the type asked for: consumed.
        case message(Message)
        /// The first queued message is of another type: not consumed.
        case mismatch(Message)
        /// Nothing queued, and the mailbox is closed.
        case closed(ProcessingError)
        /// Nothing queued, and a stop came: the listen returns nil.
        case stopped
        /// The listen's task was cancelled before it could wait.
        case cancelled
    }

    private var messages: [Message] = []
    private var head = 0
    /// Bytes of the queued messages (bodies and type names).
    private(set) var queuedBytes = 0
    private var listens: [Listen] = []
    private var nextID: UInt64 = 1
    private var closedError: ProcessingError?
    private(set) var isStopped = false
    private var attached = false
    private(set) var isPaused = false
    private var dropReason: String?
    private(set) var dropped = 0

    /// How many listens wait.
    var waitingCount: Int { listens.count }

    private var first: Message? { head < messages.count ? messages[head] : nil }

    // MARK: Events

    /// A new listen's id.
    mutating func makeListenID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    /// A channel now feeds this mailbox (a retried process's replaces the last one).
    mutating func attach(capacity: Int) -> FlowChange? {
        attached = true
        isPaused = queuedBytes > capacity
        return isPaused ? .pause : nil
    }

    /// From now on, messages are dropped on arrival.
    mutating func dropMessages(because reason: String) {
        dropReason = reason
    }

    mutating func deliver(_ message: Message, capacity: Int) -> (Delivery, FlowChange?) {
        if let dropReason {
            dropped += 1
            return (.dropped(firstReason: dropped == 1 ? dropReason : nil), nil)
        }
        if let index = listens.firstIndex(where: { $0.typeName == message.typeName }) {
            return (.handed(to: listens.remove(at: index)), nil)
        }
        messages.append(message)
        queuedBytes += message.cost
        var flow: FlowChange?
        if attached, !isPaused, queuedBytes > capacity {
            isPaused = true
            flow = .pause
        }
        // Now first in line: the listens still waiting (all for other types) fail, as a listen
        // that began now would.
        var failing: [Listen] = []
        if first?.typeName == message.typeName {
            failing = listens
            listens.removeAll()
        }
        return (.queued(failing: failing), flow)
    }

    /// What a listen for `typeName` finds without waiting; nil when it must wait.
    mutating func find(_ typeName: String?, cancelled: Bool = false, capacity: Int) -> (Found, FlowChange?)? {
        if cancelled { return (.cancelled, nil) }
        if let first {
            guard first.typeName == typeName else { return (.mismatch(first), nil) }
            return takeFirst(capacity: capacity)
        }
        if let closedError { return (.closed(closedError), nil) }
        if isStopped { return (.stopped, nil) }
        return nil
    }

    /// Finds as `find` does, or, when that would wait, makes the listen wait (`makeWaiter` is
    /// called then only). `cancelled`: the listen's task was cancelled before this.
    mutating func register(
        id: UInt64, typeName: String?, cancelled: Bool, capacity: Int, makeWaiter: () -> Waiter
    ) -> (Found, FlowChange?)? {
        if let found = find(typeName, cancelled: cancelled, capacity: capacity) { return found }
        listens.append(Listen(id: id, typeName: typeName, waiter: makeWaiter()))
        return nil
    }

    /// The listen `id` stops waiting (cancelled, or its time-out fired); nil if it no longer
    /// waits (a message or an end reached it first).
    mutating func withdraw(_ id: UInt64) -> Listen? {
        guard let index = listens.firstIndex(where: { $0.id == id }) else { return nil }
        return listens.remove(at: index)
    }

    /// A stop came: every waiting listen returns nil, and so does every later one that finds
    /// nothing queued.
    mutating func stop() -> [Listen] {
        isStopped = true
        defer { listens.removeAll() }
        return listens
    }

    /// The channel ended: every waiting listen fails with `error` (the first error is kept),
    /// and so does every later one that finds nothing queued.
    mutating func close(_ error: ProcessingError) -> (failing: [Listen], error: ProcessingError) {
        if closedError == nil { closedError = error }
        attached = false
        defer { listens.removeAll() }
        return (listens, error)
    }

    // MARK: Queue

    private mutating func takeFirst(capacity: Int) -> (Found, FlowChange?) {
        let message = messages[head]
        head += 1
        queuedBytes -= message.cost
        if head > 64 && head * 2 > messages.count {
            messages.removeFirst(head)
            head = 0
        }
        var flow: FlowChange?
        if isPaused, queuedBytes <= capacity / 2 {
            isPaused = false
            flow = attached ? .resume : nil
        }
        return (.message(message), flow)
    }
}

extension Message {
    /// What a queued message costs the mailbox, in bytes.
    var cost: Int { body.count + typeName.utf8.count }
}
