/// The sending side of a relay stage as a pure state machine: per connection, the credit the
/// receiver granted (how many more messages it will take) and the messages not yet sent.
///
/// `RelayOutbox` is its storage: it locks, asks, and acts (encodes, writes, resumes) outside
/// the lock.
///
/// `offer` runs for every message a stage sends, so it is inlinable (with what it touches):
/// specialised in the stage's own module for its `Output`, it needs no generic metadata at run
/// time, which unspecialised it looked up several times per message (a fifth of the CPU).
@usableFromInline
struct RelayOutboxState<Element, Waiter> {
    /// What `offer` decided for one message.
    @usableFromInline
    enum Offer: Equatable {
        /// Queued; nothing to do now.
        case queued
        /// Queued, and that connection's batch is full: flush it now.
        case flush(link: Int)
        /// Queued as the first of a batch: schedule a flush soon.
        case scheduleFlush
        /// No connection has credit: flush everything and wait for credit.
        case noCredit
        /// The outbox failed (a receiver went away) or was finished.
        case failed
    }

    /// What a wait for credit decided.
    enum WaitDecision {
        case resumeNow
        case failNow(any Error)
        case registered
    }

    @usableFromInline
    var credits: [Int]
    @usableFromInline
    var pending: [[Element]]
    /// The sequence number of the first pending message, per connection.
    @usableFromInline
    var nextSequence: [UInt64]
    @usableFromInline
    let batchLimit: Int
    /// Whether `offer` asks for a deferred flush when a batch begins (a loop stage, a feed);
    /// a recv stage flushes after each batch it received instead.
    @usableFromInline
    var defersFlushes: Bool
    @usableFromInline
    var flushScheduled = false
    @usableFromInline
    var waiters: [(id: UInt64, waiter: Waiter)] = []
    @usableFromInline
    var failure: (any Error)?
    @usableFromInline
    var finished = false
    @usableFromInline
    var rotation = 0

    /// A batch sent to a receiver that may be restarted, kept until it is credited back.
    typealias SentBatch = (sequence: UInt64, values: [Element])

    private let window: Int
    /// Per connection: whether its receiver may be restarted (a stage with lives), so that
    /// what was sent and not yet credited back is kept, to be sent again to its next process.
    private let retains: [Bool]
    private var unacknowledged: [[SentBatch]]
    /// Per connection: its receiver died and is being replaced (no credit until it is).
    private var down: [Bool]

    init(links: Int, window: Int, batchLimit: Int, defersFlushes: Bool, retains: [Bool]? = nil) {
        credits = Array(repeating: window, count: links)
        pending = Array(repeating: [], count: links)
        nextSequence = Array(repeating: 0, count: links)
        self.batchLimit = max(1, batchLimit)
        self.defersFlushes = defersFlushes
        self.window = window
        self.retains = retains ?? Array(repeating: false, count: links)
        unacknowledged = Array(repeating: [], count: links)
        down = Array(repeating: false, count: links)
    }

    /// Whether the receiver on `link` may be restarted.
    func isRetained(_ link: Int) -> Bool { retains.indices.contains(link) && retains[link] }

    /// Whether every message sent on a retaining connection was credited back: then no
    /// receiver can need any of it again, and a finished sender may exit.
    var allAcknowledged: Bool {
        !down.contains(true) && unacknowledged.allSatisfy(\.isEmpty) && pending.allSatisfy(\.isEmpty)
    }

    /// Queues `value` on the connection with the most credit (ties taken in turn), so a
    /// receiver that keeps up gets more: demand decides where messages go.
    @inlinable
    mutating func offer(_ value: Element) -> Offer {
        guard failure == nil, !finished else { return .failed }
        var best = -1
        var bestCredit = 0
        let count = credits.count
        for step in 0..<count {
            let link = (rotation + step) % count
            if credits[link] > bestCredit { (best, bestCredit) = (link, credits[link]) }
        }
        guard best >= 0 else { return .noCredit }
        rotation = (best + 1) % count
        credits[best] -= 1
        pending[best].append(value)
        if pending[best].count >= batchLimit { return .flush(link: best) }
        if defersFlushes, !flushScheduled {
            flushScheduled = true
            return .scheduleFlush
        }
        return .queued
    }

    /// The pending batch of `link` with its first sequence number; empties it.
    mutating func take(_ link: Int) -> (sequence: UInt64, values: [Element])? {
        guard !pending[link].isEmpty else { return nil }
        let values = pending[link]
        pending[link] = []
        let sequence = nextSequence[link]
        nextSequence[link] += UInt64(values.count)
        if retains[link] { unacknowledged[link].append((sequence, values)) }
        return (sequence, values)
    }

    /// Every pending batch; clears the scheduled flush.
    mutating func takeAll() -> [(link: Int, sequence: UInt64, values: [Element])] {
        flushScheduled = false
        var batches: [(link: Int, sequence: UInt64, values: [Element])] = []
        for link in pending.indices {
            if let batch = take(link) { batches.append((link, batch.sequence, batch.values)) }
        }
        return batches
    }

    /// The receiver on `link` took `count` messages: it has room for that many more.
    mutating func credit(_ count: Int, on link: Int) -> [Waiter] {
        guard credits.indices.contains(link), !down[link], count >= 0 else { return [] }
        // A receiver never has room for more than the window; one that says so is wrong.
        credits[link] = min(window, credits[link] + min(count, window))
        if retains[link] {
            // Credit comes back in order: the oldest batches were handled.
            var remaining = count
            while remaining > 0, !unacknowledged[link].isEmpty {
                let first = unacknowledged[link][0]
                if first.values.count <= remaining {
                    remaining -= first.values.count
                    unacknowledged[link].removeFirst()
                } else {
                    unacknowledged[link][0] = (first.sequence + UInt64(remaining), Array(first.values.dropFirst(remaining)))
                    remaining = 0
                }
            }
        }
        defer { waiters = [] }
        return waiters.map(\.waiter)
    }

    /// The receiver on a retaining `link` died: nothing goes to it until `relink`.
    mutating func linkDown(_ link: Int) {
        guard down.indices.contains(link) else { return }
        down[link] = true
        credits[link] = 0
    }

    /// The receiver on `link` has a new process: what it had not credited back goes to it
    /// again, in order, but for the message numbered `dropping` (one that killed it twice),
    /// and it has room for the rest of its window.
    mutating func relink(_ link: Int, dropping: UInt64?) -> [SentBatch] {
        guard down.indices.contains(link) else { return [] }
        var resent: [SentBatch] = []
        for batch in unacknowledged[link] {
            if let dropping, dropping >= batch.sequence, dropping < batch.sequence + UInt64(batch.values.count) {
                let cut = Int(dropping - batch.sequence)
                if cut > 0 { resent.append((batch.sequence, Array(batch.values[..<cut]))) }
                if cut + 1 < batch.values.count { resent.append((dropping + 1, Array(batch.values[(cut + 1)...]))) }
            } else {
                resent.append(batch)
            }
        }
        unacknowledged[link] = resent
        down[link] = false
        credits[link] = max(0, window - resent.reduce(0) { $0 + $1.values.count } - pending[link].count)
        return resent
    }

    /// What a sender waits for.
    enum WaitCondition {
        /// Credit on some connection (a `send` that found none).
        case credit
        /// Every retaining connection credited back (a finished sender, before it exits).
        case acknowledgements
    }

    /// A sender waits until `condition` holds, unless it holds already.
    mutating func wait(until condition: WaitCondition, id: UInt64, _ waiter: Waiter) -> WaitDecision {
        if let failure { return .failNow(failure) }
        switch condition {
        case .credit where credits.contains(where: { $0 > 0 }), .acknowledgements where allAcknowledged:
            return .resumeNow
        case .credit, .acknowledgements:
            waiters.append((id, waiter))
            return .registered
        }
    }

    /// The waiting sender `id` was cancelled.
    mutating func cancel(id: UInt64) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index).waiter
    }

    /// A receiver went away (or encoding failed): every send from now on fails with `error`.
    mutating func fail(_ error: any Error) -> [Waiter] {
        if failure == nil { failure = error }
        defer { waiters = [] }
        return waiters.map(\.waiter)
    }

    /// After the last message: the end of stream goes out next; later sends fail.
    mutating func finish() {
        finished = true
    }
}
