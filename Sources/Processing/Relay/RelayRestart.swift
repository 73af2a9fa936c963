import Synchronization

/// A stage restarted during a relay's run (a stage with `lives`): which, why, and what became
/// of the message it was handling. `Relay.restarts` lists them; each is also logged as a
/// warning in the main process.
public struct RelayRestart: Sendable, CustomStringConvertible {
    /// The stage ("Square#1").
    public let stage: String
    /// Its life now (2 after the first restart).
    public let life: Int
    /// Why its previous process ended (a `RelayError` naming the hook and error, or the crash).
    public let cause: RelayError
    /// The message it was handling when it died, as its sender numbered it: the sender's name
    /// and the message's index on that connection (0 for the first message it sent there).
    public let message: (sender: String, index: UInt64)?
    /// Whether that message was dropped, because the stage died on it twice; otherwise it was
    /// sent again to the new process.
    public let dropped: Bool

    /// A readable account.
    public var description: String {
        let handling = message.map { message in
            dropped
                ? "it died on message \(message.index) from \(message.sender) twice, so that message was dropped"
                : "message \(message.index) from \(message.sender), which it was handling, is tried once more"
        } ?? "it was not handling a message"
        return "\(cause); restarted (life \(life)): \(handling), and what it had not finished is sent to it again"
    }
}

/// A run's restarts, as they happen (the relay keeps it; its runs add to it).
final class RelayRestartLog: Sendable {
    private let entries = Mutex<[RelayRestart]>([])
    var all: [RelayRestart] { entries.withLock { $0 } }
    func append(_ restart: RelayRestart) { entries.withLock { $0.append(restart) } }
    func reset() { entries.withLock { $0 = [] } }
}
