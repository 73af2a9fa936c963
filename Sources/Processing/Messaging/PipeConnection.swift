import Synchronization

/// One end of a pipe pair, connected: a channel of `.message` frames on a socket, read by the
/// reactor into a mailbox.
///
/// Reading starts at the first use, not before: the reactor reads eagerly, and a point read
/// here before it is handed to another process would swallow messages meant for it there.
final class PipeConnection: Sendable {
    let channel: Channel
    let mailbox: Mailbox
    private let started = Atomic<Bool>(false)

    /// Whether this end was used in this process (and may hold what it read).
    var isStarted: Bool { started.load(ordering: .acquiring) }

    /// Takes ownership of `fd` (a socket; closed if this throws); reading starts at the first use.
    init(fd: consuming FileDescriptor) throws {
        try Channel.prepare(fd.rawValue)
        let mailbox = Mailbox()
        self.mailbox = mailbox
        channel = Channel(fd: fd.release(), onFrame: { frame in
            guard frame.kind == .message else {
                return mailbox.close(ProcessingError(.malformedFrame, "a \(frame.kind) frame arrived on a pipe, which carries messages only"))
            }
            do throws(ProcessingError) {
                mailbox.deliver(try Message(frame))
            } catch {
                mailbox.close(error)
            }
        }, onEnd: { end in
            mailbox.close(ProcessingError(.channelClosed, "the other end of the pipe was closed, or its process ended (\(end.description))"))
        })
        // A peer that sends more than this end reads waits, instead of this process growing.
        mailbox.attach(channel)
    }

    private func startIfNeeded() {
        if !started.load(ordering: .acquiring),
           started.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
            channel.start()
        }
    }

    deinit { shutDown() }

    /// Closes the socket; a `recv` waiting here fails at once.
    func shutDown() {
        mailbox.close(ProcessingError(.channelClosed, "the pipe endpoint was closed"))
        let channel = channel
        Reactor.shared.execute { channel.close(reason: "the pipe endpoint was closed") }
    }

    func send<T: Encodable>(_ value: T) async throws {
        startIfNeeded()
        try await channel.send(Message.frame(value, moves: true))
    }

    func receive<T: Decodable>(_ type: T.Type, timeout: Duration?) async throws -> T? {
        startIfNeeded()
        return try await mailbox.receive(T.self, timeout: timeout, polling: channel)
    }
}
