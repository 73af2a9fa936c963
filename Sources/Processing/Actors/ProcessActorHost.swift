import Distributed

/// An actor process: its start state names the actor's type, and `run()` is its whole life
/// (make the actor, `startup()`, serve calls until stopped, `shutdown()`).
struct ProcessActorHost<A: ProcessHostedActor>: Skprocess {
    /// The socket to the parent's system.
    var link: RelayLinkEnd
    var hostToken: UInt64
    var parentToken: UInt64
    /// `A.Parameters`, encoded, for a `ProcessActorWithParameters`.
    var parameters: [UInt8]?

    /// One run; a crash or a throw ends the process, and its calls fail with that.
    var processConfig: ProcessConfig { ProcessConfig(runs: 1) }

    mutating func run() async throws {
        let system = ProcessActorSystem(hosting: hostToken, parentToken: parentToken)
        let connection = try system.connectToParent(link)
        let actor: A
        do {
            let parameters = parameters
            actor = try await ActorDecoding.$system.withValue(system) { try await Self.make(system, parameters) }
            try await actor.whenLocal { try await $0.startup() }
        } catch {
            // The spawn throws this; the process has nothing more to do.
            try await connection.announceFailure(error)
            return
        }
        try await connection.announceReady(actor.id)
        await connection.waitUntilStopped()
        defer { system.releaseAll() }
        try await actor.whenLocal { try await $0.shutdown() }
        connection.close(ProcessActorError(.processEnded, "\(ProcessActorSystem.processDescription) has stopped"))
    }

    private static func make(_ system: ProcessActorSystem, _ parameters: [UInt8]?) async throws -> A {
        if let plain = A.self as? any ProcessActor.Type {
            return try await makePlain(plain, system)
        }
        guard let configured = A.self as? any ProcessActorWithParameters.Type, let parameters else {
            throw ProcessActorError(.invalidUse, "\(String(reflecting: A.self)) is neither a ProcessActor nor a ProcessActorWithParameters")
        }
        return try await makeConfigured(configured, system, parameters)
    }

    private static func makePlain<P: ProcessActor>(_ type: P.Type, _ system: ProcessActorSystem) async throws -> A {
        try await P(actorSystem: system) as! A
    }

    private static func makeConfigured<P: ProcessActorWithParameters>(_ type: P.Type, _ system: ProcessActorSystem,
                                                                     _ bytes: [UInt8]) async throws -> A {
        let parameters: P.Parameters
        do {
            parameters = try BinaryDecoder().decode(P.Parameters.self, from: bytes)
        } catch {
            throw ProcessActorError(.callFailed, "the parameters of \(String(reflecting: P.self)) did not decode: \(error)")
        }
        return try await P(actorSystem: system, parameters: parameters) as! A
    }
}
