// The reactor on Linux: epoll and an eventfd. A Darwin port writes the same type on kqueue
// (PORTING.md); `ReactorWatch` and everything above it stay as they are.
#if os(Linux)
import CProcessingShims
import Foundation
import Glibc
import Synchronization

/// The one I/O reactor: a permanent thread in `epoll_wait` for every control socket, stderr
/// pipe and exit descriptor of this process (time-outs are Dispatch timer sources: `OneShotTimer`). No
/// thread per child, and no blocking call on the cooperative pool.
///
/// **Threading.** Handlers (`ReactorWatch`'s) and `execute` jobs run on the reactor thread,
/// one at a time: state that only they touch needs no lock (`ChildProcess`'s). A `listen` that
/// polls its channel reads it from its own thread meanwhile, under the channel's read lock
/// (see `Channel`), with the channel's read interest off so that the reactor does not race it.
///
/// **Why not Dispatch sources**, as the design card first chose: measured in this project, on
/// Linux libdispatch (Swift 6.3.1) read sources crash the process in the manager thread
/// (`_dispatch_event_loop_drain`, a freed unote still linked into a descriptor's muxnote) and
/// leave some descriptors unwatched, when watched sockets and pipes hang up as children exit
/// and their numbers are reused at once: 4 to 5 crashes in 20 runs of the messaging suite
/// (BENCHMARKS.md, "Runtime"). This thread takes one wake-up per event where Dispatch takes
/// two, and handles hang-ups itself.
final class Reactor: @unchecked Sendable {  // `watches`, `jobs`: Mutexes; the rest is immutable
    static let shared = Reactor()

    /// What a registration wants to hear about.
    struct Interest: OptionSet, Sendable {
        let rawValue: UInt32
        static let read = Interest(rawValue: UInt32(PROCESSING_EVENT_READ))
        static let write = Interest(rawValue: UInt32(PROCESSING_EVENT_WRITE))
    }

    /// How long the thread keeps looking for events after the last one before it sleeps.
    private static let pollAfterActivity = Duration.microseconds(50)
    private static let wakeToken: UInt64 = 0

    /// The epoll descriptor (internal for the test that closes it from outside).
    let epfd: Int32
    private let wakeFD: Int32
    private let watches = Mutex<(byToken: [UInt64: ReactorWatch], nextToken: UInt64)>(([:], 1))
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let threadID = Mutex<pthread_t?>(nil)
    private let readinessWaits = ReadinessWaits()

    private init() {
        do {
            epfd = try Syscall.epollCreate()
            wakeFD = try Syscall.eventFD()
            try Syscall.epollControl(epfd, 1, wakeFD, events: Interest.read.rawValue, token: Self.wakeToken)
        } catch {
            fatalError("Processing: the reactor cannot start: \(error)")
        }
        let thread = Thread { [self] in run() }
        thread.name = "processing.reactor"
        thread.start()
    }

    /// Whether the caller is the reactor thread.
    var isCurrent: Bool {
        guard let id = threadID.withLock({ $0 }) else { return false }
        return pthread_equal(id, pthread_self()) != 0
    }

    /// Runs `job` on the reactor thread, after what it is doing now.
    func execute(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
        Syscall.signalEventFD(wakeFD)
    }

    /// Watches `fd`: `onReadable` and `onWritable` run on the reactor thread while wanted (see
    /// `ReactorWatch.want`). Any thread.
    func watch(_ fd: Int32, onReadable: (@Sendable () -> Void)? = nil,
               onWritable: (@Sendable () -> Void)? = nil) -> ReactorWatch {
        let watch = ReactorWatch(fd: fd, reactor: self, onReadable: onReadable, onWritable: onWritable)
        watches.withLock { watches in
            watch.token = watches.nextToken
            watches.byToken[watches.nextToken] = watch
            watches.nextToken += 1
        }
        return watch
    }

    /// Waits until `fd` is readable (or writable), without holding a thread; throws
    /// `CancellationError` if the waiting task is cancelled first, and `ProcessingError`
    /// (`.invalidState`) if epoll refuses the descriptor (instead of waiting for ever). A
    /// reader and a writer may wait on one descriptor at once (`ReadinessWaits`).
    func waitUntilReady(_ fd: Int32, writable: Bool) async throws {
        try await readinessWaits.wait(on: self, for: fd, writable: writable)
    }

    // MARK: For ReactorWatch

    /// A change to a descriptor's registration in epoll.
    enum Operation: Int32 {
        case add = 1, delete = 2, modify = 3
    }

    /// Changes `fd`'s registration in epoll; throws what epoll refused with. Any thread.
    func control(_ operation: Operation, _ fd: Int32, _ interest: Interest, token: UInt64) throws(SystemError) {
        try Syscall.epollControl(epfd, operation.rawValue, fd, events: interest.rawValue, token: token)
    }

    /// Forgets a cancelled watch: events already taken for it find nothing.
    func forget(_ token: UInt64) {
        _ = watches.withLock { $0.byToken.removeValue(forKey: token) }
    }

    private func run() -> Never {
        threadID.withLock { $0 = pthread_self() }
        var events = [processing_event](repeating: processing_event(), count: 64)
        var lastActivity = ContinuousClock.now
        while true {
            let polling = ContinuousClock.now - lastActivity < Self.pollAfterActivity
            let count: Int
            do {
                count = try Syscall.epollWait(epfd, into: &events, timeoutMilliseconds: polling ? 0 : -1)
            } catch {
                // Waiting again would spin: every channel, pipe and exit of this process's
                // children goes unwatched from here, so say why, loudly.
                fatalError("""
                    Processing: the reactor can no longer wait for events (\(error)): something closed \
                    or replaced descriptor \(epfd), which this library owns (a loop that closes every \
                    descriptor, say). Its child processes can no longer be watched.
                    """)
            }
            for index in 0..<count {
                let event = events[index]
                if event.token == Self.wakeToken {
                    Syscall.drainEventFD(wakeFD)
                } else if let watch = watches.withLock({ $0.byToken[event.token] }) {
                    watch.fire(readable: event.events & UInt32(PROCESSING_EVENT_READ | PROCESSING_EVENT_HANGUP | PROCESSING_EVENT_ERROR) != 0,
                               writable: event.events & UInt32(PROCESSING_EVENT_WRITE | PROCESSING_EVENT_ERROR) != 0)
                }
            }
            let pending = jobs.withLock { jobs in
                defer { jobs.removeAll(keepingCapacity: true) }
                return jobs
            }
            for job in pending { job() }
            if count > 0 || !pending.isEmpty { lastActivity = .now }
        }
    }
}
#endif
