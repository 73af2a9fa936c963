/// How one stage runs: its name, where it is in the relay, and its connections' sizes.
struct RelayStageSettings: Codable, Sendable {
    /// "Square", or "Square#1" in a group of several.
    var name: String
    /// Messages in flight on each connection at most (the relay's `maxsize`).
    var window: Int
    /// Messages per batch at most.
    var batchLimit: Int
    /// Per inbound connection: its sender may be restarted.
    var inboundRestartable: [Bool] = []
    /// Per outbound connection: its receiver may be restarted (what it was sent is kept).
    var outboundRetained: [Bool] = []
}

/// A relay stage as a process: the actor, its settings and its connections cross to the
/// child in the start state, and `run()` is the stage's whole life.
struct RelayStage<A: RelayActor>: Skprocess {
    var actor: A
    var settings: RelayStageSettings
    var inbound: [RelayLinkEnd]
    var outbound: [RelayLinkEnd]
    /// Where the parent sends new connections when a neighbour is restarted (nil when no
    /// neighbour has lives).
    var control: ProcessPipe.Point?
    /// Where this stage says which message it handles (nil when it has one life).
    var progress: RelayProgressSlot?

    /// One run; a crash or a throw ends the process, and the relay restarts it (lives) or fails.
    var processConfig: ProcessConfig { ProcessConfig(runs: 1) }

    mutating func run() async throws {
        let name = settings.name
        let outbox = try RelayOutbox<A.Output>(outbound, window: settings.window, batchLimit: settings.batchLimit,
                                               defersFlushes: inbound.isEmpty, retains: settings.outboundRetained,
                                               awaitsWrites: progress != nil && !inbound.isEmpty, owner: name)
        RelayStageContext.install(outbox)
        // With lives, this stage's senders keep what they sent until it is credited.
        let inbox = try RelayInbox(inbound, window: settings.window, restartable: settings.inboundRestartable,
                                   grantsEveryBatch: progress != nil, owner: name)
        let relinks = control.map { control in
            Task {
                while true {
                    let relink = try await control.recv(RelayRelink.self)
                    switch relink.side {
                    case .inbound: try inbox.relink(relink.index, to: relink.end)
                    case .outbound: try outbox.relink(relink.index, to: relink.end, dropping: relink.dropping)
                    }
                    try await control.send(true)   // taken: the parent need not end it itself
                }
            }
        }
        defer {
            relinks?.cancel()
            control?.close()
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
                do {
                    if let progress {
                        for (offset, message) in messages.enumerated() {
                            progress.handling(link: batch.link, sequence: batch.sequence + UInt64(offset))
                            try await actor.recv(message)
                        }
                        progress.clear()
                    } else {
                        for message in messages { try await actor.recv(message) }
                    }
                    // What the batch produced leaves before it is credited: a sender that
                    // keeps what it sent for a restart may then forget it. A stage that may
                    // be restarted waits until the kernel has it, so that it survives a crash.
                    if progress != nil { try await outbox.flushAllWritten() } else { try outbox.flushAll() }
                } catch let failure as RelayHookFailure {
                    throw failure
                } catch {
                    throw RelayHookFailure(hook: "recv(_:)", error)
                }
                inbox.consumed(messages.count, of: batch)
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

extension RelayStage: RunsWhenStoppedBeforeStart {}
