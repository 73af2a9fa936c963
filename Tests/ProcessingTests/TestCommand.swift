import Foundation
import Synchronization
@testable import Processing

/// A program a test runs (the fixture, a script, the compiler): spawned by the library's own
/// `Syscall.spawnCommand` with the given descriptors as its stdin, stdout and stderr, every
/// other descriptor closed, in a process group of its own; its exit polled with `waitpid`.
///
/// Not Foundation's `Process`: in Swift 6.3.1 its `run()` reads 256 bytes of each `dirent` of
/// `/proc/self/fd` whatever the entry's length, which runs off glibc's buffer when the page
/// after it is unmapped (swift-corelibs-foundation #5472). It crashed this test process once.
final class TestCommand: Sendable {
    let pid: pid_t
    /// The raw `waitpid` status, once it has been reaped.
    private let status = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments` (after its own path), this process's environment
    /// with `environment` laid over it. The descriptors are the caller's: it closes its own
    /// copies of the child's ends once this returns.
    init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
         stdin: Int32, stdout: Int32, stderr: Int32) throws {
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { $1 }
        pid = try Syscall.spawnCommand([executable] + arguments, stdin: stdin, stdout: stdout, stderr: stderr,
                                       environment: merged.map { "\($0.key)=\($0.value)" })
    }

    /// Whether it still runs; reaps it once it has exited.
    var isRunning: Bool {
        status.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            switch waitpid(pid, &raw, WNOHANG) {
            case 0: return true
            case pid: status = raw
            default: status = 0  // not this process's child any more: nothing to wait for
            }
            return false
        }
    }

    /// Blocks until it has exited (for helpers that run a command to its end on their thread).
    func waitUntilExit() {
        let raw = Self.reap(pid)
        status.withLock { if $0 == nil { $0 = raw } }
    }

    /// Waits for `pid`'s exit and reaps it: its raw status.
    private static func reap(_ pid: pid_t) -> Int32 {
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
        return raw
    }

    /// Its exit status, or the signal that ended it; meaningful once it has ended.
    var terminationStatus: Int32 {
        let raw = status.withLock { $0 } ?? 0
        return signaled ? raw & 0x7f : (raw >> 8) & 0xff
    }

    /// Whether a signal ended it.
    var signaled: Bool {
        let raw = status.withLock { $0 } ?? 0
        return raw & 0x7f != 0 && raw & 0x7f != 0x7f
    }

    /// Kills it if it still runs, and reaps it on a thread of its own (never leaving a zombie
    /// among this process's children for the tests that count them).
    func kill() {
        guard isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        Thread { [self] in waitUntilExit() }.start()
    }

    deinit {
        guard isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        let pid = pid  // not self: the thread outlives it
        Thread { _ = Self.reap(pid) }.start()
    }
}
