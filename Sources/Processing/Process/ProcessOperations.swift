/// `ProcessHandle.start`: spawns the child.
public struct StartOperation: NullaryOperation {
    let core: ProcessCore
    /// The handle, kept alive while a call runs: dropping the last reference kills the child.
    let owner: any AnyObject & Sendable

    /// Spawns the child and hands it the process.
    public func perform() async throws {
        try await core.launch()
    }
}

/// `ProcessHandle.result`: the process's result once it has ended.
public struct ResultOperation<P: Skprocess>: NullaryOperation where P.Output: Codable & Sendable {
    let core: ProcessCore
    /// The handle, kept alive while a call runs: dropping the last reference kills the child.
    let owner: any AnyObject & Sendable

    /// Waits for the process to end and returns its result, or throws why it failed.
    public func perform() async throws -> P.Output {
        _ = try await core.waitForEnd(timeout: nil)
        switch core.outcome {
        case .output(_, let bytes)?:
            do {
                return try BinaryDecoder().decode(P.Output.self, from: bytes)
            } catch {
                throw ProcessingError(.decodingFailed, "the result of \(core.processName) could not be decoded: \(error)")
            }
        case .failure(let error)?:
            throw error
        case nil:
            throw ProcessingError(.invalidState, "\(core.processName) has not ended")
        }
    }
}

/// `ProcessHandle.stop`: asks the process to stop.
public struct StopOperation: WaitingOperation {
    let core: ProcessCore

    /// Asks for the stop; returns at once.
    public func perform() async { core.requestStop() }
}

/// `ProcessHandle.kill`: kills the process's child.
public struct KillOperation: WaitingOperation {
    let core: ProcessCore

    /// Kills it; returns at once.
    public func perform() async { core.kill() }
}

/// `ProcessHandle.wait`: waits for the process to end.
public struct WaitOperation: Sendable {
    let core: ProcessCore
    /// The handle, kept alive while a call runs: dropping the last reference kills the child.
    let owner: any AnyObject & Sendable
}

/// `ProcessHandle.listen`: the next message from the process.
public struct ListenOperation: Sendable {
    let core: ProcessCore
    /// The handle, kept alive while a call runs: dropping the last reference kills the child.
    let owner: any AnyObject & Sendable
}

/// `ProcessHandle.tell`: sends a message to the process.
public struct TellOperation: Sendable {
    let core: ProcessCore
    /// The handle, kept alive while a call runs: dropping the last reference kills the child.
    let owner: any AnyObject & Sendable
}

// MARK: - wait

extension Modifiable where Base == WaitOperation, Form == AsyncCall {
    /// Waits for the process to end; false if `timeout` passes first.
    @discardableResult
    public func callAsFunction(timeout: Duration? = nil) async throws -> Bool {
        let base = base
        return try await perform { try await base.core.waitForEnd(timeout: timeout) }
    }
}

extension Modifiable where Base == WaitOperation, Form == BackgroundCall {
    /// Starts waiting for the process to end; the future's value is false if `timeout` passed first.
    @discardableResult
    public func callAsFunction(timeout: Duration? = nil) -> Future<Bool> {
        let base = base
        return performInBackground { try await base.core.waitForEnd(timeout: timeout) }
    }
}

extension Modifiable where Base == WaitOperation, Form == SyncCall {
    /// Blocks until the process ends; false if `timeout` passes first.
    @discardableResult
    public func callAsFunction(timeout: Duration? = nil) throws -> Bool {
        let base = base
        return try performBlocking { try await base.core.waitForEnd(timeout: timeout) }
    }
}

// MARK: - listen

extension ListenOperation {
    /// The mailbox's own time-out serves a `timeout` modifier too: a message that arrives as
    /// the time-out passes stays queued instead of being lost with a cancelled task.
    func receive<T: Codable & Sendable>(_ type: T.Type, timeout: Duration?, limit: Duration?,
                                        currentRun: @Sendable () -> Int) async throws -> T? {
        guard let limit, timeout.map({ limit < $0 }) ?? true else {
            return try await core.mailbox.receive(T.self, timeout: timeout, polling: core.channel)
        }
        guard let message = try await core.mailbox.receive(T.self, timeout: limit, polling: core.channel) else {
            throw ResultTimeoutError(operation: "listen", timeout: limit, currentRun: currentRun())
        }
        return message
    }
}

extension Modifiable where Base == ListenOperation, Form == AsyncCall {
    /// The next message, as a `T`; nil if `timeout` passes first.
    public func callAsFunction<T: Codable & Sendable>(_ type: T.Type = T.self, timeout: Duration? = nil) async throws -> T? {
        try await base.receive(T.self, timeout: timeout, limit: limit, currentRun: currentRun)
    }
}

extension Modifiable where Base == ListenOperation, Form == BackgroundCall {
    /// Starts listening for the next message; the future's value is nil if `timeout` passed first.
    public func callAsFunction<T: Codable & Sendable>(_ type: T.Type = T.self, timeout: Duration? = nil) -> Future<T?> {
        let (base, limit, currentRun) = (base, limit, currentRun)
        return performInBackground(appliesLimit: true) {
            try await base.receive(T.self, timeout: timeout, limit: limit, currentRun: currentRun)
        }
    }
}

extension Modifiable where Base == ListenOperation, Form == SyncCall {
    /// Blocks until the next message arrives; nil if `timeout` passes first.
    public func callAsFunction<T: Codable & Sendable>(_ type: T.Type = T.self, timeout: Duration? = nil) throws -> T? {
        let (base, limit, currentRun) = (base, limit, currentRun)
        return try performBlocking(appliesLimit: true) {
            try await base.receive(T.self, timeout: timeout, limit: limit, currentRun: currentRun)
        }
    }
}

// MARK: - tell

extension Modifiable where Base == TellOperation, Form == AsyncCall {
    /// Sends `value` to the process.
    public func callAsFunction<T: Codable & Sendable>(_ value: T) async throws {
        let base = base
        let frame = try Message.frame(value, moves: true, to: base.core.host)
        try await perform { try await base.core.send(frame, operation: "tell") }
    }
}

extension Modifiable where Base == TellOperation, Form == BackgroundCall {
    /// Starts sending `value` to the process.
    @discardableResult
    public func callAsFunction<T: Codable & Sendable>(_ value: T) -> Future<Void> {
        let base = base
        return performInBackground { try await base.core.send(Message.frame(value, moves: true, to: base.core.host), operation: "tell") }
    }
}

extension Modifiable where Base == TellOperation, Form == SyncCall {
    /// Sends `value` to the process, blocking until it is written.
    public func callAsFunction<T: Codable & Sendable>(_ value: T) throws {
        let base = base
        let frame = try Message.frame(value, moves: true, to: base.core.host)
        try performBlocking { try await base.core.send(frame, operation: "tell") }
    }
}
