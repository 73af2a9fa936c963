import Synchronization

/// The tasks waiting for descriptors to be ready (`Reactor.waitUntilReady`): one watch per
/// descriptor however many waits it has, since epoll takes a descriptor once (a second
/// registration fails with `EEXIST`), and a connection's reader and writer may wait at once.
///
/// Lock order: this table, then a watch's lock (through `want`). Handlers run on the reactor
/// thread with no watch lock held, and take this table's lock only.
final class ReadinessWaits: Sendable {
    private struct Entry {
        /// Tells this entry from a later one for the same (reused) descriptor number, for a
        /// handler of a cancelled watch that the reactor had already taken.
        let token: UInt64
        let watch: ReactorWatch
        var readers: [UInt64: Readiness] = [:]
        var writers: [UInt64: Readiness] = [:]

        var isEmpty: Bool { readers.isEmpty && writers.isEmpty }

        /// Asks epoll for what the waits want now; throws what it refused with.
        func updateInterest() throws(SystemError) { try watch.want(reading: !readers.isEmpty, writing: !writers.isEmpty) }
    }

    private let table = Mutex<(byFD: [Int32: Entry], nextID: UInt64)>(([:], 0))

    /// Waits until `fd` is readable (or writable) on `reactor`. Throws `CancellationError` if
    /// the waiting task is cancelled first, and `ProcessingError` (`.invalidState`) if epoll
    /// refuses the descriptor (instead of waiting for ever).
    func wait(on reactor: Reactor, for fd: Int32, writable: Bool) async throws {
        let readiness = Readiness()
        let (id, refusal) = table.withLock { table in
            table.nextID += 1
            let id = table.nextID
            var entry = table.byFD[fd] ?? {
                let token = id
                return Entry(token: token, watch: reactor.watch(
                    fd,
                    onReadable: { [weak self] in self?.ready(fd, token: token, writable: false) },
                    onWritable: { [weak self] in self?.ready(fd, token: token, writable: true) }))
            }()
            if writable { entry.writers[id] = readiness } else { entry.readers[id] = readiness }
            var refusal: SystemError?
            do throws(SystemError) { try entry.updateInterest() } catch { refusal = error }
            table.byFD[fd] = entry
            return (id, refusal)
        }
        defer { end(fd, id) }
        if let refusal {
            throw ProcessingError(.invalidState, "the reactor cannot watch descriptor \(fd) (epoll refused it: \(refusal))",
                                  causedBy: refusal)
        }
        // Level-triggered: an event that comes before the wait begins is kept (`Readiness`).
        try await readiness.wait()
    }

    /// `fd` is ready (on the reactor thread): its waits of that kind end.
    private func ready(_ fd: Int32, token: UInt64, writable: Bool) {
        let ready: [Readiness] = table.withLock { table in
            guard var entry = table.byFD[fd], entry.token == token else { return [] }
            let ready = Array((writable ? entry.writers : entry.readers).values)
            if writable { entry.writers = [:] } else { entry.readers = [:] }
            try? entry.updateInterest()  // fewer events than before: epoll does not refuse that
            table.byFD[fd] = entry
            return ready
        }
        for readiness in ready { readiness.fire() }
    }

    /// Wait `id` on `fd` is over (ready, cancelled or refused): the watch goes with the last.
    private func end(_ fd: Int32, _ id: UInt64) {
        table.withLock { table in
            guard var entry = table.byFD[fd] else { return }
            entry.readers[id] = nil
            entry.writers[id] = nil
            if entry.isEmpty {
                entry.watch.cancel()
                table.byFD[fd] = nil
            } else {
                try? entry.updateInterest()  // fewer events than before: epoll does not refuse that
                table.byFD[fd] = entry
            }
        }
    }
}
