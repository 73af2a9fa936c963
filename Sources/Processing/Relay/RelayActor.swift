/// One stage of a `Relay`: a type whose value runs in a child process of its own, receiving
/// messages from the stage before it and sending to the stage after it.
///
/// ```swift
/// struct Numbers: RelayActor {                      // a first stage: nothing sends to it
///     typealias Output = Int
///     mutating func loop() async throws {           // its lifetime; returning ends the stream
///         for i in 0..<10_000 { try await send(i) } // waits while the next stage is full
///     }
/// }
/// struct Square: RelayActor {                       // a middle stage: receives and sends
///     typealias Output = Int
///     mutating func recv(_ x: Int) async throws { try await send(x * x) }
/// }
/// struct Sum: RelayActor {                          // a last stage: sends nothing
///     var total = 0
///     mutating func recv(_ x: Int) async throws { total += x }
///     mutating func shutdown() async throws { log("total \(total)") }
/// }
/// ```
///
/// The hooks run in the child in this order: `startup()`, then `loop()` for a stage that
/// nothing sends to, or `recv(_:)` for each message for one that receives, then `shutdown()`
/// once, after the last message from every sender. `send(_:)` hands a message to one stage of
/// the next group; `log(_:level:)` reaches the main process.
///
/// `Input` is what `recv(_:)` takes (inferred from it); `Output` is what `send(_:)` takes:
/// declare `typealias Output = T` in a stage that sends. Both are `Never` by default (a stage
/// that receives nothing, or sends nothing). `Relay.connect` checks that each stage's
/// `Output` is the next one's `Input`.
///
/// Like an `Skprocess`, the type must be `Codable` and findable by name in the child
/// (internal or public, not `private`, `fileprivate` or local to a function).
public protocol RelayActor: Codable, RelayStageGroup {
    /// What the stage receives (`recv(_:)`'s parameter); `Never` for a first stage.
    associatedtype Input: Codable & Sendable = Never
    /// What the stage sends (`send(_:)`'s parameter); `Never` for a last stage.
    associatedtype Output: Codable & Sendable = Never

    /// Runs first, once.
    mutating func startup() async throws
    /// The lifetime of a stage that nothing sends to: returning ends its stream. Not called
    /// for a stage that receives.
    mutating func loop() async throws
    /// Handles one message from the stage before (or from the parent's feed).
    mutating func recv(_ message: Input) async throws
    /// Runs last, once: after `loop()` returned, or after the last message from every sender.
    mutating func shutdown() async throws

    /// How many processes the stage may have: with more than one, a stage whose process dies
    /// or whose hook throws is started again (from its value as it was connected, `startup()`
    /// first) and the relay goes on; see `Relay` for what happens to its messages. 1 by
    /// default: the relay fails instead. Declare `var lives = 3` to set it.
    var lives: Int { get }
}

extension RelayActor {
    /// One: a stage whose process dies fails the relay.
    public var lives: Int { 1 }

    /// Does nothing by default.
    public mutating func startup() async throws {}
    /// Does nothing by default.
    public mutating func shutdown() async throws {}

    /// By default, fails: a stage that nothing sends to must define `loop()`.
    public mutating func loop() async throws {
        throw ProcessingError(.invalidConfiguration, """
            \(String(reflecting: Self.self)) is a first stage (nothing sends to it), so it needs a loop() \
            that sends its messages; or feed the relay from the parent (start(feeding:))
            """)
    }

    /// The group of one: this stage.
    public var relayActors: [any RelayActor] { [self] }

    /// Sends `message` to one stage of the next group: the one with the most room, so faster
    /// stages get more. Waits while every one of them is full (the relay's `maxsize`).
    /// Works inside the hooks, which run in the stage's child.
    @inlinable
    public func send(_ message: Output) async throws {
        let outbox = try RelayStageContext.outbox(for: Output.self, in: Self.self)
        switch try outbox.queue(message) {
        case .queued, .flush, .scheduleFlush: return
        case .noCredit, .failed: try await outbox.send(message)
        }
    }

    /// Whether the relay was asked to stop (`RelayControl.stop()`): a `loop()` should return
    /// soon. Inside the hooks; false elsewhere.
    public var isStopping: Bool { WorkerContext.active?.stopRequested ?? false }
}

extension RelayActor where Input == Never {
    /// A first stage receives nothing.
    public mutating func recv(_ message: Never) async throws {}
}

extension RelayActor where Output == Never {
    /// A stage whose `Output` is `Never` sends nothing: declare `typealias Output = T`.
    @available(*, unavailable, message: "this stage's Output is Never: declare `typealias Output = T` in it to send T")
    public func send<T>(_ message: T) async throws {}
}

/// What `Relay.connect` takes for each group: one `RelayActor`, or an array of them of one
/// type (a group of several processes that share the work).
public protocol RelayStageGroup {
    /// The stages of the group, in order.
    var relayActors: [any RelayActor] { get }
}

extension Array: RelayStageGroup where Element: RelayActor {
    /// The stages of the group, in order.
    public var relayActors: [any RelayActor] { self }
}

/// A group of stages of different types that share a place in the relay (each must receive
/// and send the same types): `RelayGroup(FastParser(), CarefulParser())`. A group of one type
/// is simply an array.
public struct RelayGroup: RelayStageGroup {
    /// The stages of the group, in order.
    public let relayActors: [any RelayActor]

    /// A group of `actors`, in order.
    public init(_ actors: any RelayActor...) {
        relayActors = actors
    }
}
