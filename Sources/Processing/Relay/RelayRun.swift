import Synchronization

/// What the handler's `stop()` sets for the parent's feed: a flag, and the feed's iteration
/// to cancel (so that a feed waiting for its next element stops too).
final class RelayStopSignal: Sendable {
    private let state = Mutex<(isSet: Bool, iteration: Task<Void, any Error>?)>((false, nil))
    var isSet: Bool { state.withLock { $0.isSet } }

    func set() {
        state.withLock { state in
            state.isSet = true
            return state.iteration
        }?.cancel()
    }

    /// Runs `iteration` as a task that `set()` cancels; a stop is not an error.
    func run(_ iteration: @escaping @Sendable () async throws -> Void) async throws {
        let task = Task { try await iteration() }
        let stopped = state.withLock { state in
            state.iteration = task
            return state.isSet
        }
        if stopped { task.cancel() }
        try await withTaskCancellationHandler {
            do {
                try await task.value
            } catch is CancellationError where isSet {
                // Stopped: the feed ends here.
            }
        } onCancel: {
            task.cancel()
        }
    }
}

/// What the relay needs to know of a stage to restart it.
struct RelayStagePlan: Sendable {
    let group: Int
    let index: Int
    let settings: RelayStageSettings
    /// How many processes the stage may have (its actor's `lives`).
    let lives: Int
    /// Makes its process again (when it has lives to spare).
    let factory: (any RelayStageMaking)?
    /// Where it says which message it handles (when it has lives to spare).
    let progress: RelayProgressSlot?
    /// Whether a neighbour has lives, so that it may be told of new connections.
    let hasControl: Bool
    /// Who is at the other end of each of its connections.
    let inboundPeers: [String]
    let outboundPeers: [String]
}

/// The parent's feed, ready to run: it sends, and takes new connections to restarted stages.
struct RelayFeedRun: Sendable {
    let relink: @Sendable (Int, RelayLinkEnd, UInt64?) throws -> Void
    let run: @Sendable (RelayStopSignal) async throws -> Void
}

/// A relay ready to run: its stages prepared (not yet spawned) and connected.
struct RelayRun: Sendable {
    let stages: [[RelayStageRun]]
    let plans: [[RelayStagePlan]]
    /// The parent's end of each stage's control pipe (nil for a stage without one).
    let anchors: [[ProcessPipe.Anchor?]]
    /// Where restarts are recorded (`Relay.restarts`).
    let restarts: RelayRestartLog

    private enum Outcome: Sendable {
        case stageEnded(Int, (any Error)?)
        /// The grace after a consequence is over (see `consequenceGrace`).
        case graceOver
    }

    /// How long the relay waits, after a stage failed because a neighbour's connection ended,
    /// for that neighbour's own failure to be reported before it kills everything: killing
    /// first would report the neighbour as killed by the relay rather than by what killed it.
    static let consequenceGrace = Duration.seconds(1)

    /// The stages' current processes, and what restarts need, as the run goes.
    private final class Current: Sendable {
        struct Stage {
            var run: RelayStageRun
            var anchor: ProcessPipe.Anchor?
            var life = 1
            /// The message it was handling when it died last (connection, sequence number).
            var diedOn: (link: Int, sequence: UInt64)?
            var ended = false
        }
        let stages: Mutex<[Stage]>
        /// Set once everything is to be killed: a process swapped in or started later is
        /// killed too (a kill before a process started does nothing).
        private let killed = Atomic<Bool>(false)
        /// The feed's and the handler's tasks, cancelled with the relay.
        let tasks = Mutex<[Task<Void, any Error>]>([])

        init(_ stages: [Stage]) {
            self.stages = Mutex(stages)
            starts = Mutex((stages.count, []))
        }

        /// Stages whose first start has not returned yet, and who waits for them all.
        private let starts: Mutex<(left: Int, waiters: [CheckedContinuation<Void, Never>])>

        /// A stage's first start returned (or failed).
        func started() {
            let waiters = starts.withLock { starts in
                starts.left -= 1
                guard starts.left <= 0 else { return [] as [CheckedContinuation<Void, Never>] }
                defer { starts.waiters = [] }
                return starts.waiters
            }
            for waiter in waiters { waiter.resume() }
        }

        /// Returns once every stage's first start has returned.
        func allStarted() async {
            await withCheckedContinuation { continuation in
                let now = starts.withLock { starts in
                    if starts.left > 0 { starts.waiters.append(continuation) }
                    return starts.left <= 0
                }
                if now { continuation.resume() }
            }
        }
        var isKilled: Bool { killed.load(ordering: .acquiring) }
        func killAll() {
            killed.store(true, ordering: .releasing)
            for stage in stages.withLock({ $0 }) { stage.run.kill() }
        }
        func cancelTasks() { for task in tasks.withLock({ $0 }) { task.cancel() } }
        func stage(_ index: Int) -> Stage { stages.withLock { $0[index] } }
    }

    /// Spawns every stage, runs `feed` and `handler` beside them, and returns once every stage
    /// has ended and both have returned. A stage that fails is restarted while it has lives;
    /// otherwise the first failure stops everything (see `RelayError`).
    func run(feed: RelayFeedRun?, output: RelayInbox?,
             handler: (@Sendable (RelayControl) async throws -> Void)?) async throws {
        let plans = plans.flatMap { $0 }
        let groupStarts = self.plans.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let current = Current(zip(stages.flatMap { $0 }, anchors.flatMap { $0 }).map { Current.Stage(run: $0, anchor: $1) })
        let stopSignal = RelayStopSignal()
        let firstCount = stages.first?.count ?? 0
        let control = RelayControl(stopRelay: {
            stopSignal.set()
            if feed == nil { for index in 0..<firstCount { current.stage(index).run.stop() } }
        }, stagesEnded: {
            // Until none runs: a stage restarted meanwhile is a new process to wait for.
            await current.allStarted()
            while true {
                let runs = current.stages.withLock { $0.map(\.run) }
                for run in runs { await run.ended() }
                if current.stages.withLock({ $0.allSatisfy { !$0.run.isAlive } }) { return }
            }
        }, stages: stages.map { $0.map(\.name) })

        var failures: [(stage: Int, error: any Error)] = []
        var feedError: (any Error)?
        var handlerError: (any Error)?
        await withTaskCancellationHandler {
            // The feed and the handler are tasks of their own, so that a failure can cancel
            // them without cancelling the waits for the stages' own outcomes.
            let feedTask = feed.map { feed in Task { try await feed.run(stopSignal) } }
            let handlerTask = handler.map { handler in Task { try await handler(control) } }
            current.tasks.withLock { $0 = [feedTask, handlerTask].compactMap { $0 } }
            if Task.isCancelled { current.cancelTasks() }
            await withTaskGroup(of: Outcome.self) { group in
                func watch(_ index: Int, _ stage: RelayStageRun) {
                    group.addTask {
                        do {
                            guard !current.isKilled else {
                                current.started()
                                throw CancellationError()
                            }
                            do {
                                try await stage.start()
                                current.started()
                                // A stop asked before this stage was launched found nothing to
                                // tell (a process not started keeps no stop): tell it now.
                                if stopSignal.isSet, feed == nil, index < firstCount { stage.stop() }
                            } catch {
                                current.started()
                                throw error
                            }
                            // Killed while it was starting: the kill found nothing to kill.
                            if current.isKilled { stage.kill() }
                            try await stage.result()
                            return .stageEnded(index, nil)
                        } catch {
                            return .stageEnded(index, error)
                        }
                    }
                }
                for index in plans.indices { watch(index, current.stage(index).run) }
                var stopping = false
                func stopEverything() {
                    guard !stopping else { return }
                    stopping = true
                    current.killAll()
                    feedTask?.cancel()
                    handlerTask?.cancel()
                }
                // The feed and the handler fail the relay too; watched beside the stages.
                if let feedTask {
                    group.addTask {
                        do { try await feedTask.value } catch { return .stageEnded(-1, error) }
                        return .stageEnded(-1, nil)
                    }
                }
                if let handlerTask {
                    group.addTask {
                        do { try await handlerTask.value } catch { return .stageEnded(-2, error) }
                        return .stageEnded(-2, nil)
                    }
                }
                var graceArmed = false
                // The stages, the feed and the handler; the grace timer is not waited for.
                var running = plans.count + (feedTask == nil ? 0 : 1) + (handlerTask == nil ? 0 : 1)
                for await outcome in group {
                    if case .graceOver = outcome {
                        stopEverything()
                        continue
                    }
                    running -= 1
                    guard case .stageEnded(let index, let error) = outcome else { continue }
                    if index >= 0, error == nil { current.stages.withLock { $0[index].ended = true } }
                    guard let error else {
                        if running == 0 { group.cancelAll() }
                        continue
                    }
                    if index >= 0, !stopping, !Task.isCancelled, !Self.isConsequence(error),
                       let restarted = await restart(index, after: error, plans: plans, groupStarts: groupStarts,
                                                      current: current, feed: feed, output: output) {
                        // A first stage restarted after a stop was asked for is asked too.
                        if stopSignal.isSet, feed == nil, index < firstCount { restarted.stop() }
                        running += 1
                        watch(index, restarted)
                        continue
                    }
                    if running == 0 { group.cancelAll() }
                    switch index {
                    case -1:
                        feedError = error
                    case -2:
                        handlerError = error
                    default:
                        failures.append((index, error))
                    }
                    guard !stopping, index >= 0 || !(error is CancellationError) else { continue }
                    if index >= 0, Self.isConsequence(error), !Task.isCancelled {
                        if !graceArmed {
                            graceArmed = true
                            group.addTask {
                                try? await Task.sleep(for: Self.consequenceGrace)
                                return .graceOver
                            }
                        }
                    } else {
                        stopEverything()
                    }
                }
            }
        } onCancel: {
            current.killAll()
            current.cancelTasks()
        }
        for stage in current.stages.withLock({ $0 }) { await stage.run.ended() }
        try Task.checkCancellation()
        let names = plans.map(\.settings.name)
        if let primary = failures.first(where: { !Self.isConsequence($0.error) }) {
            throw Self.relayError(names[primary.stage], primary.error)
        }
        if let handlerError, !(handlerError is CancellationError) { throw handlerError }
        if let feedError, !Self.isConsequence(feedError), !(feedError is CancellationError) { throw feedError }
        if let first = failures.first { throw Self.relayError(names[first.stage], first.error) }
        if let feedError { throw feedError }
    }

    // MARK: Restarts

    /// Restarts stage `index` if it has a life left: a new process from its actor as it was
    /// connected, with new connections to its neighbours (who are told of them). Returns the
    /// new process to watch, or nil when the stage cannot be restarted (the relay then fails).
    private func restart(_ index: Int, after error: any Error, plans: [RelayStagePlan], groupStarts: [Int],
                         current: Current, feed: RelayFeedRun?, output: RelayInbox?) async -> RelayStageRun? {
        let plan = plans[index]
        let previous = current.stage(index)
        guard previous.life < plan.lives, let factory = plan.factory else { return nil }
        // The message it died on is tried once more; on the same one twice, it is dropped.
        let diedOn = plan.progress?.current
        plan.progress?.clear()
        let dropping = diedOn.flatMap { point in
            previous.diedOn.map { $0 == point } == true ? point : nil
        }
        let name = plan.settings.name
        do {
            var inbound: [RelayLinkEnd] = []
            for (link, peer) in plan.inboundPeers.enumerated() {
                let pair = try RelayLinkEnd.pair(sender: peer, receiver: name)
                inbound.append(pair.receiving)
                let drop = dropping?.link == link ? dropping?.sequence : nil
                if plan.group == 0 {
                    try feed?.relink(plan.index, pair.sending, drop)
                } else {
                    let relink = RelayRelink(side: .outbound, index: plan.index, end: pair.sending, dropping: drop)
                    guard await tell(groupStarts[plan.group - 1] + link, relink, current: current, sending: true) else {
                        throw ProcessingError(.channelClosed, "\(peer) did not take its new connection to \(name)")
                    }
                }
            }
            var outbound: [RelayLinkEnd] = []
            for (link, peer) in plan.outboundPeers.enumerated() {
                let pair = try RelayLinkEnd.pair(sender: name, receiver: peer)
                outbound.append(pair.sending)
                if plan.group == self.plans.count - 1 {
                    try output?.relink(plan.index, to: pair.receiving)
                } else {
                    let relink = RelayRelink(side: .inbound, index: plan.index, end: pair.receiving)
                    guard await tell(groupStarts[plan.group + 1] + link, relink, current: current, sending: false) else {
                        throw ProcessingError(.channelClosed, "\(peer) did not take its new connection from \(name)")
                    }
                }
            }
            var control: (anchor: ProcessPipe.Anchor, point: ProcessPipe.Point)?
            if plan.hasControl { control = try ProcessPipe.pair() }
            let run = try factory.make(settings: plan.settings, inbound: inbound, outbound: outbound,
                                       control: control?.point, progress: plan.progress)
            let life = previous.life + 1
            current.stages.withLock { stages in
                stages[index] = Current.Stage(run: run, anchor: control?.anchor, life: life, diedOn: diedOn)
                // Its receivers' last deaths were on messages it numbered; it numbers anew.
                if plan.group + 1 < self.plans.count {
                    for receiver in groupStarts[plan.group + 1]..<groupStarts[plan.group + 2] { stages[receiver].diedOn = nil }
                }
            }
            if current.isKilled { run.kill() }
            let restart = RelayRestart(stage: name, life: life, cause: Self.relayError(name, error),
                                       message: diedOn.map { (plan.inboundPeers[$0.link], $0.sequence) },
                                       dropped: dropping != nil)
            restarts.append(restart)
            log(restart.description.replacingOccurrences(of: "(life \(life))", with: "(life \(life) of \(plan.lives))"),
                level: .warning)
            return run
        } catch {
            log("\(name) could not be restarted: \(error)", level: .error)
            return nil
        }
    }

    /// Sends a stage a new connection and waits for it to say it took it. Returns false when
    /// the stage is alive and did not answer in time (the restart is then given up).
    ///
    /// A stage that has ended cannot take it: for one that ended as it should and was sending
    /// on that connection (`sending`), the parent ends the connection's stream itself, from a
    /// copy of the end it kept. A stage that died takes its new connections when it is
    /// restarted in turn (or the relay fails with it).
    private func tell(_ index: Int, _ relink: RelayRelink, current: Current, sending: Bool) async -> Bool {
        let stage = current.stage(index)
        let spare = sending ? try? RelayLinkEnd(duplicating: relink.end) : nil
        if !stage.ended, let anchor = stage.anchor {
            do {
                try await anchor.send(relink)
                if try await anchor.recv(Bool.self, timeout: Self.relinkTimeout) != nil { return true }
                guard !stage.run.succeeded, stage.run.isAlive else { return await writeEnd(spare, ifSucceeded: stage.run) }
                return false
            } catch {
                // It ended meanwhile; its outcome says how.
                await stage.run.ended()
            }
        }
        return await writeEnd(spare, ifSucceeded: stage.run)
    }

    /// How long a stage has to take a new connection.
    static let relinkTimeout = Duration.seconds(10)

    private func writeEnd(_ spare: RelayLinkEnd?, ifSucceeded stage: RelayStageRun) async -> Bool {
        await stage.ended()
        if stage.succeeded, let fd = spare?.take() {
            let end = Frame.encode(.relayEnd)
            _ = end.withUnsafeBytes { try? Syscall.send(fd, $0, attaching: []) }
            Syscall.close(fd)
        }
        return true
    }

    /// Whether `error` was caused by another stage's failure: a connection that ended early,
    /// or a kill by the relay once it was failing.
    static func isConsequence(_ error: any Error) -> Bool {
        if let crash = error as? ProcessCrashError { return crash.cause == .killed }
        if let processing = error as? ProcessingError { return processing.code == .channelClosed }
        if let hook = hookFailure(error) { return hook.isConsequence }
        return false
    }

    private static func hookFailure(_ error: any Error) -> RelayHookFailure? {
        (error as? any SectionError)?.underlying?.value as? RelayHookFailure
    }

    static func relayError(_ stage: String, _ error: any Error) -> RelayError {
        if let hook = hookFailure(error) {
            return RelayError(stage: stage, hook: hook.hook, underlying: hook.error.remoteError)
        }
        return RelayError(stage: stage, hook: nil, underlying: error)
    }
}
