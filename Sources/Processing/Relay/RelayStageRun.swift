/// One stage's process, type-erased: what the relay does with it.
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

    /// Whether it ended as it should (its stream done, `shutdown()` run).
    var succeeded: Bool {
        if case .output? = core.outcome { return true }
        return false
    }

    /// Whether its process is running (or starting).
    var isAlive: Bool { core.isAlive }

    /// SIGKILL, at once.
    func kill() { core.kill() }

    /// Asks the stage to stop (`isStopping`).
    func stop() { core.requestStop() }

    /// Waits for the child's end even in a cancelled task (so that nothing outlives the relay).
    func ended() async { await core.ended() }
}

/// Makes a stage's process again, from its actor as it was connected (a restart).
protocol RelayStageMaking: Sendable {
    func make(settings: RelayStageSettings, inbound: [RelayLinkEnd], outbound: [RelayLinkEnd],
              control: ProcessPipe.Point?, progress: RelayProgressSlot?) throws -> RelayStageRun
}

/// A stage's actor as it was connected, encoded, to make it again after its process died.
struct RelayStageFactory<A: RelayActor>: RelayStageMaking {
    let actorState: [UInt8]

    init(_ actor: A) throws {
        do {
            actorState = try BinaryEncoder().encode(actor)
        } catch {
            throw ProcessingError(.invalidConfiguration, """
                \(String(reflecting: A.self)) has lives, so the relay must be able to make it again from its value, \
                but the value does not encode on its own (\(error)); a stage with lives cannot hold a pipe point
                """)
        }
    }

    func make(settings: RelayStageSettings, inbound: [RelayLinkEnd], outbound: [RelayLinkEnd],
              control: ProcessPipe.Point?, progress: RelayProgressSlot?) throws -> RelayStageRun {
        let actor = try BinaryDecoder().decode(A.self, from: actorState)
        return try Self.make(actor, settings: settings, inbound: inbound, outbound: outbound, control: control, progress: progress)
    }

    /// The stage's process, prepared: its connections move into its start state here.
    static func make(_ actor: A, settings: RelayStageSettings, inbound: [RelayLinkEnd], outbound: [RelayLinkEnd],
                     control: ProcessPipe.Point?, progress: RelayProgressSlot?) throws -> RelayStageRun {
        let stage = RelayStage(actor: actor, settings: settings, inbound: inbound, outbound: outbound,
                               control: control, progress: progress)
        return RelayStageRun(try ProcessHandle(stage, displayName: settings.name, runsErrorHandlerAfterCrash: false),
                             name: settings.name)
    }
}
