import Dispatch
import Synchronization

/// Waits until a nonblocking socket can be read or written, without blocking a thread.
///
/// Resources users hold (`TCPConnection`) use a Dispatch source per wait rather than the
/// library's reactor: they are off the message path, where the reactor's one thread
/// matters, and Dispatch already multiplexes a reader and a writer on one descriptor and
/// cancels a wait cleanly.
enum SocketReadiness {
    private static let queue = DispatchQueue(label: "processing.socket-readiness")

    /// A Dispatch source, which may be activated and cancelled from any thread.
    private final class Source: @unchecked Sendable {  // DispatchSource synchronizes itself
        let source: any DispatchSourceProtocol
        init(_ source: any DispatchSourceProtocol) { self.source = source }
        func cancel() { source.cancel() }
    }

    static func wait(for fd: Int32, writable: Bool) async throws {
        let source = Source(writable ? DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
                                     : DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue))
        // The continuation, until the first of readiness and cancellation takes it.
        let pending = Mutex<CheckedContinuation<Void, any Error>?>(nil)
        let cancelled = Atomic<Bool>(false)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                pending.withLock { $0 = continuation }
                source.source.setEventHandler {
                    source.cancel()
                    pending.withLock { $0.take() }?.resume()
                }
                source.source.activate()
                if cancelled.load(ordering: .acquiring) {
                    source.cancel()
                    pending.withLock { $0.take() }?.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            cancelled.store(true, ordering: .releasing)
            source.cancel()
            pending.withLock { $0.take() }?.resume(throwing: CancellationError())
        }
    }
}
