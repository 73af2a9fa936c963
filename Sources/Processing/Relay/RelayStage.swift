/// How one stage runs: its name, where it is in the relay, and its connections' sizes.
struct RelayStageSettings: Codable, Sendable {
    /// "Square", or "Square#1" in a group of several.
    var name: String
    /// Messages in flight on each connection at most (the relay's `maxsize`).
    var window: Int
    /// Messages per batch at most.
    var batchLimit: Int
}

/// A relay stage as a process: the actor, its settings and its connections cross to the
/// child in the start state, and `run()` is the stage's whole life.
struct RelayStage<A: RelayActor>: Skprocess {
    var actor: A
    var settings: RelayStageSettings
    var inbound: [RelayLinkEnd]
    var outbound: [RelayLinkEnd]

    /// One run; a crash or a throw fails the relay (it is not retried).
    var processConfig: ProcessConfig { ProcessConfig(runs: 1) }

    mutating func run() async throws {
        let name = settings.name
        let outbox = try RelayOutbox<A.Output>(outbound, window: settings.window, batchLimit: settings.batchLimit,
                                               defersFlushes: inbound.isEmpty, owner: name)
        RelayStageContext.install(outbox)
        let inbox = try RelayInbox(inbound, window: settings.window, owner: name)
        defer {
            inbox.close()
            outbox.close()
        }
        try await Self.hook("startup()") { try await actor.startup() }
        if inbound.isEmpty {
            try await Self.hook("loop()") { try await actor.loop() }
        } else {
            while let batch = try await Self.hook("recv(_:)", { try await inbox.next() }) {
                let messages: [A.Input]
                do {
                    messages = try batch.decode(A.Input.self)
                } catch {
                    throw RelayHookFailure(hook: "recv(_:)", ProcessingError(.decodingFailed, """
                        a batch from \(inbox.peer(batch.link)) did not decode as \(String(reflecting: A.Input.self)) \
                        in \(name): \(error)
                        """))
                }
                for message in messages {
                    try await Self.hook("recv(_:)") { try await actor.recv(message) }
                }
                inbox.consumed(messages.count, from: batch.link)
                try await Self.hook("recv(_:)") { try outbox.flushAll() }
            }
        }
        try await Self.hook("shutdown()") { try await actor.shutdown() }
        try await Self.hook("shutdown()") { try await outbox.finish() }
    }

    /// Runs one hook; what it throws crosses to the parent with the hook's name.
    private static func hook<T>(_ name: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let failure as RelayHookFailure {
            throw failure
        } catch {
            throw RelayHookFailure(hook: name, error)
        }
    }
}

/// What a stage's hook threw, with the hook's name, as it crosses to the parent.
struct RelayHookFailure: Error, Codable, CustomStringConvertible {
    var hook: String
    var error: RemoteErrorPayload
    /// Whether it came from a connection that ended (a neighbour's failure, not this stage's).
    var isConsequence: Bool

    init(hook: String, _ error: any Error) {
        self.hook = hook
        self.error = RemoteErrorPayload(error)
        isConsequence = (error as? ProcessingError)?.code == .channelClosed
    }

    var description: String { "\(hook) threw \(error.typeName): \(error.errorDescription)" }
}
