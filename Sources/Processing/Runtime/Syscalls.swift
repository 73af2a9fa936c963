#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims

/// A failed system call: which call, and the errno it left.
struct SystemError: Error, CustomStringConvertible, Sendable {
    let call: String
    let errno: Int32

    var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))" + (remedy.map { "; \($0)" } ?? "")
    }

    /// What to do about errors a user can fix (running out of descriptors, of processes).
    var remedy: String? {
        switch errno {
        case EMFILE:
            "this process has as many files open as its limit allows (RLIMIT_NOFILE; each running child holds 4): raise it with `ulimit -n`, or run fewer processes at once"
        case ENFILE:
            "the system has as many files open as it allows (fs.file-max): close some, or raise the limit"
        case EAGAIN where call.hasPrefix("posix_spawn"):
            "the user's process limit is reached (RLIMIT_NPROC, `ulimit -u`): raise it, or run fewer processes at once"
        default:
            nil
        }
    }
}

/// How a reaped child ended.
enum ExitStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
    /// It ended, but its status was gone: this program ignores SIGCHLD (the kernel then
    /// discards children's statuses), or something else reaped it.
    case unavailable
}

/// The outcome of a nonblocking read or write.
enum IOResult: Equatable {
    case transferred(Int)
    case wouldBlock
    case endOfFile
}

/// Every system call the library makes, in one place (as swift-system's `Syscalls.swift`).
/// Each retries `EINTR` and turns `-1` into a thrown `SystemError`.
enum Syscall {
    private static func check(_ call: String, _ body: () -> Int32) throws(SystemError) -> Int32 {
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
    private static func descriptor(_ call: String, _ body: () -> Int32) throws(SystemError) -> Int32 {
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

    /// Both descriptors of a pair call (socketpair, pipe2) above 0-2; on failure neither is left open.
    private static func descriptorPair(_ call: String, _ fds: [Int32]) throws(SystemError) -> (Int32, Int32) {
        let first: Int32
        do {
            first = try clearOfStandardStreams(fds[0], call: call)
        } catch {
            _ = Glibc.close(fds[1])
            throw error
        }
        do {
            return (first, try clearOfStandardStreams(fds[1], call: call))
        } catch {
            _ = Glibc.close(first)
            throw error
        }
    }

    /// A close-on-exec Unix stream socket pair.
    static func socketPair() throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try check("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return try descriptorPair("socketpair", fds)
    }

    /// A close-on-exec pipe: (read end, write end).
    static func pipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try check("pipe2") { processing_pipe2_cloexec(&fds) }
        let (read, write) = try descriptorPair("pipe2", fds)
        return (read, write)
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
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var pending = sigset_t()
        sigpending(&pending)
        let alreadyPending = sigismember(&pending, SIGPIPE) == 1
        while true {
            let count = Glibc.write(fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return .transferred(count) }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case EPIPE:
                if !alreadyPending {
                    var now = timespec()
                    _ = sigtimedwait(&pipeSignal, nil, &now)
                }
                throw SystemError(call: "write", errno: EPIPE)
            case let code: throw SystemError(call: "write", errno: code)
            }
        }
    }

    /// What kind of file `fd` is (`S_IFREG`, `S_IFIFO`, ...), or nil if it is not open.
    static func fileType(_ fd: Int32) -> mode_t? {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        return status.st_mode & S_IFMT
    }

    /// A new open file description of what `fd` refers to (through `/proc/self/fd`), write-only
    /// and nonblocking, so that making it nonblocking does not change `fd` for its other users.
    /// Works for pipes, FIFOs and terminals; `ENXIO` for a pipe no one reads any more.
    static func reopenForNonblockingWrites(_ fd: Int32) throws(SystemError) -> Int32 {
        try descriptor("open(/proc/self/fd/\(fd))") {
            open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        }
    }

    static func pidfdOpen(_ pid: pid_t) throws(SystemError) -> Int32 {
        try descriptor("pidfd_open") { processing_pidfd_open(pid) }
    }

    /// Signals through the pidfd (no pid-reuse race). `ESRCH` (already exited) is not an error.
    static func pidfdSignal(_ pidfd: Int32, _ signal: Int32) {
        _ = processing_pidfd_send_signal(pidfd, signal)
    }

    /// Signals a process group (a killed child's descendants go with it).
    static func signalGroup(_ group: pid_t, _ signal: Int32) { _ = Glibc.kill(-group, signal) }

    /// Reaps the child behind `pidfd` if it has exited. `.unavailable` when its status is gone
    /// (`ECHILD`: SIGCHLD is ignored, or something else reaped it); nil while it runs.
    static func reap(_ pidfd: Int32) throws(SystemError) -> ExitStatus? {
        var code: Int32 = 0
        var status: Int32 = 0
        let reaped: Int32
        do {
            reaped = try check("waitid(P_PIDFD)") { processing_pidfd_reap(pidfd, &code, &status) }
        } catch where error.errno == ECHILD {
            return .unavailable
        }
        guard reaped == 1 else { return nil }
        return code == CLD_EXITED ? .exited(status) : .signaled(status)
    }

    /// Whether the child behind `pidfd` has exited, without reaping it (its pid and process
    /// group stay reserved until the reap). True also when its status is gone (`ECHILD`).
    static func hasExited(_ pidfd: Int32) -> Bool {
        while true {
            let result = processing_pidfd_has_exited(pidfd)
            if result >= 0 { return result == 1 }
            if Glibc.errno == EINTR { continue }
            return Glibc.errno == ECHILD
        }
    }

    /// Whether this program ignores SIGCHLD (then exit statuses are discarded by the kernel).
    static func ignoresChildSignal() -> Bool { processing_child_signal_ignored() != 0 }

    /// Blocks until `pid` has exited and reaps it (only where nothing else can watch it).
    static func waitForExit(_ pid: pid_t) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && Glibc.errno == EINTR {}
    }

    /// What workers execute: this process's own image, through `/proc/self/exe` (not the
    /// path it resolves to, which a redeploy or a rebuild may have replaced on disk since).
    static let ownImage = "/proc/self/exe"

    /// The running executable's path (`/proc/self/exe` resolved), for messages and tests.
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        return buffer.withUnsafeBufferPointer { pointer in
            String(decoding: UnsafeRawBufferPointer(start: pointer.baseAddress, count: count), as: UTF8.self)
        }
    }

    /// Flushes stdio and leaves without running atexit handlers or destructors (a worker's exit).
    static func exitImmediately(_ code: Int32) -> Never {
        fflush(nil)
        _exit(code)
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

// MARK: - The reactor's calls

extension Syscall {
    static func epollCreate() throws(SystemError) -> Int32 {
        try descriptor("epoll_create1") { processing_epoll_create() }
    }

    /// Adds (1), deletes (2) or modifies (3) a registration.
    static func epollControl(_ epfd: Int32, _ operation: Int32, _ fd: Int32, events: UInt32, token: UInt64) throws(SystemError) {
        _ = try check("epoll_ctl") { processing_epoll_control(epfd, operation, fd, events, token) }
    }

    /// Waits for events (a timeout of -1 waits forever, 0 only looks).
    static func epollWait(_ epfd: Int32, into events: inout [processing_event], timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        let capacity = Int32(events.count)
        while true {
            let count = events.withUnsafeMutableBufferPointer {
                processing_epoll_wait(epfd, $0.baseAddress, capacity, timeoutMilliseconds)
            }
            if count >= 0 { return Int(count) }
            if Glibc.errno != EINTR { throw SystemError(call: "epoll_wait", errno: Glibc.errno) }
        }
    }

    static func eventFD() throws(SystemError) -> Int32 {
        try descriptor("eventfd") { processing_eventfd_create() }
    }

    static func signalEventFD(_ fd: Int32) {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    static func drainEventFD(_ fd: Int32) {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }
}

// MARK: - Share's calls: shared memory and its process-shared robust mutex

/// What locking a share's mutex found.
enum SharedLockOutcome: Equatable {
    /// The lock is held; the state is as the last finished update left it.
    case acquired
    /// The lock is held, and its previous owner died holding it (the mutex is made consistent
    /// again before returning; the state needs no repair, see `ShareStorage`).
    case ownerDied
    /// This thread already holds it (an update nested inside another's closure).
    case heldByThisThread
}

extension Syscall {
    /// This process's id.
    static func processID() -> pid_t { getpid() }

    /// The memory page size.
    static func pageSize() -> Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// A new, empty close-on-exec memfd, sealed so that it can grow but never shrink.
    static func makeSharedMemory(name: String) throws(SystemError) -> Int32 {
        try descriptor("memfd_create") { processing_memfd_create(name) }
    }

    /// The size of the file behind `fd`.
    static func fileSize(_ fd: Int32) throws(SystemError) -> Int {
        var status = stat()
        _ = try check("fstat") { fstat(fd, &status) }
        return Int(status.st_size)
    }

    /// Grows the file behind `fd` to `size` bytes (new bytes read as zero).
    static func growFile(_ fd: Int32, to size: Int) throws(SystemError) {
        _ = try check("ftruncate") { ftruncate(fd, off_t(size)) }
    }

    /// Maps `length` bytes of `fd` from `offset`, readable, writable and shared between processes.
    static func mapShared(_ fd: Int32, offset: Int, length: Int) throws(SystemError) -> UnsafeMutableRawPointer {
        while true {
            let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset))
            if let address, address != MAP_FAILED { return address }
            if Glibc.errno == EINTR { continue }
            throw SystemError(call: "mmap", errno: Glibc.errno)
        }
    }

    static func unmap(_ address: UnsafeMutableRawPointer, length: Int) { _ = munmap(address, length) }

    /// Where `/proc/<pid>/fd/<fd>` points (for a memfd, `/memfd:<name> (deleted)`), or nil.
    static func processFileLink(pid: pid_t, fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return buffer.withUnsafeBufferPointer { pointer in
            String(decoding: UnsafeRawBufferPointer(start: pointer.baseAddress, count: count), as: UTF8.self)
        }
    }

    /// Opens, read-write and close-on-exec, the file another process (or this one) holds as `fd`.
    static func openProcessFile(pid: pid_t, fd: Int32) throws(SystemError) -> Int32 {
        try descriptor("open(/proc/\(pid)/fd/\(fd))") { open("/proc/\(pid)/fd/\(fd)", O_RDWR | O_CLOEXEC | O_NOCTTY) }
    }

    /// Initialises a mutex in shared memory: process-shared, robust (a dead owner's lock is
    /// handed to the next locker with `EOWNERDEAD`) and error-checking (relocking from the
    /// owning thread fails instead of deadlocking).
    static func initializeSharedMutex(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) throws(SystemError) {
        var attributes = pthread_mutexattr_t()
        try checkCode("pthread_mutexattr_init") { pthread_mutexattr_init(&attributes) }
        defer { pthread_mutexattr_destroy(&attributes) }
        try checkCode("pthread_mutexattr_setpshared") {
            pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        }
        try checkCode("pthread_mutexattr_setrobust") { pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST)) }
        try checkCode("pthread_mutexattr_settype") { pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK)) }
        try checkCode("pthread_mutex_init") { pthread_mutex_init(mutex, &attributes) }
    }

    /// Takes a shared mutex without blocking; nil when another thread or process holds it.
    static func tryLockSharedMutex(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) throws(SystemError) -> SharedLockOutcome? {
        let code = pthread_mutex_trylock(mutex)
        if code == EBUSY { return nil }
        return try lockOutcome(mutex, code, "pthread_mutex_trylock")
    }

    /// Takes a shared mutex, blocking until it is free.
    static func lockSharedMutex(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) throws(SystemError) -> SharedLockOutcome {
        try lockOutcome(mutex, pthread_mutex_lock(mutex), "pthread_mutex_lock")
    }

    static func unlockSharedMutex(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        _ = pthread_mutex_unlock(mutex)
    }

    private static func lockOutcome(
        _ mutex: UnsafeMutablePointer<pthread_mutex_t>, _ code: Int32, _ call: String
    ) throws(SystemError) -> SharedLockOutcome {
        switch code {
        case 0: return .acquired
        case EOWNERDEAD:
            try checkCode("pthread_mutex_consistent") { pthread_mutex_consistent(mutex) }
            return .ownerDied
        case EDEADLK: return .heldByThisThread
        default: throw SystemError(call: call, errno: code)
        }
    }

    /// For pthread calls, which return an error number instead of setting errno.
    private static func checkCode(_ call: String, _ body: () -> Int32) throws(SystemError) {
        let code = body()
        if code != 0 { throw SystemError(call: call, errno: code) }
    }
}

// MARK: - Reconnectors: TCP client sockets and files

/// An address a stream socket can connect to, as `getaddrinfo` gave it.
struct SocketAddress: Sendable {
    let family: Int32
    let bytes: [UInt8]
}

extension Syscall {
    /// The stream addresses of `host`:`port`, or `getaddrinfo`'s reason. Blocks (DNS): call it
    /// off the cooperative pool.
    static func resolveStream(host: String, port: UInt16) -> Result<[SocketAddress], ResolveError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, String(port), &hints, &list)
        guard code == 0 else { return .failure(ResolveError(reason: String(cString: gai_strerror(code)))) }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let info = entry?.pointee {
            if let address = info.ai_addr {
                let bytes = UnsafeRawBufferPointer(start: address, count: Int(info.ai_addrlen))
                addresses.append(SocketAddress(family: info.ai_family, bytes: Array(bytes)))
            }
            entry = info.ai_next
        }
        return .success(addresses)
    }

    /// Why a host name did not resolve.
    struct ResolveError: Error {
        let reason: String
    }

    /// A nonblocking, close-on-exec TCP socket with Nagle's delay off (requests are small).
    static func tcpSocket(family: Int32) throws(SystemError) -> Int32 {
        let fd = try descriptor("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Starts connecting `fd`; true when connected already, false while in progress (wait
    /// until writable, then read `pendingSocketError`).
    static func connect(_ fd: Int32, to address: SocketAddress) throws(SystemError) -> Bool {
        let result = address.bytes.withUnsafeBytes { bytes in
            Glibc.connect(fd, bytes.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count))
        }
        if result == 0 { return true }
        if Glibc.errno == EINPROGRESS || Glibc.errno == EINTR { return false }
        throw SystemError(call: "connect", errno: Glibc.errno)
    }

    /// The error a nonblocking connect ended with (0: connected).
    static func pendingSocketError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return Glibc.errno }
        return error
    }

    /// Opens a file, close-on-exec.
    static func openFile(_ path: String, flags: Int32, permissions: mode_t = 0o644) throws(SystemError) -> Int32 {
        try descriptor("open") { Glibc.open(path, flags | O_CLOEXEC, permissions) }
    }

    /// Moves a file's offset; returns the new one.
    @discardableResult
    static func seek(_ fd: Int32, to offset: Int, from whence: Int32) throws(SystemError) -> Int {
        while true {
            let result = lseek(fd, off_t(offset), whence)
            if result >= 0 { return Int(result) }
            if Glibc.errno == EINTR { continue }
            throw SystemError(call: "lseek", errno: Glibc.errno)
        }
    }

    /// Writes all of `buffer` to a file (blocking).
    static func writeFile(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < buffer.count {
            let count = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if count >= 0 {
                offset += count
            } else if Glibc.errno != EINTR {
                throw SystemError(call: "write", errno: Glibc.errno)
            }
        }
    }
}
