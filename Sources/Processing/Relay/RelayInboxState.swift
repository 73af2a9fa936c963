/// The receiving side of a relay stage as a pure state machine: batches in arrival order from
/// every inbound connection, end of stream counted per connection, and the credit owed back.
///
/// `RelayInbox` is its storage: it locks, asks, and acts outside the lock.
struct RelayInboxState<Batch, Waiter> {
    /// What `next` decided.
    enum Next {
        /// A batch, or nil: every connection has ended cleanly and nothing is left.
        case now(Result<Batch?, any Error>)
        case registered
    }

    private var queue: [(link: Int, batch: Batch)] = []
    private var head = 0
    private var ended: [Bool]
    private var endedCount = 0
    private var failure: (any Error)?
    private var waiter: (id: UInt64, waiter: Waiter)?
    private var ungranted: [Int]
    private let grantThreshold: Int

    /// Per connection: whether its sender may be restarted (then its end is not a failure:
    /// a new connection from its next process comes with `relink`).
    private let restartable: [Bool]
    /// Per connection: how many times it was replaced. Credit for a batch that came on an
    /// earlier one is not granted on the new one (its sender is gone; the new one starts with
    /// a whole window).
    private(set) var generations: [Int]

    /// `grantsEveryBatch`: this side may be restarted, so its senders keep what they sent
    /// until it is credited; credit after every batch, so that they keep (and would send
    /// again) as little as they can.
    /// Batches queued per connection (and not yet handed out), and the most there may be: a
    /// sender that keeps to its credit never has more than `window` batches waiting (twice
    /// that just after a restart: the old sender's and the new one's), so one that sends more
    /// is ignoring it, and fails its connection instead of growing this process.
    private var queuedPerLink: [Int]
    private let window: Int
    private let peers: [String]

    init(links: Int, window: Int, restartable: [Bool]? = nil, grantsEveryBatch: Bool = false, peers: [String]? = nil) {
        queuedPerLink = Array(repeating: 0, count: links)
        self.window = window
        self.peers = peers ?? Array(repeating: "a sender", count: links)
        ended = Array(repeating: false, count: links)
        ungranted = Array(repeating: 0, count: links)
        // Credit goes back in a few steps per window, so that the sender keeps sending while
        // this stage works, without a frame per message.
        grantThreshold = grantsEveryBatch ? 1 : max(1, window / 4)
        self.restartable = restartable ?? Array(repeating: false, count: links)
        generations = Array(repeating: 0, count: links)
    }

    private var isDone: Bool { endedCount == ended.count && head == queue.count }

    /// A batch arrived on `link`; returns the waiter to hand it to.
    mutating func arrived(_ batch: Batch, on link: Int) -> (Waiter, Result<Batch?, any Error>)? {
        guard failure == nil, queuedPerLink.indices.contains(link) else { return nil }
        if let waiter {
            self.waiter = nil
            return (waiter.waiter, .success(batch))
        }
        guard queuedPerLink[link] < 2 * window else {
            failure = ProcessingError(.malformedFrame, """
                \(peers[link]) sent more batches than it had credit for (\(2 * window) waiting): it ignores the \
                relay's backpressure, so its connection was failed rather than letting this process grow
                """)
            queue = []
            head = 0
            return nil
        }
        queuedPerLink[link] += 1
        queue.append((link, batch))
        return nil
    }

    /// `link` ended: cleanly (its end of stream came) or not (`error`). Returns the waiter to
    /// resume and with what.
    mutating func ended(_ link: Int, generation: Int, error: (any Error)?) -> (Waiter, Result<Batch?, any Error>)? {
        guard ended.indices.contains(link), !ended[link], generations[link] == generation else { return nil }
        // Its sender died and will be restarted: the connection is replaced, not ended.
        if error != nil, restartable[link] { return nil }
        ended[link] = true
        endedCount += 1
        if let error, failure == nil {
            failure = error
            queue = []
            head = 0
        }
        guard let waiter else { return nil }
        if let failure {
            self.waiter = nil
            return (waiter.waiter, .failure(failure))
        }
        if isDone {
            self.waiter = nil
            return (waiter.waiter, .success(nil))
        }
        return nil
    }

    /// `link` is replaced by a connection from its sender's next process; returns its
    /// generation. A connection that had ended opens again (the new process sends its own end).
    mutating func relink(_ link: Int) -> Int {
        guard generations.indices.contains(link) else { return 0 }
        generations[link] += 1
        ungranted[link] = 0
        if ended[link] {
            ended[link] = false
            endedCount -= 1
        }
        return generations[link]
    }

    /// The next batch, or a registered wait for it.
    mutating func next(id: UInt64, _ waiter: Waiter) -> Next {
        if let failure { return .now(.failure(failure)) }
        if head < queue.count {
            let (link, batch) = queue[head]
            queuedPerLink[link] -= 1
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            return .now(.success(batch))
        }
        if isDone { return .now(.success(nil)) }
        self.waiter = (id, waiter)
        return .registered
    }

    /// The waiting receiver `id` was cancelled.
    mutating func cancel(id: UInt64) -> Waiter? {
        guard let waiter, waiter.id == id else { return nil }
        self.waiter = nil
        return waiter.waiter
    }

    /// The stage is done with `count` messages from `link`: the credit to grant now, if any.
    mutating func consumed(_ count: Int, from link: Int, generation: Int) -> Int? {
        // Also after its end of stream came (it comes right behind the last batches): a sender
        // that keeps what it sent waits for this credit before it exits.
        guard ungranted.indices.contains(link), generations[link] == generation else { return nil }
        ungranted[link] += count
        guard ungranted[link] >= grantThreshold else { return nil }
        defer { ungranted[link] = 0 }
        return ungranted[link]
    }

    /// Fails the inbox (cancellation, a stop): the waiter, to resume with `error`.
    mutating func fail(_ error: any Error) -> Waiter? {
        if failure == nil { failure = error }
        defer { waiter = nil }
        return waiter?.waiter
    }
}
