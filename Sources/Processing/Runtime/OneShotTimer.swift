import Dispatch

/// Runs a handler once after a delay, unless cancelled first: every time-out in the library
/// (listen, wait, section time-outs, joinIn, item time-outs).
///
/// A Dispatch timer source, cancelled when the wait it bounds ends another way: cancelling
/// releases the handler and what it captured at once, where a `DispatchQueue.asyncAfter` block
/// would keep its captures (a mailbox, a process) alive until its deadline, an hour later for
/// `listen(timeout: .seconds(3600))`.
final class OneShotTimer: @unchecked Sendable {  // `source`: immutable, and Dispatch sources are thread-safe
    /// Where handlers run: they only take locks and resume continuations.
    private static let queue = DispatchQueue(label: "processing.timers")

    private let source: any DispatchSourceTimer

    /// Starts a timer that runs `handler` after `delay` (at once for a delay of zero or less).
    init(after delay: Duration, _ handler: @escaping @Sendable () -> Void) {
        _ = Syscall.standardStreamsReserved  // Dispatch may open its timerfd now
        source = DispatchSource.makeTimerSource(queue: Self.queue)
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let total = nanoseconds.overflow ? Int64.max : nanoseconds.partialValue &+ max(0, attoseconds) / 1_000_000_000
        source.schedule(deadline: .now() + .nanoseconds(Int(clamping: total)), leeway: .microseconds(50))
        // The source keeps the handler until it is cancelled; firing cancels it too.
        source.setEventHandler { [source] in
            source.cancel()
            handler()
        }
        source.activate()
    }

    /// Stops the timer if it has not fired; its handler is released. Any thread, any number
    /// of times.
    func cancel() {
        source.cancel()
    }
}
