#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One idle local worker, spawned ahead: its pid and exit descriptor, the parent's end of its
/// control channel (nothing has been written or read on it yet), and the read end of its
/// stdout pipe, on which it says it is warm (one byte) or that it died (end of file).
struct SpareWorker: Sendable {
    let child: SpawnedChild
    let channelFD: Int32
    let readinessFD: Int32
}

/// The spare workers (`SpareWorkers`): the storage around `SparePoolState`, which spawns,
/// watches and ends them. It locks, decides, and acts outside the lock.
///
/// A spare is spawned with stdout a pipe to here and stderr `/dev/null`. Once its runtime is up
/// it warms what a worker's first process needs and writes one byte. `ChildProcess.launch`
/// takes it and sends it its real stdout and stderr (`FrameKind.spare`); from then on it is
/// an ordinary worker. A spare that dies while idle closes its pipe, which the reactor sees.
final class SparePool: Sendable {
    static let shared = SparePool()

    private typealias State = SparePoolState<SpareWorker, CheckedContinuation<Void, any Error>>

    private struct Storage {
        var machine = State()
        var nextID: UInt64 = 0
        /// The watch on each spare's readiness pipe, by spare id, until the pipe ends.
        var watches: [UInt64: ReactorWatch] = [:]
        /// Spares being ended (`end`), which `release` waits for, with the open pipes.
        var ending = 0
        var isSettled: Bool { ending == 0 && watches.isEmpty }

        /// `release`'s waiters, once nothing is being ended.
        mutating func takeSettledWaiters() -> [CheckedContinuation<Void, Never>] {
            guard isSettled else { return [] }
            defer { endWaiters = [] }
            return endWaiters
        }
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let storage = Mutex(Storage())
    /// Whether any spare may be idle: the cheap test every start makes first.
    private let mayHaveIdle = Atomic<Bool>(false)

    private init() {}

    var target: Int { storage.withLock { $0.machine.target } }
    var idleCount: Int { storage.withLock { $0.machine.idleCount } }
    var warmCount: Int { storage.withLock { $0.machine.warmCount } }
    var offReason: String? { storage.withLock { $0.machine.offReason } }
    /// The idle spares' pids (for tests).
    var idlePIDs: [Int32] { storage.withLock { $0.machine.idleSpares.map(\.child.pid) } }

    /// Keeps `count` idle spares from now on (0: none, and the idle ones end).
    func keep(_ count: Int) {
        let actions = storage.withLock { $0.machine.keep(count) }
        perform(actions)
    }

    /// Waits until `count` spares are warm (raising the target to it). Throws the error of a
    /// spawn that failed meanwhile, `ProcessingError` if spares were turned off, and
    /// `CancellationError` if the waiting task is cancelled.
    func waitUntilWarm(_ count: Int) async throws {
        let id = nextID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                let (result, actions) = storage.withLock { $0.machine.waitUntilWarm(count, id: id, continuation) }
                perform(actions)
                if case .warm = result { continuation.resume() }
            }
        } onCancel: {
            storage.withLock { $0.machine.cancelWait(id) }?.resume(throwing: CancellationError())
        }
    }

    /// Ends every idle spare, keeps none from now on, and waits until those ended are reaped.
    func release() async {
        keep(0)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = storage.withLock { storage in
                if storage.isSettled { return true }
                storage.endWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// An idle spare that stands in for a fresh local worker now, or nil. Never waits.
    ///
    /// Its readiness pipe stays open and watched: a spare taken before it was warm may still
    /// write its byte, and must not die of SIGPIPE for it. The pipe ends when the spare puts
    /// on its process's stdout (or dies), and is closed then (`readinessChanged`).
    func take() -> SpareWorker? {
        guard mayHaveIdle.load(ordering: .relaxed) else { return nil }
        let setting = WorkerSetting.current()
        let (spare, actions) = storage.withLock { storage in
            let (spare, actions) = storage.machine.take { $0.child.setting == setting }
            mayHaveIdle.store(storage.machine.hasIdle, ordering: .relaxed)
            return (spare, actions)
        }
        perform(actions, spawnAfter: Self.replacementDelay)
        return spare
    }

    /// How long a taken spare's replacement waits before it is spawned: a new worker's start-up
    /// takes a few milliseconds of CPU, which a burst of starts (a pool's workers, a batch of
    /// processes) would otherwise share with the very processes that took the spares.
    static let replacementDelay = Duration.milliseconds(20)

    /// Ends a spare that was taken but could not be used.
    func discard(_ spare: SpareWorker) { end(spare) }

    // MARK: Hints

    /// The process types started here last (mangled names, the latest first), which a new
    /// spare looks up while it waits: a type's first lookup and its conformance to `Skprocess`
    /// scan the image's records (about 0.1 ms, more in a dynamically linked program), which a
    /// start on the spare then skips.
    private let recentTypeNames = Mutex<[String]>([])
    static let hintLimit = 4

    var recentTypes: [String] { recentTypeNames.withLock { $0 } }

    /// A local process of type `typeName` (mangled) is being started.
    func noteStart(of typeName: String) {
        // Names longer than this are not worth the marker's room (deeply nested generics).
        // (`hintLimit` names of this length fit the worker's buffer for them, 2048 bytes in
        // shims.c; a name cut short there would only fail its lookup.)
        guard typeName.utf8.count <= 256 else { return }
        recentTypeNames.withLock { names in
            if names.first == typeName { return }
            names.removeAll { $0 == typeName }
            names.insert(typeName, at: 0)
            if names.count > Self.hintLimit { names.removeLast() }
        }
    }

    // MARK: Acting

    /// A fresh id for a spare or a warm wait.
    private func nextID() -> UInt64 {
        storage.withLock { storage in
            defer { storage.nextID += 1 }
            return storage.nextID
        }
    }

    private func perform(_ actions: State.Actions, spawnError: (any Error)? = nil, spawnAfter delay: Duration? = nil) {
        for spare in actions.end { end(spare) }
        for waiter in actions.resume { waiter.resume() }
        if !actions.fail.isEmpty {
            let error: any Error = actions.failReason.map { ProcessingError(.spawnFailed, $0) }
                ?? spawnError ?? ProcessingError(.spawnFailed, "a spare worker could not be spawned")
            for waiter in actions.fail { waiter.resume(throwing: error) }
        }
        if actions.spawn {
            Task.detached(priority: .utility) {
                if let delay { try? await Task.sleep(for: delay) }
                await self.spawnOne()
            }
        }
    }

    private func spawnOne() async {
        let id = nextID()
        let spare: SpareWorker
        do {
            spare = try await Self.spawn()
        } catch {
            let actions = storage.withLock { $0.machine.spawned(nil, id: id) }
            return perform(actions, spawnError: error)
        }
        let watch = Reactor.shared.watch(spare.readinessFD, onReadable: { [self] in readinessChanged(id, spare.readinessFD) })
        // Armed under the lock, with the spare recorded in the same step: its first event (its
        // byte, or its death, which may both have happened already) waits for its entry, and
        // is not lost for want of one. (The reactor runs the handler with no watch locked.)
        let (actions, failure) = storage.withLock { storage -> (State.Actions, SystemError?) in
            do throws(SystemError) {
                try watch.want(reading: true, writing: false)
            } catch {
                return (storage.machine.spawned(nil, id: id), error)
            }
            if case let pause = Self.pauseAfterWatching.withLock({ $0 }), pause > 0 { usleep(pause) }
            storage.watches[id] = watch
            let actions = storage.machine.spawned(spare, id: id)
            mayHaveIdle.store(storage.machine.hasIdle, ordering: .relaxed)
            return (actions, nil)
        }
        if let failure {
            // Unwatched, its readiness and death would go unseen: it is not kept.
            watch.cancel()
            Reactor.shared.execute { Syscall.close(spare.readinessFD) }
            end(spare)
            return perform(actions, spawnError: failure)
        }
        perform(actions)
    }

    /// For a test: how long (µs) the spawning thread pauses between watching a new spare's
    /// readiness pipe and recording the spare, a blocking pause, so that the spare can warm up
    /// or die in between (0, no pause, everywhere else).
    static let pauseAfterWatching = Mutex<UInt32>(0)

    /// The readiness pipe of spare `id` is readable (on the reactor thread): its byte, or its death.
    private func readinessChanged(_ id: UInt64, _ fd: Int32) {
        var byte: UInt8 = 0
        let result = withUnsafeMutableBytes(of: &byte) { try? Syscall.read(fd, into: $0) }
        switch result {
        case .transferred?:
            let actions = storage.withLock { $0.machine.warmed(id) }
            perform(actions)
        case .wouldBlock?:
            return
        case .endOfFile?, nil:
            // The spare died, or (taken) put on its process's stdout: the pipe is done.
            let (actions, watch, waiters) = storage.withLock { storage in
                let actions = storage.machine.died(id)
                mayHaveIdle.store(storage.machine.hasIdle, ordering: .relaxed)
                let watch = storage.watches.removeValue(forKey: id)
                return (actions, watch, storage.takeSettledWaiters())
            }
            watch?.cancel()  // on the reactor thread: final, so the descriptor may be closed
            Syscall.close(fd)
            perform(actions)
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Ends a spare (given up by the machine, or never used): the process, reaped (its
    /// readiness pipe ends with it).
    private func end(_ spare: SpareWorker) {
        storage.withLock { $0.ending += 1 }
        Task.detached { await self.reap(spare) }
    }

    /// Kills a spare (and its process group), waits for its exit without holding a thread,
    /// reaps it and closes what the parent held of it.
    private func reap(_ spare: SpareWorker) async {
        Syscall.signal(exitDescriptor: spare.child.exitDescriptor, SIGKILL)
        Syscall.signalGroup(spare.child.pid, SIGKILL)
        while !Syscall.hasExited(spare.child.exitDescriptor) {
            // Not cancellable from outside (nobody holds this task): the exit comes at once.
            try? await Reactor.shared.waitUntilReady(spare.child.exitDescriptor, writable: false)
        }
        _ = try? Syscall.reap(spare.child.exitDescriptor)
        Syscall.close(spare.child.exitDescriptor)
        Syscall.close(spare.channelFD)
        let waiters = storage.withLock { storage in
            storage.ending -= 1
            return storage.takeSettledWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Spawns one spare: its channel, its readiness pipe as stdout, `/dev/null` as stderr.
    private static func spawn() async throws -> SpareWorker {
        let channelEnds = try Syscall.socketPair()
        let parentEnd = channelEnds.first
        let control = try ChildProcess.movedOffTargets(channelEnds.second)
        let readiness = try Syscall.pipe()
        let readinessRead = readiness.read
        let readinessWrite = try ChildProcess.movedOffTargets(readiness.write)
        let null = try ChildProcess.movedOffTargets(FileDescriptor(owning: try Syscall.openNull()))
        try Channel.prepare(parentEnd.rawValue)
        try Syscall.setNonBlocking(readinessRead.rawValue)
        let spawned = try await Spawner.shared.spawn(controlFD: control.rawValue, stderrFD: null.rawValue,
                                                     stdout: .pipe(readinessWrite.rawValue), spareHints: shared.recentTypes)
        // The child has its own copies of `control`, `readinessWrite` and `null`, closed here
        // on the way out; the parent keeps only its ends.
        return SpareWorker(child: spawned, channelFD: parentEnd.release(), readinessFD: readinessRead.release())
    }
}
