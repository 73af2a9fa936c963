import Synchronization

/// The events of one process (`ProcessHandle.events`), one pool (`Pool.events`) or the whole
/// program (`ProcessEvents.program`), as an `AsyncSequence`.
///
/// ```swift
/// let handle = try ProcessHandle(Crawler())
/// let events = handle.events                      // listening from here on
/// try await handle.start()
/// for await event in events { print(event) }      // Crawler[4242] spawned, ... exited
/// ```
///
/// Each value listens from the moment it is made (get it before `start()` to see the spawn),
/// and is iterated once. A process's sequence ends after its `exited` event, a pool's when the
/// pool is closed or terminated; the program's never ends. Events are made only while
/// someone listens: nobody listening costs one atomic load per event. A listener that falls
/// 10,000 events behind misses the next ones and is told how many (`missed`).
public struct ProcessEvents: AsyncSequence, Sendable {
    public typealias Element = ProcessEvent

    private let stream: AsyncStream<ProcessEvent>

    /// Listens to the sources `filter` names; `hasEnded`: whether that source has ended
    /// already (then the sequence is empty).
    init(filter: EventHub.Filter, hasEnded: () -> Bool) {
        stream = EventHub.shared.subscribe(filter, hasEnded: hasEnded)
    }

    /// Every process's and every pool worker's events in this program, from now on.
    public static var program: ProcessEvents { ProcessEvents(filter: .all, hasEnded: { false }) }

    /// The iterator (once per value).
    public func makeAsyncIterator() -> AsyncStream<ProcessEvent>.Iterator {
        stream.makeAsyncIterator()
    }
}

/// Where events go: to the subscribers whose filter matches their source. Any thread.
final class EventHub: Sendable {
    static let shared = EventHub()

    /// Whose events a subscriber wants.
    enum Filter: Sendable, Equatable {
        case all
        case process(UInt64)
        case pool(UInt64)
    }

    /// Whose an event is.
    struct Source: Sendable {
        let process: UInt64?
        let pool: UInt64?
    }

    private struct Subscriber {
        let filter: Filter
        let continuation: AsyncStream<ProcessEvent>.Continuation
        var missed = 0
    }

    private struct State {
        var subscribers: [UInt64: Subscriber] = [:]
        var nextID: UInt64 = 1
    }

    /// How many iterate now: nothing is built for an event while this is 0.
    private let listeners = Atomic<Int>(0)
    private let state = Mutex(State())
    private let ids = Atomic<UInt64>(1)

    /// A new id for a process core or a pool.
    func makeSourceID() -> UInt64 { ids.wrappingAdd(1, ordering: .relaxed).oldValue }

    var isListened: Bool { listeners.load(ordering: .relaxed) > 0 }

    /// A new subscriber's events. `hasEnded` is asked once it is registered: a source that
    /// ended before finishes it at once, one that ends after finishes it then.
    func subscribe(_ filter: Filter, hasEnded: () -> Bool) -> AsyncStream<ProcessEvent> {
        let (stream, continuation) = AsyncStream<ProcessEvent>.makeStream(bufferingPolicy: .bufferingOldest(10_000))
        let id: UInt64 = state.withLock { state in
            defer { state.nextID += 1 }
            state.subscribers[state.nextID] = Subscriber(filter: filter, continuation: continuation)
            return state.nextID
        }
        listeners.add(1, ordering: .relaxed)
        continuation.onTermination = { [self] _ in
            if state.withLock({ $0.subscribers.removeValue(forKey: id) }) != nil {
                listeners.subtract(1, ordering: .relaxed)
            }
        }
        if hasEnded() { continuation.finish() }
        return stream
    }

    /// Emits the event `make` builds, if anyone listens.
    func emit(_ source: Source, _ make: () -> ProcessEvent) {
        guard isListened else { return }
        let event = make()
        let targets: [(UInt64, AsyncStream<ProcessEvent>.Continuation, Int)] = state.withLock { state in
            var targets: [(UInt64, AsyncStream<ProcessEvent>.Continuation, Int)] = []
            for (id, subscriber) in state.subscribers where Self.matches(subscriber.filter, source) {
                targets.append((id, subscriber.continuation, subscriber.missed))
                state.subscribers[id]?.missed = 0
            }
            return targets
        }
        for (id, continuation, missed) in targets {
            var lost = 0
            if missed > 0, case .dropped = continuation.yield(ProcessEvent(process: event.process, pid: nil, kind: .missed(count: missed))) {
                lost += missed
            }
            if case .dropped = continuation.yield(event) { lost += 1 }
            if lost > 0 { state.withLock { $0.subscribers[id]?.missed += lost } }
        }
    }

    /// The source ended: its own subscribers' sequences finish (after what was emitted).
    func finish(_ filter: Filter) {
        guard isListened else { return }
        let ended = state.withLock { state in
            state.subscribers.values.filter { $0.filter == filter }.map(\.continuation)
        }
        for continuation in ended { continuation.finish() }
    }

    private static func matches(_ filter: Filter, _ source: Source) -> Bool {
        switch filter {
        case .all: true
        case .process(let id): source.process == id
        case .pool(let id): source.pool == id
        }
    }
}
