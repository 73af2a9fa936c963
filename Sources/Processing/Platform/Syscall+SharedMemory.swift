#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims

extension Syscall {
    /// This process's id.
    static func processID() -> pid_t { getpid() }

    /// The memory page size.
    static func pageSize() -> Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

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
