/// A problem with how the library was used, or with the machinery between processes: a type
/// that cannot cross, a malformed frame, a channel that closed. Its `description` names the
/// thing that went wrong and says how to fix it.
public struct ProcessingError: Error, Sendable, CustomStringConvertible, Equatable, Codable {
    /// What kind of problem this is.
    public enum Code: String, Sendable, Codable {
        /// A type cannot be found by name in a child (private, fileprivate or local).
        case typeNotLocatable
        /// A value could not be encoded to cross the process boundary.
        case encodingFailed
        /// A value could not be decoded on the other side.
        case decodingFailed
        /// `listen` asked for one type and the next message is of another.
        case messageTypeMismatch
        /// Bytes on a channel were not a valid frame.
        case malformedFrame
        /// The other process is gone, or the channel was closed.
        case channelClosed
        /// The worker process could not be started.
        case spawnFailed
        /// The operation needs a state the process is not in (not started, started twice).
        case invalidState
        /// A worker-only operation (`tell`, `listen`, `stop` on `self`) ran outside a worker.
        case notInWorker
        /// A blocking form (`sync()`, `Future.wait()`) was called from async code, where
        /// blocking a cooperative-pool thread could deadlock the work it waits for.
        case blockingInAsyncContext
        /// A closure given to a `Pool` captures values (or is not a plain closure literal),
        /// so it cannot be rebuilt in a worker.
        case closureNotTransferable
        /// A `Share` was used (read or updated) while stopped; `start()` makes it usable again.
        case shareStopped
        /// A `Share` could not be reached: the process it came from no longer holds it, or
        /// its shared memory could not be opened or mapped.
        case shareUnavailable
        /// A `Reconnector` was used in a process it crossed into before it was reconnected
        /// (`reconnectAll(_:auth:)`, or an `autoreconnect` setting on the process).
        case notConnected
        /// A `Reconnector` could not connect again (a refused password, a server gone).
        case reconnectFailed
        /// A `ProcessConfig` setting cannot work (a negative run count, no lives): refused by
        /// `start()` before anything is spawned.
        case invalidConfiguration
        /// A message (or a process's state, a result, a pool batch) is larger than
        /// `ProcessingLimits.maximumMessageSize`: it was not sent.
        case messageTooLarge
        /// A worker answered with something other than what was asked of it (a pool batch's
        /// results that do not match its items, say): its items fail with this.
        case unexpectedReply
        /// A value cannot go to a process on another host (a `Share`, a pipe point, an
        /// `EventGroup`: they share memory or descriptors with this machine); nothing was sent.
        case cannotCrossHosts
        /// A remote host could not be reached, or could not run a worker (ssh failed, the
        /// binary is missing there and may not be copied, the copy failed).
        case hostUnavailable
        /// A remote host's binary is another build than this program's; the message names the
        /// host, the path and both build ids.
        case buildMismatch
    }

    /// What kind of problem this is.
    public let code: Code
    /// What went wrong and how to fix it.
    public let message: String
    /// The `errno` of the system call that failed, when one did (`EMFILE` for a start that ran
    /// out of descriptors, say, which the message explains); nil for other errors.
    public let errno: Int32?

    /// Creates an error with a code and a message that says what to do.
    public init(_ code: Code, _ message: String) {
        self.init(code, message, errno: nil)
    }

    /// An error with the `errno` of the system call behind it.
    init(_ code: Code, _ message: String, errno: Int32?) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// An error caused by `cause`, keeping its `errno` if it is a failed system call.
    init(_ code: Code, _ message: String, causedBy cause: any Error) {
        self.init(code, message, errno: (cause as? SystemError)?.errno)
    }

    /// A readable account of the error or value.
    public var description: String { message }
}
