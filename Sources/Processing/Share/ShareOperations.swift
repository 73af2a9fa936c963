/// `Share.update`: applies a closure to the state, atomically for every process holding the
/// share. `try await share.update { $0.counter += 1 }`, `share.update.timeout(.seconds(1))() { … }`,
/// `try share.update.sync() { … }`.
public struct ShareUpdateOperation<State: Codable & Sendable>: Sendable {
    let storage: ShareStorage<State>
}

/// `Share.read`: the state as of the last finished update. `try await share.read()`.
public struct ShareReadOperation<State: Codable & Sendable>: NullaryOperation {
    let storage: ShareStorage<State>

    /// Reads the state, waiting (without holding a thread) while another process holds the lock.
    public func perform() async throws -> State {
        if let state = try storage.ifUnlocked("read", { try storage.readLocked { $0 } }) { return state }
        return try await ShareLockWait.run(operation: "Share.read", limit: nil) {
            try storage.ifUnlocked("read") { try storage.readLocked { $0 } }
        }
    }
}

extension Modifiable where Form == AsyncCall {
    /// Applies `body` to the state and returns what it returns; the state is published once
    /// `body` returns (if it throws, nothing changes). Waits for the lock without holding a
    /// thread: cancelling the task, or the `timeout` modifier, ends the wait.
    public func callAsFunction<State, R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (inout State) throws -> R
    ) async throws -> R where Base == ShareUpdateOperation<State> {
        let storage = base.storage
        // Uncontended, the usual case: no async call, no waiting machinery.
        if let result = try storage.ifUnlocked("update", { try storage.updateLocked(body) }) { return result }
        return try await ShareLockWait.run(operation: name, limit: limit) {
            try storage.ifUnlocked("update") { try storage.updateLocked(body) }
        }
    }
}

extension Modifiable where Form == SyncCall {
    /// Applies `body` to the state, blocking the calling thread while another process holds
    /// the lock (up to the `timeout`, if one was set). Called from async code it throws
    /// `ProcessingError` (`.blockingInAsyncContext`): use `try await share.update { … }` there.
    public func callAsFunction<State, R>(_ body: (inout State) throws -> R) throws -> R where Base == ShareUpdateOperation<State> {
        try Completion<Void>.refuseToBlockInAsyncContext("Share.update.sync()", instead: "try await share.update { … }")
        let storage = base.storage
        return try ShareLockWait.runBlocking(operation: name, limit: limit, attempt: {
            try storage.ifUnlocked("update") { try storage.updateLocked(body) }
        }, blocking: {
            try storage.blockingUntilUnlocked("update") { try storage.updateLocked(body) }
        })
    }
}
