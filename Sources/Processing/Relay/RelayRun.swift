import Synchronization

/// One prepared stage: its process, type-erased.
struct RelayStageRun: Sendable {
    let name: String
    private let core: ProcessCore
    /// The handle, kept while the relay runs: dropping the last reference kills the child.
    private let owner: any AnyObject & Sendable

    init<A: RelayActor>(_ handle: ProcessHandle<RelayStage<A>>, name: String) {
        self.name = name
        core = handle.core
        owner = handle
    }

    func start() async throws { try await core.launch() }

    /// Waits for the stage's end; throws its failure.
    func result() async throws {
        _ = try await core.waitForEnd(timeout: nil)
        if case .failure(let error)? = core.outcome { throw error }
    }

    /// SIGKILL, at once.
    func kill() { core.kill() }

    /// Asks the stage to stop (`isStopping`).
    func stop() { core.requestStop() }

    /// Waits for the child's end even in a cancelled task (so that nothing outlives the relay).
    func ended() async {
        let core = core
        await Task { _ = try? await core.waitForEnd(timeout: nil) }.value
    }
}

/// A flag the handler's `stop()` sets for the parent's feed.
final class RelayStopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// A relay ready to run: its stages prepared (not yet spawned) and connected.
struct RelayRun: Sendable {
    let stages: [[RelayStageRun]]

    private enum Outcome: Sendable {
        case stageEnded(Int, (any Error)?)
        /// The grace after a consequence is over (see `consequenceGrace`).
        case graceOver
    }

    /// How long the relay waits, after a stage failed because a neighbour's connection ended,
    /// for that neighbour's own failure to be reported before it kills everything: killing
    /// first would report the neighbour as killed by the relay rather than by what killed it.
    static let consequenceGrace = Duration.seconds(1)

    /// Spawns every stage, runs `feed` and `handler` beside them, and returns once every stage
    /// has ended and both have returned. The first failure stops everything (see `RelayError`).
    func run(feed: (@Sendable (RelayStopSignal) async throws -> Void)?,
             handler: (@Sendable (RelayControl) async throws -> Void)?) async throws {
        let all = stages.flatMap { $0 }
        let stopSignal = RelayStopSignal()
        let firstStages = stages.first ?? []
        let control = RelayControl(stopRelay: {
            stopSignal.set()
            if feed == nil { for stage in firstStages { stage.stop() } }
        }, stages: stages.map { $0.map(\.name) })
        let killAll = { @Sendable in for stage in all { stage.kill() } }

        var failures: [(stage: Int, error: any Error)] = []
        var feedError: (any Error)?
        var handlerError: (any Error)?
        await withTaskCancellationHandler {
            // The feed and the handler are tasks of their own, so that a failure can cancel
            // them without cancelling the waits for the stages' own outcomes.
            let feedTask = feed.map { feed in Task { try await feed(stopSignal) } }
            let handlerTask = handler.map { handler in Task { try await handler(control) } }
            await withTaskGroup(of: Outcome.self) { group in
                for (index, stage) in all.enumerated() {
                    group.addTask {
                        do {
                            try await stage.start()
                            try await stage.result()
                            return .stageEnded(index, nil)
                        } catch {
                            return .stageEnded(index, error)
                        }
                    }
                }
                var stopping = false
                func stopEverything() {
                    guard !stopping else { return }
                    stopping = true
                    killAll()
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
                var running = all.count + (feedTask == nil ? 0 : 1) + (handlerTask == nil ? 0 : 1)
                for await outcome in group {
                    if case .graceOver = outcome {
                        stopEverything()
                        continue
                    }
                    running -= 1
                    if running == 0 { group.cancelAll() }
                    guard case .stageEnded(let index, let error?) = outcome else { continue }
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
            for stage in all { await stage.ended() }
        } onCancel: {
            killAll()
        }
        for stage in all { await stage.ended() }
        try Task.checkCancellation()
        if let primary = failures.first(where: { !Self.isConsequence($0.error) }) {
            throw Self.relayError(all[primary.stage].name, primary.error)
        }
        if let handlerError, !(handlerError is CancellationError) { throw handlerError }
        if let feedError, !Self.isConsequence(feedError), !(feedError is CancellationError) { throw feedError }
        if let first = failures.first { throw Self.relayError(all[first.stage].name, first.error) }
        if let feedError { throw feedError }
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
