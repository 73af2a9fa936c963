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

    init(links: Int, window: Int, batchLimit: Int, defersFlushes: Bool) {
        credits = Array(repeating: window, count: links)
        pending = Array(repeating: [], count: links)
        nextSequence = Array(repeating: 0, count: links)
        self.batchLimit = max(1, batchLimit)
        self.defersFlushes = defersFlushes
    }

    var linkCount: Int { credits.count }

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
        guard credits.indices.contains(link) else { return [] }
        credits[link] += count
        defer { waiters = [] }
        return waiters.map(\.waiter)
    }

    /// A sender that found no credit waits for some, unless it came meanwhile.
    mutating func wait(id: UInt64, _ waiter: Waiter) -> WaitDecision {
        if let failure { return .failNow(failure) }
        if credits.contains(where: { $0 > 0 }) { return .resumeNow }
        waiters.append((id, waiter))
        return .registered
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
