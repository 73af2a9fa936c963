import Synchronization

/// Bounds on what crosses between processes, which keep one process from making another
/// allocate without limit.
///
/// ```swift
/// ProcessingLimits.maximumMessageSize = 64 << 20   // refuse messages over 64 MiB
/// ProcessingLimits.mailboxCapacity = 256 << 20     // let a handle queue up to 256 MiB unread
/// ```
///
/// Set them in the parent before starting the processes they should apply to: a child takes
/// the parent's values when it starts.
public enum ProcessingLimits {
    private static let messageSize = Atomic<Int>(1 << 30)
    private static let mailbox = Atomic<Int>(64 << 20)

    /// The largest frame a channel carries, in bytes: a `tell`ed message, a process's state or
    /// result, a pool batch. 1 GiB by default.
    ///
    /// Sending more throws `ProcessingError` (`.messageTooLarge`) before anything is sent, and
    /// the channel stays usable. A peer announcing a larger frame is refused as malformed and
    /// killed; below the limit, a frame's buffer grows with the bytes that actually arrive.
    public static var maximumMessageSize: Int {
        get { messageSize.load(ordering: .relaxed) }
        set { messageSize.store(max(newValue, 1 << 16), ordering: .relaxed) }
    }

    /// How many bytes of told messages a `ProcessHandle` (or a pipe end) keeps unread before it
    /// stops reading its channel, so that the child's (or peer's) next `tell` waits until some
    /// are listened for. 64 MiB by default. Nothing is lost: the sender waits.
    ///
    /// One message larger than this still arrives whole. While the mailbox is full, the
    /// child's other frames (its checkpoints, its result) wait behind its messages too.
    public static var mailboxCapacity: Int {
        get { mailbox.load(ordering: .relaxed) }
        set { mailbox.store(max(newValue, 1), ordering: .relaxed) }
    }
}
