import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Writes the lines children print (forwarded, `ChildOutput.forward`) through this process's
/// own C `stdout`, and flushes it after each: the program's own `print`s and the children's
/// lines share one buffer, so they come out in the order they were made, even into a pipe
/// (where stdio would otherwise hold the program's prints back until exit).
///
/// The writes happen on a serial queue of their own, which may block while stdout is full; the
/// reactor only hands lines over. At most `capacity` bytes wait; a line that does not fit is
/// dropped whole, counted, and the count reported on stderr once stdout takes bytes again. A
/// stdout with no reader (`EPIPE`) takes nothing more.
final class StdoutWriter: Sendable {
    static let shared = StdoutWriter()

    /// The most bytes of lines waiting to be written.
    static let capacity = 256 * 1024

    private struct State {
        var lines: [[UInt8]] = []
        var bytes = 0
        var dropped = 0
        var draining = false
        var gone = false
    }

    private final class Once: Sendable {
        let done = Atomic(false)
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "processing.stdout")

    /// Queues a whole line (newline included). Any thread; never waits.
    func write(line: [UInt8]) {
        let start: Bool = state.withLock { state in
            guard !state.gone, state.bytes + line.count <= Self.capacity else {
                state.dropped += line.count
                return false
            }
            state.lines.append(line)
            state.bytes += line.count
            defer { state.draining = true }
            return !state.draining
        }
        if start { queue.async { [self] in drain() } }
    }

    /// Runs `body` once every line queued before this call is written (or dropped), or once
    /// `limit` has passed, whichever comes first: a process's end waits for its last lines, so
    /// that what the program prints after it comes after them, but not for a stalled stdout.
    func whenWritten(within limit: Duration = .seconds(1), _ body: @escaping @Sendable () -> Void) {
        let once = Once()
        let run: @Sendable () -> Void = {
            if !once.done.exchange(true, ordering: .acquiringAndReleasing) { body() }
        }
        let timer = OneShotTimer(after: limit, run)
        queue.async {
            timer.cancel()
            run()
        }
    }

    private func drain() {
        while true {
            let (lines, dropped): ([[UInt8]], Int) = state.withLock { state in
                if state.lines.isEmpty { state.draining = false }
                defer { (state.lines, state.dropped) = ([], 0) }
                return (state.lines, state.dropped)
            }
            if lines.isEmpty && dropped == 0 { return }
            var lost = 0
            for line in lines {
                let failed = line.withUnsafeBytes { buffer -> Int32? in
                    do {
                        try Syscall.writeThroughStandardOutput(buffer)
                        return nil
                    } catch {
                        return (error as? SystemError)?.errno ?? EIO
                    }
                }
                if let failed, failed == EPIPE || failed == EBADF {
                    // No reader, or no stdout: nothing will take a line again.
                    state.withLock { $0.gone = true }
                    return
                } else if failed != nil {
                    lost += line.count   // EINTR, EAGAIN (a stdout shared in nonblocking mode): this line only
                }
                // Counted until written, so that at most `capacity` waits in all.
                state.withLock { $0.bytes -= line.count }
            }
            if dropped + lost > 0 {
                OutputForwarder.standardError.forward(line: OutputForwarder.report(dropped + lost, of: "stdout"))
            }
        }
    }
}
