/// Actor processes wired into a pipeline: each stage a child process, messages flowing from
/// one group of stages to the next with backpressure, and the whole ending together.
///
/// ```swift
/// let relay = Relay(maxsize: 64)
/// try relay.connect(Numbers(), [Square(), Square()], Sum())   // 1-1, 1-n, n-1 and n-m
/// try await relay.start { control in
///     // runs in the main process while the relay runs
/// }
/// ```
///
/// **Connections.** Each stage of a group is connected to each stage of the next group
/// directly (a socket between the two children; the parent is not in the data path). A
/// `send` goes to the receiver with the most room. A receiver grants its sender credit for at
/// most `maxsize` messages in flight on their connection, and more as it handles them, so a
/// slow stage holds back the ones before it and no process's memory grows; messages cross in
/// batches when they come faster than they are handled.
///
/// **The end.** A stage's stream ends when its `loop()` returns, or when every stage before
/// it has ended its stream and it has handled all they sent; then its `shutdown()` runs, once,
/// and it ends its own stream. End of stream is counted per connection.
///
/// **Failure.** When a stage throws or its process dies, the relay kills every other stage,
/// waits for them all to end, and throws `RelayError` naming the stage; nothing is left
/// running and nothing hangs. Cancelling the task that awaits `start` does the same, and
/// throws `CancellationError`.
///
/// **Lives.** A stage with `lives` above 1 is restarted instead, from its value as it was
/// connected, with new connections to its neighbours; what it had not credited back is sent
/// to it again (at least once: what it was handling may be handled twice), the message it died
/// on is tried once more and dropped if it dies on it again. `restarts` lists what happened.
///
/// **The parent's side.** `start(feeding:)` feeds the first stages from an `AsyncSequence`
/// in the parent; `output(as:)` reads what the last stages send as an `AsyncSequence`.
///
/// A `Relay` holds the actors it was given, which need not be `Sendable`, so it is not
/// `Sendable` either: connect and start it in one task (make it inside a `@Sendable` closure
/// that runs it, rather than capturing it).
public final class Relay {
    /// The most messages in flight on each connection between two stages.
    public let maxsize: Int
    private var groups: [[any RelayActor]] = []
    private let restartLog = RelayRestartLog()

    /// The stages restarted during the last run (stages with `lives`), in order, so far:
    /// read it after `start` returns or the output ends (or while it runs).
    public var restarts: [RelayRestart] { restartLog.all }

    /// A relay whose connections each hold at most `maxsize` messages in flight (sent and
    /// not yet handled). 1,024 by default; at least 1.
    public init(maxsize: Int = 1024) {
        self.maxsize = maxsize
    }

    /// Wires the stages: each argument is a group (one actor, or an array of actors of one
    /// type), connected to the groups beside it. Throws, before anything is spawned, when one
    /// group's `Output` is not the next one's `Input`, naming both stages and types.
    public func connect(_ groups: any RelayStageGroup...) throws {
        guard self.groups.isEmpty else {
            throw ProcessingError(.invalidState, "this relay is connected already: connect(...) takes every group in one call")
        }
        let groups = groups.map(\.relayActors)
        guard !groups.isEmpty else {
            throw ProcessingError(.invalidConfiguration, "connect(...) needs at least one stage")
        }
        for (index, group) in groups.enumerated() where group.isEmpty {
            throw ProcessingError(.invalidConfiguration, "group \(index + 1) of the relay is an empty array: a group needs at least one stage")
        }
        for group in groups {
            for actor in group { try Self.checkLocatable(actor) }
        }
        for (before, after) in zip(groups, groups.dropFirst()) {
            for sender in before {
                for receiver in after { try Self.checkLink(from: sender, to: receiver) }
            }
        }
        self.groups = groups
    }

    /// Runs the relay: spawns every stage, runs `handler` in the main process beside them,
    /// and returns once every stage has ended and the handler has returned. The first stages
    /// must have `loop()`s (nothing sends to them), and the last must send nothing.
    ///
    /// Throws `RelayError` for a stage that failed (every other one is then killed); what the
    /// handler throws (the stages are then killed); `CancellationError` when the awaiting task
    /// is cancelled (likewise).
    public func start(_ handler: @escaping @Sendable (RelayControl) async throws -> Void = { _ in }) async throws {
        let run = try prepare(feeding: nil, output: nil)
        try await run.stages.run(feed: nil, output: nil, handler: handler)
    }

    /// Runs the relay with its first stages fed from `feed` in the parent: each element goes
    /// to one of them, with the same backpressure as between stages; the feed's end is the end
    /// of their stream. See `start(_:)`.
    public func start<Feed: AsyncSequence & Sendable>(
        feeding feed: Feed, _ handler: @escaping @Sendable (RelayControl) async throws -> Void = { _ in }
    ) async throws where Feed.Element: Codable & Sendable {
        let run = try prepare(feeding: Feed.Element.self, output: nil)
        try await run.stages.run(feed: try Self.feeder(feed, into: run), output: nil, handler: handler)
    }

    /// What the last stages send, as an `AsyncSequence` read in the parent (with the same
    /// backpressure as between stages). The relay starts when iteration begins and the
    /// sequence ends once every stage has ended; it throws the relay's failure. Leaving the
    /// iteration early (or cancelling it) stops every stage. Iterate it once.
    public func output<Element: Codable & Sendable>(as type: Element.Type = Element.self) throws -> RelayOutput<Element> {
        let run = try prepare(feeding: nil, output: Element.self)
        return RelayOutput(run, feed: nil)
    }

    /// What the last stages send, with the first stages fed from `feed`. See `output(as:)`
    /// and `start(feeding:_:)`.
    public func output<Element: Codable & Sendable, Feed: AsyncSequence & Sendable>(
        as type: Element.Type = Element.self, feeding feed: Feed
    ) throws -> RelayOutput<Element> where Feed.Element: Codable & Sendable {
        let run = try prepare(feeding: Feed.Element.self, output: Element.self)
        return RelayOutput(run, feed: try Self.feeder(feed, into: run))
    }

    // MARK: Preparing

    /// A run's stages and the parent's ends of the feed and output connections.
    struct Prepared {
        let stages: RelayRun
        let feedEnds: [RelayLinkEnd]
        let outputEnds: [RelayLinkEnd]
        let settings: RelayStageSettings
        /// Per first stage: it has lives (what the feed sends it is kept until credited).
        let feedRetained: [Bool]
        /// Per last stage: it has lives (its connection's end is not a failure).
        let outputRestartable: [Bool]
    }

    /// The parent's feed: sends each element, then the end of stream.
    static func feeder<Feed: AsyncSequence & Sendable>(_ feed: Feed, into run: Prepared) throws -> RelayFeedRun
    where Feed.Element: Codable & Sendable {
        let outbox = try RelayOutbox<Feed.Element>(run.feedEnds, window: run.settings.window, batchLimit: run.settings.batchLimit,
                                                   defersFlushes: true, retains: run.feedRetained, owner: "the parent's feed")
        return RelayFeedRun(relink: { link, end, dropping in
            try outbox.relink(link, to: end, dropping: dropping)
        }, run: { stop in
            defer { outbox.close() }
            try await stop.run {
                for try await element in feed {
                    if stop.isSet { break }
                    try await outbox.send(element)
                }
            }
            try await outbox.finish()
        })
    }

    private func prepare(feeding feedType: Any.Type?, output outputType: Any.Type?) throws -> Prepared {
        guard !groups.isEmpty else {
            throw ProcessingError(.invalidState, "this relay has no stages: connect(...) them before starting it")
        }
        guard maxsize >= 1 else {
            throw ProcessingError(.invalidConfiguration, "Relay(maxsize: \(maxsize)) cannot carry anything: maxsize is at least 1")
        }
        try Self.checkEnds(groups, feed: feedType, output: outputType)
        let settings = RelayStageSettings(name: "", window: maxsize, batchLimit: max(1, min(maxsize / 4, 4096)))
        let names = groups.map { group in
            group.map { String(describing: type(of: $0)) }.enumerated().map { index, name in
                group.count > 1 ? "\(name)#\(index)" : name
            }
        }
        let lives = groups.map { $0.map(\.lives) }
        for (group, stages) in lives.enumerated() {
            for (index, count) in stages.enumerated() where count < 1 {
                throw ProcessingError(.invalidConfiguration, "\(names[group][index]) has \(count) lives: a stage needs at least 1")
            }
        }
        let last = groups.count - 1
        // Connections: inbound[g][i] and outbound[g][i] for stage i of group g.
        var inbound = groups.map { $0.map { _ in [RelayLinkEnd]() } }
        var outbound = inbound
        var feedEnds: [RelayLinkEnd] = []
        var outputEnds: [RelayLinkEnd] = []
        if feedType != nil {
            for receiver in names[0].indices {
                let link = try RelayLinkEnd.pair(sender: "the parent's feed", receiver: names[0][receiver])
                feedEnds.append(link.sending)
                inbound[0][receiver].append(link.receiving)
            }
        }
        for group in groups.indices.dropLast() {
            for sender in names[group].indices {
                for receiver in names[group + 1].indices {
                    let link = try RelayLinkEnd.pair(sender: names[group][sender], receiver: names[group + 1][receiver])
                    outbound[group][sender].append(link.sending)
                    inbound[group + 1][receiver].append(link.receiving)
                }
            }
        }
        if outputType != nil {
            for sender in names[last].indices {
                let link = try RelayLinkEnd.pair(sender: names[last][sender], receiver: "the parent's output")
                outbound[last][sender].append(link.sending)
                outputEnds.append(link.receiving)
            }
        }
        var stages: [[RelayStageRun]] = []
        var plans: [[RelayStagePlan]] = []
        var anchors: [[ProcessPipe.Anchor?]] = []
        for (group, actors) in groups.enumerated() {
            var runs: [RelayStageRun] = []
            var groupPlans: [RelayStagePlan] = []
            var groupAnchors: [ProcessPipe.Anchor?] = []
            for (index, actor) in actors.enumerated() {
                var stageSettings = settings
                stageSettings.name = names[group][index]
                // A connection's other end restarts if that stage has lives.
                stageSettings.inboundRestartable = group == 0
                    ? inbound[group][index].map { _ in false }
                    : lives[group - 1].map { $0 > 1 }
                stageSettings.outboundRetained = group == last
                    ? outbound[group][index].map { _ in false }
                    : lives[group + 1].map { $0 > 1 }
                let ownLives = lives[group][index]
                let hasControl = stageSettings.inboundRestartable.contains(true) || stageSettings.outboundRetained.contains(true)
                let control = hasControl ? try ProcessPipe.pair() : nil
                let progress = ownLives > 1 ? try RelayProgressSlot() : nil
                let factory = ownLives > 1 ? try Self.factory(actor) : nil
                groupPlans.append(RelayStagePlan(
                    group: group, index: index, settings: stageSettings, lives: ownLives, factory: factory,
                    progress: progress, hasControl: hasControl,
                    inboundPeers: inbound[group][index].map(\.peer), outboundPeers: outbound[group][index].map(\.peer)))
                groupAnchors.append(control?.anchor)
                runs.append(try Self.stage(actor, settings: stageSettings, inbound: inbound[group][index],
                                           outbound: outbound[group][index], control: control?.point, progress: progress))
            }
            stages.append(runs)
            plans.append(groupPlans)
            anchors.append(groupAnchors)
        }
        restartLog.reset()
        return Prepared(stages: RelayRun(stages: stages, plans: plans, anchors: anchors, restarts: restartLog), feedEnds: feedEnds,
                        outputEnds: outputEnds, settings: settings,
                        feedRetained: feedType == nil ? [] : lives[0].map { $0 > 1 },
                        outputRestartable: outputType == nil ? [] : lives[last].map { $0 > 1 })
    }

    /// The stage's process, prepared: its connections move into its start state here.
    private static func stage<A: RelayActor>(_ actor: A, settings: RelayStageSettings, inbound: [RelayLinkEnd],
                                             outbound: [RelayLinkEnd], control: ProcessPipe.Point?,
                                             progress: RelayProgressSlot?) throws -> RelayStageRun {
        try RelayStageFactory<A>.make(actor, settings: settings, inbound: inbound, outbound: outbound,
                                      control: control, progress: progress)
    }

    private static func factory<A: RelayActor>(_ actor: A) throws -> any RelayStageMaking {
        try RelayStageFactory(actor)
    }

    // MARK: Checks

    private static func checkLocatable<A: RelayActor>(_ actor: A) throws {
        _ = try TypeName.locatable(A.self, role: "a relay stage")
    }

    private static func typeName(_ type: Any.Type) -> String { String(reflecting: type) }

    private static func checkLink<S: RelayActor, R: RelayActor>(from sender: S, to receiver: R) throws {
        guard S.Output.self != R.Input.self else { return }
        let (senderName, receiverName) = (typeName(S.self), typeName(R.self))
        if S.Output.self == Never.self {
            throw ProcessingError(.invalidConfiguration, """
                \(senderName) sends nothing (its Output is Never), but \(receiverName) comes after it and receives \
                \(typeName(R.Input.self)): declare `typealias Output = \(typeName(R.Input.self))` in \(senderName)
                """)
        }
        if R.Input.self == Never.self {
            throw ProcessingError(.invalidConfiguration, """
                \(receiverName) receives nothing (it has no recv(_:)), but it comes after \(senderName), which sends \
                \(typeName(S.Output.self)): define `mutating func recv(_ message: \(typeName(S.Output.self))) async throws` in it
                """)
        }
        throw ProcessingError(.invalidConfiguration, """
            \(senderName) sends \(typeName(S.Output.self)), but \(receiverName), the stage after it, receives \
            \(typeName(R.Input.self)): one stage's Output must be the next one's Input
            """)
    }

    private static func checkEnds(_ groups: [[any RelayActor]], feed: Any.Type?, output: Any.Type?) throws {
        for actor in groups[0] { try checkFirst(actor, feed: feed) }
        for actor in groups[groups.count - 1] { try checkLast(actor, output: output) }
    }

    private static func checkFirst<A: RelayActor>(_ actor: A, feed: Any.Type?) throws {
        let name = typeName(A.self)
        if let feed {
            guard feed == A.Input.self else {
                throw ProcessingError(.invalidConfiguration, A.Input.self == Never.self
                    ? "the feed sends \(typeName(feed)), but the first stage \(name) receives nothing (it has no recv(_:))"
                    : "the feed sends \(typeName(feed)), but the first stage \(name) receives \(typeName(A.Input.self))")
            }
        } else if A.Input.self != Never.self {
            throw ProcessingError(.invalidConfiguration, """
                \(name) receives \(typeName(A.Input.self)), but it is a first stage and nothing sends to it: feed the \
                relay from the parent (start(feeding:) or output(as:feeding:)), or put a stage with a loop() before it
                """)
        }
    }

    private static func checkLast<A: RelayActor>(_ actor: A, output: Any.Type?) throws {
        let name = typeName(A.self)
        if let output {
            guard output == A.Output.self else {
                throw ProcessingError(.invalidConfiguration, A.Output.self == Never.self
                    ? "output(as: \(typeName(output))) reads the last stage, but \(name) sends nothing (its Output is Never)"
                    : "output(as: \(typeName(output))) reads the last stage, but \(name) sends \(typeName(A.Output.self))")
            }
        } else if A.Output.self != Never.self {
            throw ProcessingError(.invalidConfiguration, """
                \(name) sends \(typeName(A.Output.self)), but it is a last stage and nothing comes after it: read what it \
                sends with output(as: \(typeName(A.Output.self)).self), or add a stage that receives it
                """)
        }
    }
}
