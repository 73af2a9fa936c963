import Synchronization

/// Where `RelayActor.send(_:)` finds its stage's outbox: set once in a stage's child, before
/// its first hook.
@usableFromInline
enum RelayStageContext {
    /// The outbox, and the type of what it sends (checked before the cast, which then need
    /// not be a dynamic one: this runs for every message).
    @usableFromInline
    static let current = Mutex<(outbox: any AnyObject & Sendable, element: ObjectIdentifier)?>(nil)

    static func install<Element: Encodable & Sendable>(_ outbox: RelayOutbox<Element>) {
        current.withLock { $0 = (outbox, ObjectIdentifier(Element.self)) }
    }

    /// The outbox of the stage running in this process, typed.
    @inlinable
    static func outbox<Element: Encodable & Sendable, Stage>(for element: Element.Type, in stage: Stage.Type) throws(ProcessingError) -> RelayOutbox<Element> {
        guard let (outbox, installed) = current.withLock({ $0 }) else {
            throw ProcessingError(.notInWorker, """
                send(_:) works only inside a relay stage's hooks, which run in its child process; \
                connect \(String(reflecting: Stage.self)) in a Relay and start it
                """)
        }
        guard installed == ObjectIdentifier(Element.self) else {
            throw ProcessingError(.invalidState, "send(_:) from \(String(reflecting: Stage.self)), which is not the stage running in this process")
        }
        return unsafeDowncast(outbox, to: RelayOutbox<Element>.self)
    }
}
