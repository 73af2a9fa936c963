import Dispatch

/// The one I/O reactor: a serial queue that every channel, stderr pipe and pidfd source runs on.
///
/// No thread per child and no blocking call on the cooperative pool: sources on this queue
/// read until `EAGAIN` and resume the continuations that wait for what arrived.
enum Reactor {
    static let queue = DispatchQueue(label: "processing.reactor", qos: .userInitiated)

    /// Runs `body` after `delay` on the reactor queue (listen/wait time-outs).
    static func after(_ delay: Duration, _ body: @escaping @Sendable () -> Void) {
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(clamping: nanoseconds)), execute: body)
    }
}
