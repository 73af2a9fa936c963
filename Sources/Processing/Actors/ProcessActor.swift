import Distributed

/// A distributed actor that a child process can host: what `ProcessActorSystem.spawn` needs
/// to make it there, and the hooks that run in that process around its calls.
///
/// ```swift
/// distributed actor Detector: ProcessActor {
///     distributed func detect(_ frame: [UInt8]) -> [Box] { findBoxes(frame) }   // runs in the child
/// }
/// let detector = try await system.spawn(Detector.self)
/// ```
///
/// An actor whose stored properties all have initial values gets `init(actorSystem:)` from
/// the compiler. For values to make it with, conform to `ProcessActorWithParameters`.
public protocol ProcessActor: ProcessHostedActor {
    /// Makes the actor in its process (the child), with that process's system.
    init(actorSystem: ProcessActorSystem) async throws
}

/// A distributed actor that a child process makes from `Codable` parameters sent with the
/// spawn: `system.spawn(Detector.self, parameters: .init(threshold: 0.5))`.
public protocol ProcessActorWithParameters: ProcessHostedActor {
    /// What the actor is made from; it crosses to the child (actor references included).
    associatedtype Parameters: Codable & Sendable

    /// Makes the actor in its process (the child), with that process's system.
    init(actorSystem: ProcessActorSystem, parameters: Parameters) async throws
}

/// The hooks of an actor hosted in a child process (seed 004's `preRun__` and `postRun__`).
/// Conform through `ProcessActor` or `ProcessActorWithParameters`.
public protocol ProcessHostedActor: DistributedActor where ActorSystem == ProcessActorSystem {
    /// Runs in the child once the actor is made, before the spawn returns and before any call:
    /// what throws here fails the spawn. Defaults to nothing.
    func startup() async throws
    /// Runs in the child after `stop`, once the calls it had have finished; then the process
    /// exits. Defaults to nothing.
    func shutdown() async throws
}

extension ProcessHostedActor {
    /// Does nothing.
    public func startup() async throws {}
    /// Does nothing.
    public func shutdown() async throws {}
}
