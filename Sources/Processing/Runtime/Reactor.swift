import CProcessingShims
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one I/O reactor: a permanent thread in `epoll_wait` for every control socket, stderr
/// pipe and pidfd of this process. No thread per child and no blocking call on the
/// cooperative pool.
///
/// Why not Dispatch sources (DESIGN.md's first mechanism): on Linux a source's event is taken
/// by Dispatch's manager thread and its handler then runs on a worker thread of the target
/// queue, two wake-ups per message before the awaiting task's own. Measured side by side
/// (BENCHMARKS.md), this thread saves one of them, and by polling for a moment after each
/// event before it sleeps it usually catches the reply of a conversation without sleeping.
///
/// Handlers run on the reactor thread, one at a time, so the state they touch needs no
/// other lock. `epoll_ctl` may be called from any thread (the write path does).
final class Reactor: @unchecked Sendable {  // `handlers`, `nextToken`: reactor thread only; `jobs`, `detached`: Mutexes
    static let shared = Reactor()

    /// What a registration wants to hear about.
    struct Interest: OptionSet, Sendable {
        let rawValue: UInt32
        static let read = Interest(rawValue: UInt32(PROCESSING_EVENT_READ))
        static let write = Interest(rawValue: UInt32(PROCESSING_EVENT_WRITE))
    }

    /// The readiness reported to a handler.
    struct Events: Sendable {
        let rawValue: UInt32
        var readable: Bool { rawValue & UInt32(PROCESSING_EVENT_READ | PROCESSING_EVENT_HANGUP | PROCESSING_EVENT_ERROR) != 0 }
        var writable: Bool { rawValue & UInt32(PROCESSING_EVENT_WRITE | PROCESSING_EVENT_ERROR) != 0 }
    }

    /// A registration: pass it back to change or remove it.
    struct Registration: Sendable {
        let fd: Int32
        let token: UInt64
    }

    /// How long the thread keeps looking for events after the last one before it sleeps.
    private static let pollAfterActivity = Duration.microseconds(50)
    private static let wakeToken: UInt64 = 0

    /// The epoll descriptor (internal for the test that closes it from outside).
    let epfd: Int32
    private let wakeFD: Int32
    private var handlers: [UInt64: (Events) -> Void] = [:]
    private var nextToken: UInt64 = 1
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    /// Registrations taken out of epoll while they want nothing (see `update`).
    private let detached = Mutex<Set<UInt64>>([])
    private let threadID = Mutex<pthread_t?>(nil)

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

    /// Watches `fd`; `handler` runs on the reactor thread. Call on the reactor thread.
    func register(_ fd: Int32, interest: Interest, handler: @escaping (Events) -> Void) throws(SystemError) -> Registration {
        precondition(isCurrent, "Reactor.register runs on the reactor thread")
        let token = nextToken
        nextToken += 1
        try Syscall.epollControl(epfd, 1, fd, events: interest.rawValue, token: token)
        handlers[token] = handler
        return Registration(fd: fd, token: token)
    }

    /// Changes what a registration hears about. Any thread may call it.
    ///
    /// No interest at all takes the fd out of epoll until interest returns: epoll reports a
    /// hang-up or an error whatever the interest, and a paused channel whose peer hung up
    /// would otherwise wake this thread again and again.
    func update(_ registration: Registration, interest: Interest) {
        detached.withLock { detached in
            if interest.isEmpty {
                guard detached.insert(registration.token).inserted else { return }
                try? Syscall.epollControl(epfd, 2, registration.fd, events: 0, token: 0)
            } else if detached.remove(registration.token) != nil {
                try? Syscall.epollControl(epfd, 1, registration.fd, events: interest.rawValue, token: registration.token)
            } else {
                try? Syscall.epollControl(epfd, 3, registration.fd, events: interest.rawValue, token: registration.token)
            }
        }
    }

    /// Stops watching; the caller may close the fd after this. Call on the reactor thread.
    func deregister(_ registration: Registration) {
        precondition(isCurrent, "Reactor.deregister runs on the reactor thread")
        let wasDetached = detached.withLock { $0.remove(registration.token) != nil }
        if !wasDetached { try? Syscall.epollControl(epfd, 2, registration.fd, events: 0, token: 0) }
        handlers[registration.token] = nil
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
                } else {
                    // A handler earlier in this batch may have removed this registration.
                    handlers[event.token]?(Events(rawValue: event.events))
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
