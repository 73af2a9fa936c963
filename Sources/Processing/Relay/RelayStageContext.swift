import Synchronization

/// Where `RelayActor.send(_:)` finds its stage's outbox: set once in a stage's child, before
/// its first hook.
enum RelayStageContext {
    private static let current = Mutex<(any AnyObject & Sendable)?>(nil)

    static func install(_ outbox: any AnyObject & Sendable) {
        current.withLock { $0 = outbox }
    }

    /// The outbox of the stage running in this process, typed.
    static func outbox<Element, Stage>(for element: Element.Type, in stage: Stage.Type) throws(ProcessingError) -> RelayOutbox<Element> {
        guard let outbox = current.withLock({ $0 }) else {
            throw ProcessingError(.notInWorker, """
                send(_:) works only inside a relay stage's hooks, which run in its child process; \
                connect \(String(reflecting: Stage.self)) in a Relay and start it
                """)
        }
        guard let typed = outbox as? RelayOutbox<Element> else {
            throw ProcessingError(.invalidState, "send(_:) from \(String(reflecting: Stage.self)), which is not the stage running in this process")
        }
        return typed
    }
}
