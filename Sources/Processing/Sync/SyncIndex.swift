/// One event of an `EventGroup`, reserved until it has been set (seed 004's `SyncIndex`):
/// reserve, hand `index` to the process that sets it, wait, and the event is released.
///
/// ```swift
/// let sync = try SyncIndex(events)
/// try await worker.ping(signalling: sync.index)
/// try await sync.wait(setBy: system.pid(of: worker))   // then released
/// ```
///
/// `EventGroup.withSyncIndex` does the same around a closure, releasing on every path.
public struct SyncIndex: Sendable {
    /// The group the event belongs to.
    public let group: EventGroup
    /// The event's index, to send to the process that sets it.
    public let index: Int

    /// Reserves an event of `group`; throws `EventGroupError.exhausted` when none is free.
    public init(_ group: EventGroup) throws {
        self.group = group
        index = try group.reserve()
    }

    /// Waits until the event is set, then releases it. Throws what `EventGroup.wait` throws
    /// (the event is released then too), and `EventGroupError` (`.timedOut`) when
    /// `timeout` passes (use `EventGroup.wait` for a wait that may simply time out).
    public func wait(setBy setter: Int32? = nil, timeout: Duration? = nil) async throws {
        defer { release() }
        guard try await group.wait(index, setBy: setter, timeout: timeout) else {
            throw EventGroupError(.timedOut, "event \(index) was not set within \(timeout ?? .zero)")
        }
    }

    /// Releases the event without waiting.
    public func release() { group.release(index) }
}

extension EventGroup {
    /// Reserves an event, runs `body` with its index (to send it to the process that sets
    /// it), waits until it is set, and releases it, also when `body` or the wait throws.
    /// Returns what `body` returned.
    public func withSyncIndex<R>(setBy setter: Int32? = nil, timeout: Duration? = nil,
                                 _ body: (Int) async throws -> R) async throws -> R {
        let sync = try SyncIndex(self)
        let value: R
        do {
            value = try await body(sync.index)
        } catch {
            sync.release()
            throw error
        }
        try await sync.wait(setBy: setter, timeout: timeout)
        return value
    }
}
