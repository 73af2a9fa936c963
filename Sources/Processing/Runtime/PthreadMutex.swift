#if PROCESSING_TSAN
#if canImport(Glibc)
import Glibc
#endif

/// Under ThreadSanitizer (`.ci/tsan` builds with `-DPROCESSING_TSAN`), this module's `Mutex` is
/// a pthread mutex, which TSan sees. Synchronization's `Mutex` locks with futexes that TSan
/// does not model, so every state it guards was reported as a race (measured: two threads
/// counting under `Mutex` give a report, under `NSLock` none).
@usableFromInline
typealias Mutex = PthreadMutex

/// `Mutex`'s interface on `pthread_mutex_t`, for the sanitizer build only. Usable from
/// inlinable code, as Synchronization's is (a relay's `send` is inlinable).
@usableFromInline
final class PthreadMutex<Value: ~Copyable>: @unchecked Sendable {  // `value`: only under `lock`
    @usableFromInline
    let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    @usableFromInline
    var value: Value

    init(_ value: consuming Value) {
        self.value = value
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    @inlinable
    func withLock<Result: ~Copyable, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(&value)
    }

    func withLockIfAvailable<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result? {
        guard pthread_mutex_trylock(lock) == 0 else { return nil }
        defer { pthread_mutex_unlock(lock) }
        return try body(&value)
    }
}
#endif
