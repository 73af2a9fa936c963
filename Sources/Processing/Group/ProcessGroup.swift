import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A scope that owns processes, pools, actor processes and relays and ends them together
/// (seed 004's `MainContext`): when its body returns or throws, or on a stop, each member is
/// ended gracefully, in reverse order of adding, and killed if it takes longer than
/// `gracePeriod`.
///
/// ```swift
/// try await ProcessGroup.run { group in
///     let system = group.add(ProcessActorSystem())
///     let detector = try await system.spawn(Detector.self)
///     let pool = group.add(Pool(workers: 4))
///     let sizes = try await pool.map(items, Square())
///     print(try await detector.detect(frame), sizes)
///     await group.waitUntilStopping()   // until Ctrl-C
/// }
/// ```
///
/// **Ctrl-C.** Children never see the terminal's SIGINT: each runs in a process group of its
/// own. While `run` runs (with `handlesSignals`, the default), the program's first SIGINT or
/// SIGTERM becomes a graceful stop of the group (members end as above, then the body has
/// `gracePeriod` to return before it is cancelled), and a second kills every member at once.
/// Then the program ends by that signal, as it would have without the group (`exitsOnSignal`;
/// else `run` throws `ProcessGroupInterrupted`). Nothing is left behind either way.
///
/// Cancelling the task that runs the group kills its members. Only the outermost of nested
/// groups handles signals.
public final class ProcessGroup: Sendable {
    /// How long each member may take to end gracefully before it is killed.
    public let gracePeriod: Duration
    private let exitsOnSignal: Bool
    private let state = Mutex(ProcessGroupState<any ProcessGroupMember>())
    private let stopWaiters = Mutex<(stopping: Bool, waiters: [Int: CheckedContinuation<Void, Never>], nextID: Int)>((false, [:], 0))
    /// The tasks of the end: the graceful one, the kill, and the body (cancelled by the end).
    private let tasks = Mutex<(graceful: Task<Void, Never>?, kill: Task<Void, Never>?, body: Task<Void, Never>?,
                               late: [Task<Void, Never>])>((nil, nil, nil, []))

    private static let signalsClaimed = Atomic<Bool>(false)

    private init(gracePeriod: Duration, exitsOnSignal: Bool) {
        (self.gracePeriod, self.exitsOnSignal) = (gracePeriod, exitsOnSignal)
    }

    /// Runs `body` with a new group, then ends the group's members (see the type's
    /// description) and returns what `body` returned, or rethrows what it threw.
    public static func run<R: Sendable>(
        gracePeriod: Duration = .seconds(5), handlesSignals: Bool = true, exitsOnSignal: Bool = true,
        _ body: @escaping @Sendable (ProcessGroup) async throws -> R
    ) async throws -> R {
        let group = ProcessGroup(gracePeriod: gracePeriod, exitsOnSignal: exitsOnSignal)
        var forwarder: SignalForwarder?
        if handlesSignals, !signalsClaimed.exchange(true, ordering: .acquiringAndReleasing) {
            OutputForwarder.standardError.prepare()  // its lines about signals go through it
            do {
                forwarder = try SignalForwarder([SIGINT, SIGTERM]) { [group] signal in group.signalled(signal) }
            } catch {
                signalsClaimed.store(false, ordering: .releasing)
                throw ProcessingError(.invalidState, "ProcessGroup could not catch SIGINT and SIGTERM: \(error)")
            }
        }
        defer {
            if let forwarder {
                forwarder.uninstall()
                signalsClaimed.store(false, ordering: .releasing)
            }
        }
        let outcome = Mutex<Result<R, any Error>?>(nil)
        let bodyTask = Task {
            do {
                let value = try await body(group)
                outcome.withLock { $0 = .success(value) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }
        group.tasks.withLock { $0.body = bodyTask }
        await withTaskCancellationHandler {
            await bodyTask.value
        } onCancel: {
            group.perform(group.state.withLock { $0.kill() })
        }
        group.perform(group.state.withLock { $0.stop() })
        await group.ended()
        if let signal = group.state.withLock({ $0.signal }) {
            if exitsOnSignal {
                forwarder?.uninstall()
                await ProcessLog.flush()
                fflush(nil)  // every C stream, stdout included
                SignalForwarder.die(by: signal)
            }
            throw ProcessGroupInterrupted(signal: signal)
        }
        return try outcome.withLock { $0 }!.get()
    }

    /// Makes `member` the group's: it ends with the group. Returns it. Added while the
    /// group ends, it is ended at once.
    @discardableResult
    public func add<Member: ProcessGroupMember>(_ member: Member) -> Member {
        let late: Task<Void, Never>
        switch state.withLock({ $0.add(member) }) {
        case .kept: return member
        case .endGracefully: late = Task { [gracePeriod] in await member.endGracefully(within: gracePeriod) }
        case .endNow: late = Task { await member.endNow() }
        }
        // The group's end waits for it too.
        tasks.withLock { $0.late.append(late) }
        return member
    }

    /// Starts `process` and makes it the group's.
    public func start<P: Skprocess>(_ process: P) async throws -> ProcessHandle<P> where P.Output: Codable & Sendable {
        add(try await process.start())
    }

    /// Whether the group has begun to end (a stop, a signal, or its body's end).
    public var isStopping: Bool { state.withLock { $0.phase != .running } }

    /// The signal that stopped the group, if one did.
    public var signal: Int32? { state.withLock { $0.signal } }

    /// Ends the group gracefully, as a first SIGINT would (but the program does not exit):
    /// members end in reverse order, then the body has `gracePeriod` to return before it is
    /// cancelled. Returns at once.
    public func stop() {
        perform(state.withLock { $0.stop() })
    }

    /// Returns once the group begins to end: for a body that runs until Ctrl-C (or `stop()`).
    /// Also returns when the waiting task is cancelled.
    public func waitUntilStopping() async {
        let id = stopWaiters.withLock { waiters in
            defer { waiters.nextID += 1 }
            return waiters.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = stopWaiters.withLock { waiters in
                    guard !waiters.stopping, !Task.isCancelled else { return true }
                    waiters.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            stopWaiters.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// The group is ending (gracefully or not): `waitUntilStopping` returns.
    private func resumeStopWaiters() {
        let waiters = stopWaiters.withLock { waiters in
            waiters.stopping = true
            defer { waiters.waiters = [:] }
            return waiters.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Ending

    private func signalled(_ signal: Int32) {
        let action = state.withLock { $0.signalled(signal) }
        let name = Syscall.signalName(signal)
        switch action {
        // Through the output forwarder: this is the reactor thread, which a full stderr must
        // not hold.
        case .stop:
            OutputForwarder.standardError.forward(line: """
                ProcessGroup: \(name): stopping gracefully (each member within \(gracePeriod)); \(name) again kills them
                """)
        case .kill:
            OutputForwarder.standardError.forward(line: "ProcessGroup: \(name) again: killing every member")
        case .none:
            break
        }
        perform(action)
    }

    private func perform(_ action: ProcessGroupState<any ProcessGroupMember>.Action) {
        switch action {
        case .stop:
            let graceful = Task { [self] in
                for member in state.withLock({ $0.members }).reversed() {
                    if state.withLock({ $0.isKilling }) { break }
                    await member.endGracefully(within: gracePeriod)
                }
                // The body may finish by itself now that its members are done (a relay's
                // `start` returning); it is cancelled if it has not within the grace period.
                guard let body = tasks.withLock({ $0.body }) else { return }
                let deadline = Task { [gracePeriod] in
                    if (try? await Task.sleep(for: gracePeriod)) != nil { body.cancel() }
                }
                await body.value
                deadline.cancel()
            }
            tasks.withLock { $0.graceful = graceful }
            // After the task is stored: a body that returns at once finds the end under way.
            resumeStopWaiters()
        case .kill:
            let (members, signal) = state.withLock { ($0.members, $0.signal) }
            let exits = exitsOnSignal
            let kill = Task {
                await withTaskGroup(of: Void.self) { group in
                    for member in members { group.addTask { await member.endNow() } }
                }
                // A second signal ends the program once its children are gone, even while
                // the body ignores its cancellation.
                if let signal, exits {
                    await ProcessLog.flush()
                    fflush(nil)
                    SignalForwarder.die(by: signal)
                }
            }
            let body = tasks.withLock { tasks in
                tasks.kill = kill
                return tasks.body
            }
            resumeStopWaiters()
            body?.cancel()
        case .none:
            break
        }
    }

    /// Waits until every member has ended.
    private func ended() async {
        await tasks.withLock { $0.graceful }?.value
        // Members added while the group ended.
        while let late = tasks.withLock({ $0.late.popLast() }) { await late.value }
        // A kill, which may have cut the graceful end short (read last: it may begin meanwhile).
        await tasks.withLock { $0.kill }?.value
    }
}

/// `ProcessGroup.run` ended because of a signal, with `exitsOnSignal: false`.
public struct ProcessGroupInterrupted: Error, Sendable, CustomStringConvertible {
    /// SIGINT or SIGTERM.
    public let signal: Int32

    /// `interrupted by SIGINT`.
    public var description: String { "the process group was interrupted by \(Syscall.signalName(signal))" }
}
