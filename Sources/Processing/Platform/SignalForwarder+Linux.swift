import CProcessingShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Catches signals (SIGINT, SIGTERM) for as long as it is installed and hands them to a
/// handler on the reactor thread, instead of letting them end the program: a C handler
/// writes each one's number to a pipe the reactor watches (the only async-signal-safe way to
/// hear it; Linux Dispatch's signal sources missed repeated signals here).
final class SignalForwarder: Sendable {
    private let signals: [Int32]
    private let readEnd: Int32
    private let writeEnd: Int32
    private let watch: Mutex<ReactorWatch?>

    /// Installs the forwarding of `signals` to `handler`.
    init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) throws {
        let (readEnd, writeEnd) = try Syscall.pipe().release()
        do {
            try Syscall.setNonBlocking(readEnd)
            try Syscall.setNonBlocking(writeEnd)
        } catch {
            Syscall.close(readEnd)
            Syscall.close(writeEnd)
            throw error
        }
        (self.signals, self.readEnd, self.writeEnd) = (signals, readEnd, writeEnd)
        let watch = Reactor.shared.watch(readEnd, onReadable: {
            var byte: UInt8 = 0
            while case .transferred? = try? withUnsafeMutableBytes(of: &byte, { try Syscall.read(readEnd, into: $0) }) {
                handler(Int32(byte))
            }
        })
        self.watch = Mutex(watch)
        try watch.want(reading: true, writing: false)
        for signal in signals where processing_forward_signal(signal, writeEnd) < 0 {
            let error = SystemError(call: "sigaction(\(Syscall.signalName(signal)))", errno: errno)
            uninstall()
            throw error
        }
    }

    /// Puts the signals' previous actions back and closes the pipe.
    func uninstall() {
        guard let watch = watch.withLock({ watch in defer { watch = nil }; return watch }) else { return }
        for signal in signals { _ = processing_restore_signal(signal) }
        watch.cancel()
        let (readEnd, writeEnd) = (readEnd, writeEnd)
        // After the watch's handlers, which run on the reactor thread.
        Reactor.shared.execute {
            Syscall.close(readEnd)
            Syscall.close(writeEnd)
        }
    }

    /// Ends this process by `signal`, as its default action would have.
    static func die(by signal: Int32) -> Never {
        processing_die_by_signal(signal)
    }
}
