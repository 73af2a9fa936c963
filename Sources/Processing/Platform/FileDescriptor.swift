/// An open descriptor that this code owns, as a value that cannot be copied: it is closed when
/// it goes out of scope (on every error path too), by `close()`, or handed to what will own it
/// from then on by `release()`. So "who closes this, and only once" is checked by the compiler
/// where descriptors are made and handed over (spawning, pipe pairs, received descriptors).
///
/// Long-lived owners (a channel, a share's memory) keep the raw number they were released,
/// and close it in their own teardown.
struct FileDescriptor: ~Copyable {
    let rawValue: Int32

    /// Takes ownership of `rawValue`, an open descriptor no one else will close.
    init(owning rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit { Syscall.close(rawValue) }

    /// Closes it now.
    consuming func close() {}

    /// Gives up ownership: the caller (or what it passes the number to) closes it.
    consuming func release() -> Int32 {
        let rawValue = rawValue
        discard self
        return rawValue
    }
}

/// The two ends of a socket pair, each owned.
struct SocketPairEnds: ~Copyable {
    var first: FileDescriptor
    var second: FileDescriptor

    /// Gives up both (for a test that manages raw numbers).
    consuming func release() -> (first: Int32, second: Int32) {
        (first.release(), second.release())
    }
}

/// The two ends of a pipe, each owned.
struct PipeEnds: ~Copyable {
    var read: FileDescriptor
    var write: FileDescriptor

    /// Gives up both (for a test that manages raw numbers).
    consuming func release() -> (read: Int32, write: Int32) {
        (read.release(), write.release())
    }
}
