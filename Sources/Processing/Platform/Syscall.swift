#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims

/// Every system call the library makes, in this folder (as swift-system's `Syscalls.swift`):
/// the portable ones here, the Linux-only ones in `Syscall+Linux.swift`.
/// Each retries `EINTR` and turns `-1` into a thrown `SystemError`.
enum Syscall {
    static func check(_ call: String, _ body: () -> Int32) throws(SystemError) -> Int32 {
        while true {
            let result = body()
            if result != -1 { return result }
            if Glibc.errno == EINTR { continue }
            throw SystemError(call: call, errno: Glibc.errno)
        }
    }

    // MARK: Descriptors the library opens

    /// The lowest number a descriptor of the library's may have.
    ///
    /// A program that closed its stdin, stdout or stderr (a daemon's `close(1)`) would
    /// otherwise see the next socket or pipe take that number, and its own `print` land in a
    /// child's channel. So every call that makes a descriptor goes through `descriptor(_:_:)`.
    static let lowestDescriptor: Int32 = STDERR_FILENO + 1

    /// Runs a call that returns a new descriptor, and keeps that descriptor above 0-2.
    static func descriptor(_ call: String, _ body: () -> Int32) throws(SystemError) -> Int32 {
        _ = standardStreamsReserved
        return try clearOfStandardStreams(try check(call, body), call: call)
    }

    /// Done once, before the library opens its first descriptor or starts its first timer:
    /// a standard descriptor (0-2) the program has closed is opened on /dev/null, as
    /// `daemon(3)` does. Otherwise descriptors made for the library by others (Dispatch's
    /// timerfd and epoll descriptors) would take those numbers, and the program's own `print`
    /// would land in them. The library's own descriptors keep clear of 0-2 anyway
    /// (`clearOfStandardStreams`), for a program that closes one later.
    static let standardStreamsReserved: Void = {
        for fd in 0...STDERR_FILENO where fcntl(fd, F_GETFD) == -1 && Glibc.errno == EBADF {
            // The lowest free number: this one, since those below it are open.
            let null = open("/dev/null", O_RDWR)
            if null >= 0, null != fd { _ = Glibc.close(null) }
        }
    }()

    /// `fd`, or (numbered 0-2) a close-on-exec duplicate above them, the original closed.
    static func clearOfStandardStreams(_ fd: Int32, call: String) throws(SystemError) -> Int32 {
        guard fd < lowestDescriptor else { return fd }
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, lowestDescriptor)
        let code = Glibc.errno
        _ = Glibc.close(fd)
        guard moved >= 0 else { throw SystemError(call: "\(call) (moving its descriptor above 2)", errno: code) }
        return moved
    }

    /// Both descriptors of a pair call (socketpair, pipe2), owned and above 0-2; on failure
    /// neither is left open.
    private static func descriptorPair(_ call: String, _ fds: [Int32]) throws(SystemError) -> SocketPairEnds {
        let second = FileDescriptor(owning: fds[1])
        let first = FileDescriptor(owning: try clearOfStandardStreams(fds[0], call: call))
        return SocketPairEnds(first: first, second: FileDescriptor(owning: try clearOfStandardStreams(second.release(), call: call)))
    }

    /// A close-on-exec Unix stream socket pair.
    static func socketPair() throws(SystemError) -> SocketPairEnds {
        var fds: [Int32] = [-1, -1]
        _ = try check("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return try descriptorPair("socketpair", fds)
    }

    /// A close-on-exec pipe.
    static func pipe() throws(SystemError) -> PipeEnds {
        var fds: [Int32] = [-1, -1]
        _ = try check("pipe2") { processing_pipe2_cloexec(&fds) }
        let ends = try descriptorPair("pipe2", fds)
        return PipeEnds(read: ends.first, write: ends.second)
    }

    /// Duplicates `fd` to a close-on-exec descriptor numbered at least `minimum` (and above 2).
    static func duplicate(_ fd: Int32, atLeast minimum: Int32 = lowestDescriptor) throws(SystemError) -> Int32 {
        try check("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, max(minimum, lowestDescriptor)) }
    }

    static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = try check("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        _ = try check("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    static func setSocketBuffers(_ fd: Int32, bytes: Int32) {
        var size = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

    /// Opens `path` read-only (close-on-exec).
    static func openForReading(_ path: String) throws(SystemError) -> Int32 {
        try descriptor("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
    }

    /// This process's working directory ("" if it cannot be read, e.g. it was removed).
    static func currentDirectory() -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(PATH_MAX) + 1) { buffer in
            guard getcwd(buffer.baseAddress, buffer.count) != nil else { return "" }
            return String(cString: buffer.baseAddress!)
        }
    }

    /// This process's environment as `environ` holds it now: each `NAME=value` entry followed
    /// by a 0 byte.
    static func environmentBlock() -> [UInt8] {
        var block: [UInt8] = []
        block.reserveCapacity(4096)
        guard var entry = Optional(environ) ?? nil else { return block }
        while let string = entry.pointee {
            let length = strlen(string)
            string.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
                block.append(contentsOf: UnsafeBufferPointer(start: bytes, count: length))
            }
            block.append(0)
            entry += 1
        }
        return block
    }

    /// Makes `fd` also descriptor `target` (dup2; `target` loses close-on-exec). The caller
    /// still owns `fd`.
    static func duplicate(_ fd: Int32, onto target: Int32) throws(SystemError) {
        _ = try check("dup2") { dup2(fd, target) }
    }

    /// Opens /dev/null for reading and writing (close-on-exec).
    static func openNull() throws(SystemError) -> Int32 {
        try descriptor("open(/dev/null)") { open("/dev/null", O_RDWR | O_CLOEXEC) }
    }

    /// At most `limit` bytes of the file behind `fd` from its start (a memfd a command wrote).
    static func contents(of fd: Int32, limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var offset: off_t = 0
        withUnsafeTemporaryAllocation(byteCount: 16 * 1024, alignment: 16) { buffer in
            while bytes.count < limit {
                let count = pread(fd, buffer.baseAddress, min(buffer.count, limit - bytes.count), offset)
                if count < 0, Glibc.errno == EINTR { continue }
                guard count > 0 else { return }
                bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                offset += off_t(count)
            }
        }
        return bytes
    }

    /// Whether `fd` is readable now (poll with no wait).
    static func isReadable(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLIN) != 0
    }

    /// Closes `fd`; `EINTR` from close must not be retried on Linux (the fd is gone either way).
    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// A nonblocking read. Returns `.wouldBlock` on `EAGAIN`, `.endOfFile` on 0.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count > 0 { return .transferred(count) }
            if count == 0 { return .endOfFile }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: throw SystemError(call: "read", errno: code)
            }
        }
    }


    /// A nonblocking socket send that cannot raise SIGPIPE, with descriptors attached
    /// (SCM_RIGHTS) when there are any.
    static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, attaching fds: [Int32] = []) throws(SystemError) -> IOResult {
        while true {
            let count = fds.withUnsafeBufferPointer { fds in
                processing_send_with_fds(fd, buffer.baseAddress, UInt(buffer.count), fds.baseAddress, Int32(fds.count))
            }
            if count >= 0 { return .transferred(count) }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: throw SystemError(call: "sendmsg", errno: code)
            }
        }
    }

    /// A nonblocking socket read that also takes the descriptors that arrive (close-on-exec),
    /// appending them to `fds`. Throws `EBADMSG` when the kernel dropped some (MSG_CTRUNC).
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, fds: inout [Int32]) throws(SystemError) -> IOResult {
        while true {
            var count: Int32 = 0
            var truncated: Int32 = 0
            // On the stack: this runs for every read of every channel.
            let bytes = withUnsafeTemporaryAllocation(of: Int32.self, capacity: Int(PROCESSING_MAX_ATTACHED_FDS)) { slots in
                let bytes = processing_receive_with_fds(fd, buffer.baseAddress, UInt(buffer.count), slots.baseAddress, &count, &truncated)
                if count > 0 { fds.append(contentsOf: slots[..<Int(count)]) }
                return bytes
            }
            // Received descriptors take the lowest free numbers too: keep them above 0-2. (One
            // that cannot be moved is closed, and the frame then misses it: malformed.)
            for index in fds.indices where fds[index] < lowestDescriptor {
                fds[index] = (try? clearOfStandardStreams(fds[index], call: "recvmsg")) ?? -1
            }
            fds.removeAll { $0 < 0 }
            if truncated != 0 { throw SystemError(call: "recvmsg", errno: EBADMSG) }
            if bytes > 0 { return .transferred(bytes) }
            if bytes == 0 { return .endOfFile }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: throw SystemError(call: "recvmsg", errno: code)
            }
        }
    }

    /// A write that cannot raise SIGPIPE, whatever the descriptor is (a pipe's reader may have
    /// gone: then it throws `EPIPE`). Nonblocking when `fd` is (`.wouldBlock` on `EAGAIN`).
    ///
    /// SIGPIPE is blocked on this thread around the write, and one the write raised is taken
    /// back with `sigtimedwait` before the mask is restored, as libraries that must not
    /// change a program's signal dispositions do.
    static func writeWithoutSIGPIPE(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        try withSIGPIPETakenBack { () throws(SystemError) -> IOResult in
            while true {
                let count = Glibc.write(fd, buffer.baseAddress, buffer.count)
                if count >= 0 { return .transferred(count) }
                switch Glibc.errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return .wouldBlock
                case let code: throw SystemError(call: "write", errno: code)
                }
            }
        }
    }

    /// Writes `buffer` through C stdio's `stdout` and flushes it, so that it comes after what the
    /// program printed before; blocks while stdout is full. SIGPIPE is blocked around it and
    /// taken back as in `writeWithoutSIGPIPE`. Throws the errno (`EPIPE`: no reader).
    static func writeThroughStandardOutput(_ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        try withSIGPIPETakenBack { () throws(SystemError) in
            let code = processing_stdout_write(buffer.baseAddress, buffer.count)
            if code != 0 { throw SystemError(call: "fwrite(stdout)", errno: code) }
        }
    }

    /// Runs `write` with SIGPIPE blocked on this thread; if it fails with `EPIPE`, the SIGPIPE
    /// it raised is taken back (`sigtimedwait`) before the mask is restored, unless one was
    /// pending before.
    private static func withSIGPIPETakenBack<R>(_ write: () throws(SystemError) -> R) throws(SystemError) -> R {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var pending = sigset_t()
        sigpending(&pending)
        let alreadyPending = sigismember(&pending, SIGPIPE) == 1
        do {
            return try write()
        } catch {
            if error.errno == EPIPE, !alreadyPending {
                var now = timespec()
                _ = sigtimedwait(&pipeSignal, nil, &now)
            }
            throw error
        }
    }

    /// Whether `fd` is a terminal.
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// The width in columns of the terminal `fd` is, or nil.
    static func terminalWidth(_ fd: Int32) -> Int? {
        let width = processing_terminal_width(fd)
        return width > 0 ? Int(width) : nil
    }

    /// What kind of file `fd` is (`S_IFREG`, `S_IFIFO`, ...), or nil if it is not open.
    static func fileType(_ fd: Int32) -> mode_t? {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        return status.st_mode & S_IFMT
    }

    /// Signals a process group (a killed child's descendants go with it).
    static func signalGroup(_ group: pid_t, _ signal: Int32) { _ = Glibc.kill(-group, signal) }

    /// Whether this program ignores SIGCHLD (then exit statuses are discarded by the kernel).
    static func ignoresChildSignal() -> Bool { processing_child_signal_ignored() != 0 }

    /// Blocks until `pid` has exited and reaps it (only where nothing else can watch it).
    static func waitForExit(_ pid: pid_t) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && Glibc.errno == EINTR {}
    }

    /// In a worker about to send its result: flushes stdio and points stdout and stderr at
    /// /dev/null, so that their pipes end in the parent before the worker's exit does. False
    /// when it could not (or, in a remote worker, need not).
    static func releaseWorkerOutput() -> Bool {
        processing_worker_release_output() == 1
    }

    /// Flushes stdio and leaves without running atexit handlers or destructors (a worker's exit).
    static func exitImmediately(_ code: WorkerExitCode) -> Never {
        // A remote worker's last frames are still on their way to its stdout: the C side
        // lets its bridge finish first.
        processing_worker_exit(code.status)
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
            SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}
