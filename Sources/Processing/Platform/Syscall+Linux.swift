// Everything Linux-only that the library calls, in one file (PORTING.md says what a Darwin
// port puts in its place): /proc paths, pidfds, epoll and eventfd, memfd, and the socket
// flags Darwin lacks. The C side of these calls is behind `__linux__` in CProcessingShims.
#if os(Linux)
import Glibc
import CProcessingShims

extension Syscall {
    // MARK: Descriptors through /proc

    /// A new open file description of what `fd` refers to (through `/proc/self/fd`), write-only
    /// and nonblocking, so that making it nonblocking does not change `fd` for its other users.
    /// Works for pipes, FIFOs and terminals; `ENXIO` for a pipe no one reads any more.
    static func reopenForNonblockingWrites(_ fd: Int32) throws(SystemError) -> Int32 {
        try descriptor("open(/proc/self/fd/\(fd))") {
            open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        }
    }

    // MARK: Exit descriptors: pidfds

    /// A child's exit descriptor: a pidfd, which becomes readable when the child exits, and
    /// through which it is signalled and reaped without a pid-reuse race.
    static func openExitDescriptor(_ pid: pid_t) throws(SystemError) -> Int32 {
        try descriptor("pidfd_open") { processing_pidfd_open(pid) }
    }

    /// Signals the child behind an exit descriptor. `ESRCH` (already exited) is not an error.
    static func signal(exitDescriptor pidfd: Int32, _ signal: Int32) {
        _ = processing_pidfd_send_signal(pidfd, signal)
    }

    /// Reaps the child behind the exit descriptor `pidfd` if it has exited. `.unavailable` when its status is gone
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

    // MARK: The program's own image

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

    // MARK: Spawning a worker: posix_spawn of the own image

    /// Spawns this program's own image as a worker: stdin on /dev/null, stdout as `stdout` says, `stderr` on 2,
    /// `control` on the worker's control fd, every other descriptor closed (glibc's
    /// `addclosefrom_np`), signals reset to their defaults and unblocked, in a process group
    /// of its own (so that a kill takes its descendants too).
    ///
    /// The image this process runs (`ownImage`), not the file now at its path: a rebuild or a
    /// redeploy may have replaced that file, and a worker must run the same code as its parent.
    static func spawnWorker(stdout: ChildStdout, stderr: Int32, control: Int32, arguments: [String],
                            environment: [String]) throws(SystemError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch stdout {
        case .inherit: break
        case .null: posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        case .pipe(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 1)
        }
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        posix_spawn_file_actions_adddup2(&actions, control, PROCESSING_WORKER_CONTROL_FD)
        processing_spawn_file_actions_addclosefrom(&actions, PROCESSING_WORKER_CONTROL_FD + 1)

        return try spawn(ownImage, searchingPath: false, actions: &actions, arguments: arguments, environment: environment)
    }

    /// Spawns `arguments` (its first found on `PATH`, as a shell would) with `stdin`, `stdout`
    /// and `stderr` on 0-2, every other descriptor closed, signals at their defaults and
    /// unblocked, in a process group of its own: a launcher (ssh) of a remote worker.
    static func spawnCommand(_ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32,
                             environment: [String]) throws(SystemError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        processing_spawn_file_actions_addclosefrom(&actions, 3)

        return try spawn(arguments[0], searchingPath: true, actions: &actions, arguments: arguments, environment: environment)
    }

    /// This program's GNU build id in hex ("" if it was linked without one).
    static let ownBuildID: String = {
        var buffer = [CChar](repeating: 0, count: 130)
        let length = Int(processing_build_id(&buffer, UInt(buffer.count)))
        return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// A nonblocking Unix socket listening on the abstract name `name` (no file on disk).
    static func listenAbstract(_ name: String) throws(SystemError) -> Int32 {
        try descriptor("bind(@\(name))") { processing_listen_abstract(name) }
    }

    /// Accepts a connection on `listener`; nil if none is waiting.
    static func accept(_ listener: Int32) throws(SystemError) -> Int32? {
        do {
            return try descriptor("accept4") { processing_accept(listener) }
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return nil
        }
    }

    /// Whether this process is a remote worker (its channel bridged to its stdin and stdout).
    static var isRemoteWorker: Bool { processing_worker_is_remote() != 0 }

    /// Spawns `path` (looked up on `PATH` when `searchingPath`: posix_spawnp) with `actions`,
    /// and with what every spawned child starts with: signals at their defaults and
    /// unblocked, in a process group of its own (so that a kill takes its descendants too).
    private static func spawn(_ path: String, searchingPath: Bool, actions: inout posix_spawn_file_actions_t,
                              arguments: [String], environment: [String]) throws(SystemError) -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var pid: pid_t = 0
        let status = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                searchingPath ? posix_spawnp(&pid, path, &actions, &attributes, argv, envp)
                    : posix_spawn(&pid, path, &actions, &attributes, argv, envp)
            }
        }
        guard status == 0 else { throw SystemError(call: "\(searchingPath ? "posix_spawnp" : "posix_spawn")(\(path))", errno: status) }
        return pid
    }

    /// Calls `body` with a NULL-terminated C array of copies of `strings`.
    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }

    // MARK: The reactor: epoll and an eventfd

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

    // MARK: Share: a memfd, found through /proc/<pid>/fd

    /// A new, empty close-on-exec memfd, sealed so that it can grow but never shrink.
    static func makeSharedMemory(name: String) throws(SystemError) -> Int32 {
        try descriptor("memfd_create") { processing_memfd_create(name) }
    }

    /// How another process names the file that process `pid` holds as `fd`.
    static func processFilePath(pid: pid_t, fd: Int32) -> String { "/proc/\(pid)/fd/\(fd)" }

    /// Whether what process `pid` holds as `fd` is shared memory made by `makeSharedMemory(name:)`
    /// with `name`: nil when that process or descriptor is gone, else what it is now.
    static func sharedMemoryLink(pid: pid_t, fd: Int32, name: String) -> (isShared: Bool, target: String)? {
        guard let link = processFileLink(pid: pid, fd: fd) else { return nil }
        return (link.hasPrefix("/memfd:\(name)"), link)
    }

    /// Whether `fd` is an eventfd (what `/proc/self/fd/<fd>` says it is).
    static func isEventFD(_ fd: Int32) -> Bool {
        processFileLink(pid: getpid(), fd: fd) == "anon_inode:[eventfd]"
    }

    /// Whether the memfd `fd` is sealed against shrinking (so a mapping of it cannot fault).
    static func isSealedAgainstShrinking(_ fd: Int32) -> Bool {
        processing_memfd_is_sealed_against_shrinking(fd) != 0
    }

    /// Where `/proc/<pid>/fd/<fd>` points (for a memfd, `/memfd:<name> (deleted)`), or nil.
    private static func processFileLink(pid: pid_t, fd: Int32) -> String? {
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

    // MARK: TCP sockets (SOCK_NONBLOCK and SOCK_CLOEXEC at creation)

    /// A nonblocking, close-on-exec TCP socket with Nagle's delay off (requests are small).
    static func tcpSocket(family: Int32) throws(SystemError) -> Int32 {
        let fd = try descriptor("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }
}
#else
#error("Processing runs on Linux only for now: PORTING.md lists what another platform needs")
#endif
