#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Forwards what children write to stderr to this process's own stderr, without ever blocking
/// the reactor or raising SIGPIPE. (Their stdout goes through `StdoutWriter`, after what the
/// program itself printed.)
///
/// This process's stream may be a pipe nobody reads (a shell pipeline whose reader stalled),
/// one whose reader is gone, a terminal under flow control, a file, or closed. A blocking write
/// to the first stalls every child (the reactor is the one thread that watches them all), and a
/// write to the second kills the program with SIGPIPE. So the forwarder writes through a
/// nonblocking description of its own (a pipe, FIFO or terminal reopened,
/// `Syscall.reopenForNonblockingWrites`, which leaves fd 2's own flags alone), or with `MSG_DONTWAIT` to a socket,
/// or directly to a file; keeps at most `capacity` bytes that could not be written yet, watching
/// for writability to send them; drops what does not fit, counting it; and, once stderr takes
/// bytes again, says how many were dropped, once.
final class OutputForwarder: Sendable {
    /// To this process's stderr: children's stderr, and the library's own diagnostics.
    static let standardError = OutputForwarder()

    /// The most bytes kept while this process's stderr takes none.
    static let capacity = 256 * 1024

    private enum Target {
        case unopened
        /// A regular file or a block device: writes do not wait for a reader.
        case file(Int32)
        /// A descriptor of ours, nonblocking, on the same pipe, FIFO or terminal as fd 2.
        case reopened(Int32)
        /// fd 2 is a socket: `send` takes `MSG_DONTWAIT` and `MSG_NOSIGNAL`.
        case socket(Int32)
        /// Closed, or a pipe whose reader is gone: everything is dropped.
        case gone
    }

    private struct State {
        var target = Target.unopened
        var pending: [UInt8] = []
        var pendingStart = 0
        /// Bytes dropped since the last report.
        var droppedSinceReport = 0
        var totalDropped = 0
        /// Watching for writability while bytes are kept.
        var watch: ReactorWatch?

        var pendingCount: Int { pending.count - pendingStart }

        /// Whether the target can still take bytes (it is not gone).
        var isWritable: Bool {
            if case .gone = target { return false }
            return true
        }
    }

    private let state = Mutex(State())

    private init() {}

    /// Bytes dropped so far, in all (for tests and diagnostics).
    var droppedBytes: Int { state.withLock { $0.totalDropped } }

    /// Opens the forwarder's way to stderr now (once), so that its descriptor exists from the
    /// first child on rather than appearing when a child first writes.
    func prepare() {
        state.withLock { state in
            if case .unopened = state.target { state.target = Self.openTarget() }
        }
    }

    /// Forwards `bytes`: written now as far as the stream takes them, the rest kept (up to
    /// `capacity`) or dropped. `whole` (a line): kept whole or dropped whole, so that what
    /// comes out is never part of a line. Any thread.
    func forward(_ bytes: UnsafeRawBufferPointer, whole: Bool = false) {
        state.withLock { state in
            if case .unopened = state.target { state.target = Self.openTarget() }
            var rest = bytes
            if state.pendingCount == 0 {
                let written = Self.write(rest, to: &state)
                rest = UnsafeRawBufferPointer(rebasing: rest[written...])
            }
            guard !rest.isEmpty else { return }
            if case .gone = state.target {
                Self.drop(rest.count, &state)
                return
            }
            let room = Self.capacity - state.pendingCount
            let kept: Int
            if !whole {
                kept = min(rest.count, room)
            } else if rest.count < bytes.count {
                // Part of the line went out: the rest must follow, even past the capacity (by
                // one line at most).
                kept = rest.count
            } else {
                kept = rest.count <= room ? rest.count : 0
            }
            state.pending.append(contentsOf: rest[..<kept])
            Self.drop(rest.count - kept, &state)
            guard state.watch == nil else { return }
            if case .reopened(let fd) = state.target, watchForWritability(fd, &state) { return }
            if case .socket(let fd) = state.target, watchForWritability(fd, &state) { return }
            // Not watchable (a file does not wait; epoll refuses some descriptors): nothing
            // would flush what is kept, so drop it now.
            Self.dropKept(&state)
        }
    }

    /// Forwards a line of the library's own (a diagnostic), the same way.
    func forward(line: String) {
        var bytes = Array(line.utf8)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        bytes.withUnsafeBytes { forward($0, whole: true) }
    }

    private static func drop(_ count: Int, _ state: inout State) {
        guard count > 0 else { return }
        state.droppedSinceReport += count
        state.totalDropped += count
    }

    /// Writes what the target takes now; returns how many bytes it took.
    private static func write(_ bytes: UnsafeRawBufferPointer, to state: inout State) -> Int {
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let result: IOResult
            do {
                switch state.target {
                case .file(let fd), .reopened(let fd): result = try Syscall.writeWithoutSIGPIPE(fd, rest)
                case .socket(let fd): result = try Syscall.send(fd, rest)
                case .gone, .unopened: return offset
                }
            } catch {
                // EPIPE (the reader is gone), ENOSPC, EBADF: stderr takes nothing from now on.
                close(&state)
                return offset
            }
            guard case .transferred(let count) = result, count > 0 else { return offset }
            offset += count
        }
        return offset
    }

    private static func close(_ state: inout State) {
        // The watch first: once closed, the number may be another descriptor's, whose
        // registration a later cancel would remove.
        state.watch?.cancel()
        state.watch = nil
        if case .reopened(let fd) = state.target { Syscall.close(fd) }
        state.target = .gone
        dropKept(&state)
    }

    /// Drops (and counts) every byte kept for later.
    private static func dropKept(_ state: inout State) {
        drop(state.pendingCount, &state)
        state.pending = []
        state.pendingStart = 0
    }

    private static func openTarget() -> Target {
        let stream = STDERR_FILENO
        switch Syscall.fileType(stream) {
        case nil: return .gone
        case S_IFREG?, S_IFBLK?: return .file(stream)
        case S_IFSOCK?: return .socket(stream)
        default:
            // A pipe, a FIFO, a terminal: writes may wait, so write through a description of
            // our own that does not. ENXIO: a FIFO nobody reads any more.
            guard let fd = try? Syscall.reopenForNonblockingWrites(stream) else { return .gone }
            return .reopened(fd)
        }
    }

    // MARK: Writability

    /// Has the reactor flush what is kept once `fd` is writable; false if it cannot watch `fd`.
    private func watchForWritability(_ fd: Int32, _ state: inout State) -> Bool {
        let watch = Reactor.shared.watch(fd, onWritable: { [self] in flush() })
        guard (try? watch.want(reading: false, writing: true)) != nil else {
            watch.cancel()
            return false
        }
        state.watch = watch
        return true
    }

    /// Stderr can take bytes: write what is kept, then the drop report; stop watching once
    /// nothing is left. On the reactor thread.
    private func flush() {
        state.withLock { state in
            while state.pendingCount > 0 {
                // A second reference to the bytes (no copy), so that writing may change `state`.
                let (kept, start) = (state.pending, state.pendingStart)
                let written = kept.withUnsafeBytes { buffer in
                    Self.write(UnsafeRawBufferPointer(rebasing: buffer[start...]), to: &state)
                }
                guard written > 0 else { break }
                state.pendingStart += written
                if state.pendingStart >= Self.capacity / 2, state.pendingCount > 0 {
                    // A backlog that never fully drains must not keep what was written.
                    state.pending.removeFirst(state.pendingStart)
                    state.pendingStart = 0
                }
                if state.pendingCount == 0 {
                    state.pending.removeAll(keepingCapacity: true)
                    state.pendingStart = 0
                    if state.droppedSinceReport > 0 {
                        // Where the gap is: after what was kept, before what comes next.
                        state.pending = Array(Self.report(state.droppedSinceReport).utf8)
                        state.droppedSinceReport = 0
                    }
                }
            }
            guard state.pendingCount == 0 || !state.isWritable else { return }
            // Under the lock, so that a line forwarded from another thread meanwhile finds
            // either this watch or none, never one being cancelled (its new watch would be
            // refused: epoll takes a descriptor once). On the reactor thread: final.
            state.watch?.cancel()
            state.watch = nil
        }
    }

    static func report(_ dropped: Int, of stream: String = "stderr") -> String {
        """
        Processing: \(dropped) bytes of child \(stream) were dropped: this process's \(stream) took none \
        for a while (a pipe nobody read?), and at most \(capacity / 1024) KiB are kept meanwhile.\n
        """
    }
}
