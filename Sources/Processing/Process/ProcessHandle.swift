/// A process running (or about to run) in a child: start it, talk to it, stop it, and get
/// its result.
///
/// Dropping the last reference to a handle kills its child: a child never outlives what owns it.
public final class ProcessHandle<P: Skprocess>: Sendable {
    private let core: ProcessCore
    private let request: StartRequest

    /// Prepares `process` to run in a child; `start()` spawns it. Throws if the type cannot
    /// be found by name in a child (private, fileprivate, local) or does not encode.
    public init(_ process: P) throws {
        let typeName = try TypeName.locatable(P.self, role: "a process")
        _ = try TypeName.locatable(P.Output.self, role: "the result of \(String(reflecting: P.self))")
        let state: [UInt8]
        do {
            state = try BinaryEncoder().encode(process)
        } catch {
            throw ProcessingError(.encodingFailed, "\(String(reflecting: P.self)) could not be encoded to send to its child: \(error)")
        }
        request = StartRequest(typeName: typeName, state: state)
        core = ProcessCore(processName: String(reflecting: P.self))
    }

    deinit { core.abandon() }

    /// Spawns the child and starts the lifecycle. Returns once the child has the process.
    public func start() async throws {
        try await core.launch(request)
    }

    /// Waits for the process to end (finished, failed, stopped or killed). Returns false if
    /// `timeout` passes first; throws `CancellationError` if the waiting task is cancelled.
    @discardableResult
    public func wait(timeout: Duration? = nil) async throws -> Bool {
        try await core.waitForEnd(timeout: timeout)
    }

    /// The process's result, once it has ended. Throws the `ProcessError` it failed with
    /// (a hook's kind, `ProcessCrashError` for a crash or `kill()`), or a `ProcessingError`.
    public func result() async throws -> P.Output {
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

    /// Asks the process to stop gracefully: the current run finishes, then `onFinish` and
    /// `result` run. Use `wait()` or `result()` to wait for it.
    public func stop() async {
        await core.requestStop()
    }

    /// Kills the child now: no `onFinish`, no result (`result()` throws `ProcessCrashError`
    /// with cause `.killed`). Returns at once; `wait()` returns once it is gone.
    public func kill() async {
        core.kill()
    }

    /// Sends `value` to the process, which receives it with `listen` in its hooks.
    public func tell<T: Codable & Sendable>(_ value: T) async throws {
        try await core.send(Message.frame(value), operation: "tell")
    }

    /// The next value the process sent with `tell`, as a `T`; nil if `timeout` passes first.
    /// Throws `ProcessingError` with code `.messageTypeMismatch` if the next message is of
    /// another type (it stays queued), and `.channelClosed` once the process has ended and
    /// nothing is left to receive.
    public func listen<T: Codable & Sendable>(_ type: T.Type = T.self, timeout: Duration? = nil) async throws -> T? {
        try await core.mailbox.receive(T.self, timeout: timeout)
    }

    /// Whether the child is running.
    public var isAlive: Bool { core.isAlive }

    /// The run the process is in (0-based), as last reported; after it ends, the runs done.
    public var currentRun: Int { core.currentRun }

    /// The error the process failed with, once it has ended; nil while it runs or if it succeeded.
    public var error: (any Error)? {
        if case .failure(let error)? = core.outcome { return error }
        return nil
    }
}

extension Skprocess {
    /// Starts this process in a child and returns its handle.
    public func start() async throws -> ProcessHandle<Self> {
        let handle = try ProcessHandle(self)
        try await handle.start()
        return handle
    }
}
