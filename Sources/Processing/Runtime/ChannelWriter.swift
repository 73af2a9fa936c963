/// The write side of a channel: frames waiting to go out (the first may be partly written) and
/// the senders waiting for theirs.
///
/// A pure state machine: the channel holds it under its writer lock, passes in the nonblocking
/// write to perform, and resumes the continuations it hands back outside the lock.
///
/// - A sender whose frame went out at once never waits.
/// - A sender that is cancelled gets `CancellationError` at once. Its frame is withdrawn if no
///   byte of it was written; a frame already begun is finished (a frame cannot be cut), so
///   that the frames after it stay readable.
/// - An urgent frame (a stop) goes ahead of every frame not yet begun, behind other urgent ones.
/// - After a write fails, every waiting and later sender gets the failure.
struct ChannelWriter {
    typealias Waiter = CheckedContinuation<Void, any Error>

    /// Writes as much of `bytes` as the socket takes now, with `attachments` on the first byte;
    /// returns how many it took (0: it would block). What it throws ends the channel.
    typealias Write = (UnsafeRawBufferPointer, AttachedDescriptors?) throws -> Int

    private struct Pending {
        let ticket: UInt64
        let bytes: [UInt8]
        var offset: Int
        /// Sent with the first byte; kept alive until then.
        var attachments: AttachedDescriptors?
        let urgent: Bool
        /// Its sender stopped waiting (cancelled) after part of it was written.
        var abandoned = false
    }

    /// What `send` did with a frame.
    enum Sent: Equatable {
        /// All of it is written.
        case done
        /// It waits in the queue under this ticket; `wait(for:_:)` until it is out.
        case queued(UInt64)
    }

    private var queue: [Pending] = []
    private var waiters: [UInt64: Waiter] = [:]
    /// Tickets whose frames were dropped by a failure before their sender waited.
    private var failedTickets: Set<UInt64> = []
    private var nextTicket: UInt64 = 1
    private(set) var failure: ProcessingError?
    /// Bytes queued and not yet written.
    private(set) var queuedBytes = 0

    /// Whether frames wait for the socket to become writable.
    var hasPending: Bool { !queue.isEmpty }

    /// Sends a frame: written now if nothing is queued ahead of it and the socket takes it,
    /// otherwise queued. Throws the channel's failure, or what the write threw (the failure
    /// from then on).
    ///
    /// A frame whose sender will not `wait` for it (`waits: false`, a stop posted without
    /// waiting) goes out all the same, or is dropped silently if the channel ends first.
    mutating func send(_ bytes: [UInt8], attachments: AttachedDescriptors?, urgent: Bool, waits: Bool = true,
                       write: Write) throws(ProcessingError) -> Sent {
        if let failure { throw failure }
        var offset = 0
        if queue.isEmpty {
            do {
                offset = try bytes.withUnsafeBytes { try write($0, attachments) }
            } catch {
                let error = Self.failure(error)
                failure = error
                throw error
            }
            if offset == bytes.count { return .done }
        }
        let ticket = nextTicket
        nextTicket += 1
        let pending = Pending(ticket: ticket, bytes: bytes, offset: offset,
                              attachments: offset == 0 ? attachments : nil, urgent: urgent, abandoned: !waits)
        queuedBytes += bytes.count - offset
        if urgent {
            var index = queue.first.map { $0.offset > 0 ? 1 : 0 } ?? 0
            while index < queue.count, queue[index].urgent { index += 1 }
            queue.insert(pending, at: index)
        } else {
            queue.append(pending)
        }
        return .queued(ticket)
    }

    /// A sender waits for its queued frame: the outcome now, or nil once `waiter` is kept
    /// (it is resumed by `flush`, `cancel` or `fail`).
    mutating func wait(for ticket: UInt64, _ waiter: Waiter) -> Result<Void, any Error>? {
        if failedTickets.remove(ticket) != nil { return .failure(failure!) }
        guard queue.contains(where: { $0.ticket == ticket }) else { return .success(()) }
        waiters[ticket] = waiter
        return nil
    }

    /// The sender of `ticket` was cancelled (before or while it waited): its waiter, if it
    /// was waiting, to resume with `CancellationError`. Its frame is withdrawn unless part of
    /// it is out already.
    mutating func cancel(_ ticket: UInt64) -> Waiter? {
        failedTickets.remove(ticket)
        if let index = queue.firstIndex(where: { $0.ticket == ticket }) {
            if queue[index].offset == 0 {
                queuedBytes -= queue.remove(at: index).bytes.count
            } else {
                queue[index].abandoned = true
            }
        }
        return waiters.removeValue(forKey: ticket)
    }

    /// The socket takes bytes again: writes queued frames until it would block. Returns the
    /// senders to resume, with nil (their frame is out) or the error that ended the channel.
    mutating func flush(write: Write) -> [(Waiter, (any Error)?)] {
        var resumed: [(Waiter, (any Error)?)] = []
        while var first = queue.first {
            do {
                let (offset, attachments) = (first.offset, first.attachments)
                let written = try first.bytes.withUnsafeBytes { buffer in
                    try write(UnsafeRawBufferPointer(rebasing: buffer[offset...]), attachments)
                }
                first.offset += written
                queuedBytes -= written
                if written > 0 { first.attachments = nil }
            } catch {
                return resumed + fail(Self.failure(error))
            }
            guard first.offset == first.bytes.count else {
                queue[0] = first
                break
            }
            queue.removeFirst()
            if let waiter = waiters.removeValue(forKey: first.ticket) { resumed.append((waiter, nil)) }
        }
        return resumed
    }

    private static func failure(_ error: any Error) -> ProcessingError {
        error as? ProcessingError ?? ProcessingError(.channelClosed, "writing to the other process failed (\(error))")
    }

    /// The channel is closed or broken: every queued frame is dropped. Returns the waiting
    /// senders, to resume with `error`.
    mutating func fail(_ error: ProcessingError) -> [(Waiter, (any Error)?)] {
        if failure == nil { failure = error }
        for pending in queue where waiters[pending.ticket] == nil && !pending.abandoned { failedTickets.insert(pending.ticket) }
        queue = []
        queuedBytes = 0
        defer { waiters = [:] }
        return waiters.values.map { ($0, failure!) }
    }
}
