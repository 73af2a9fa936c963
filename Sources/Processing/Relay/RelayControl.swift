import Synchronization

/// The main process's hold on a running relay, given to `Relay.start`'s handler.
public struct RelayControl: Sendable {
    let stopRelay: @Sendable () async -> Void
    /// Returns once every stage's process has ended (restarts included).
    let stagesEnded: @Sendable () async -> Void

    /// The stages' names, group by group ("Numbers", "Square#0", "Square#1", "Sum").
    public let stages: [[String]]

    /// Asks the relay to end gracefully: first stages see `isStopping` (their `loop()` should
    /// return), and a feed from the parent ends after the message it is sending. Every stage
    /// still drains what is queued and runs `shutdown()`.
    public func stop() async {
        await stopRelay()
    }
}
