import Dispatch
import Synchronization

/// Runs a handler once after a delay, unless cancelled first: every time-out in the library
/// (listen, wait, section time-outs, joinIn, item time-outs).
///
/// A Dispatch timer source, cancelled when the wait it bounds ends another way: cancelling
/// releases the handler and what it captured at once, where a `DispatchQueue.asyncAfter` block
/// would keep its captures (a mailbox, a process) alive until its deadline, an hour later for
/// `listen(timeout: .seconds(3600))`. The timer holds the handler itself and drops it in
/// `cancel`: Dispatch releases a cancelled source's event block later, on its queue (found
/// under ThreadSanitizer's slower schedule, where a test saw the mailbox still alive).
final class OneShotTimer: @unchecked Sendable {  // `source`: immutable, and Dispatch sources are thread-safe; `handler`: a Mutex
    /// Where handlers run: they only take locks and resume continuations.
    private static let queue = DispatchQueue(label: "processing.timers")

    private let source: any DispatchSourceTimer
    /// What runs when the timer fires; nil once it fired or was cancelled (then it is no
    /// longer armed).
    private let handler: Mutex<(@Sendable () -> Void)?>

    /// How many timers of this process are armed (neither fired nor cancelled): what a wait
    /// that ended without cancelling its timer would leave behind.
    static var armed: Int { armedCount.load(ordering: .relaxed) }
    private static let armedCount = Atomic<Int>(0)

    /// Starts a timer that runs `handler` after `delay` (at once for a delay of zero or less).
    init(after delay: Duration, _ handler: @escaping @Sendable () -> Void) {
        _ = Syscall.standardStreamsReserved  // Dispatch may open its timerfd now
        Self.armedCount.add(1, ordering: .relaxed)
        self.handler = Mutex(handler)
        source = DispatchSource.makeTimerSource(queue: Self.queue)
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let total = nanoseconds.overflow ? Int64.max : nanoseconds.partialValue &+ max(0, attoseconds) / 1_000_000_000
        source.schedule(deadline: .now() + .nanoseconds(Int(clamping: total)), leeway: .microseconds(50))
        // The source keeps this timer until it releases its event block, after the timer
        // fired or was cancelled; the handler itself goes at once (`cancel`).
        source.setEventHandler { [self] in
            let handler = takeHandler()
            source.cancel()
            handler?()
        }
        source.activate()
    }

    /// Stops the timer if it has not fired; its handler is released. Any thread, any number
    /// of times.
    func cancel() {
        source.cancel()
        _ = takeHandler()  // released here, outside the lock
    }

    /// The handler, once: whoever takes it (the firing or the first cancel) disarms the timer.
    private func takeHandler() -> (@Sendable () -> Void)? {
        let taken = handler.withLock { handler in
            defer { handler = nil }
            return handler
        }
        if taken != nil { Self.armedCount.subtract(1, ordering: .relaxed) }
        return taken
    }
}
