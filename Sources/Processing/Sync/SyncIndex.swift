import Distributed

/// One event of an `EventGroup`, reserved until it has been set (seed 004's `SyncIndex`):
/// reserve, hand `index` to the process that sets it, wait, and the event is released.
///
/// ```swift
/// let sync = try SyncIndex(events)
/// try await worker.ping(signalling: sync.index)
/// try await sync.wait(setBy: worker)   // then released
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

    /// Waits until the event is set, then releases it. `setter` is the pid of the process
    /// that is to set it: if it ends first, this throws `EventGroupError` (`.setterEnded`).
    /// Throws `.timedOut` when `timeout` passes, and what `EventGroup.wait` throws; the event
    /// is released on every path.
    public func wait(setBy setter: Int32, timeout: Duration? = nil) async throws {
        defer { release() }
        try check(try await group.wait(index, setBy: setter, timeout: timeout), timeout)
    }

    /// Waits until the event is set, with no process watched (prefer `wait(setBy:timeout:)`),
    /// then releases it.
    public func wait(timeout: Duration? = nil) async throws {
        defer { release() }
        try check(try await group.wait(index, timeout: timeout), timeout)
    }

    private func check(_ set: Bool, _ timeout: Duration?) throws {
        guard set else { throw EventGroupError(.timedOut, "event \(index) was not set within \(timeout ?? .zero)") }
    }

    /// Releases the event without waiting.
    public func release() { group.release(index) }
}

extension EventGroup {
    /// Reserves an event, runs `body` with its index (to send it to the process `setter`,
    /// which sets it), waits until it is set, and releases it, also when `body` or the wait
    /// throws. Returns what `body` returned.
    public func withSyncIndex<R>(setBy setter: Int32, timeout: Duration? = nil,
                                 _ body: (Int) async throws -> R) async throws -> R {
        try await withSyncIndex(body) { sync in try await sync.wait(setBy: setter, timeout: timeout) }
    }

    /// Reserves, runs `body`, then `wait`s (which releases), releasing on every path.
    private func withSyncIndex<R>(_ body: (Int) async throws -> R,
                                  wait: (SyncIndex) async throws -> Void) async throws -> R {
        let sync = try SyncIndex(self)
        let value: R
        do {
            value = try await body(sync.index)
        } catch {
            sync.release()
            throw error
        }
        try await wait(sync)
        return value
    }
}

// MARK: Setters named by their actor

extension EventGroup {
    /// The pid of the process that hosts `actor`; throws `.setterEnded` when it has ended.
    static func pid<A: DistributedActor>(of actor: A, for index: Int) throws -> Int32
    where A.ActorSystem == ProcessActorSystem {
        guard let pid = actor.actorSystem.pid(of: actor) else {
            throw EventGroupError(.setterEnded, "the process of \(actor.id), which was to set event \(index), has ended")
        }
        return pid
    }

    /// Waits until event `index` is set by the process that hosts `actor` (see
    /// `wait(_:setBy:timeout:)`); throws `.setterEnded` if that process ends first.
    @discardableResult
    public func wait<A: DistributedActor>(_ index: Int, setBy actor: A, timeout: Duration? = nil) async throws -> Bool
    where A.ActorSystem == ProcessActorSystem {
        // Set, then ended: that is a success, and the pid is gone by then.
        if isSet(index) { return true }
        return try await wait(index, setBy: try Self.pid(of: actor, for: index), timeout: timeout)
    }

    /// `withSyncIndex(setBy:timeout:_:)` for an event set by the process that hosts `actor`.
    public func withSyncIndex<A: DistributedActor, R>(setBy actor: A, timeout: Duration? = nil,
                                                      _ body: (Int) async throws -> R) async throws -> R
    where A.ActorSystem == ProcessActorSystem {
        try await withSyncIndex(body) { sync in try await sync.wait(setBy: actor, timeout: timeout) }
    }
}

extension SyncIndex {
    /// `wait(setBy:timeout:)` for an event set by the process that hosts `actor`.
    public func wait<A: DistributedActor>(setBy actor: A, timeout: Duration? = nil) async throws
    where A.ActorSystem == ProcessActorSystem {
        if group.isSet(index) { return release() }
        let pid: Int32
        do {
            pid = try EventGroup.pid(of: actor, for: index)
        } catch {
            release()
            throw error
        }
        try await wait(setBy: pid, timeout: timeout)
    }
}
