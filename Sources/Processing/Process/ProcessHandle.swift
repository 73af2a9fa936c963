/// A process running (or about to run) in a child: start it, talk to it, stop it, and get
/// its result.
///
/// `start`, `result`, `wait`, `listen` and `tell` are `Modifiable` operations: call them with
/// `await` (`try await handle.result()`), or modify them first
/// (`handle.result.timeout(.seconds(10))`, `.background()`, `.sync()`).
///
/// Dropping the last reference to a handle kills its child: a child never outlives what owns it.
///
/// `P.Output`, what `result()` returns, must be `Codable` and `Sendable`: a process whose
/// `result()` returns another type has no handle (a compile error where it is started).
public final class ProcessHandle<P: Skprocess>: Sendable where P.Output: Codable & Sendable {
    let core: ProcessCore

    /// Prepares `process` to run in a child; `start()` spawns it. Throws if the type cannot
    /// be found by name in a child (private, fileprivate, local) or does not encode, and
    /// `ProcessingError` (`.invalidConfiguration`) if its `processConfig` cannot work.
    public convenience init(_ process: P) throws {
        try self.init(process, displayName: String(describing: P.self))
    }

    /// Prepares `process` to run on `host` (``WorkerHost/local``, ``WorkerHost/ssh(_:options:binary:heartbeat:)``,
    /// a command launcher); `start()` starts it there, and its retries run there too. Throws
    /// `ProcessingError` (`.cannotCrossHosts`) if the process holds what cannot go to another
    /// host (a `Share`, a pipe point), before anything is sent.
    public convenience init(_ process: P, on host: WorkerHost) throws {
        try self.init(process, displayName: String(describing: P.self), on: host)
    }

    /// Prepares `process`, naming it `displayName` in its output lines, logs and events (a
    /// relay stage is named after its actor, not after the process type that hosts it);
    /// `runsErrorHandlerAfterCrash: false` ends it at a crash on its last life, without a
    /// child for `error(_:)`.
    init(_ process: P, displayName: String, on host: WorkerHost = .local, runsErrorHandlerAfterCrash: Bool = true) throws {
        try process.processConfig.validate(for: String(reflecting: P.self))
        try host.validate()
        let ((typeName, state), attachments) = try HostCrossing.encoding(for: host) {
            try DescriptorTransfer.collecting(moves: true) {
                try TypeName.encodeForChild(process, as: "a process", giving: P.Output.self,
                                            to: host.isLocal ? "its child" : "its child on \(host.name)")
            }
        }
        // The start request carries the state: refuse it now rather than after a spawn.
        try Frame.checkSize(state.count + typeName.utf8.count + 64, of: .start)
        core = ProcessCore(processName: String(reflecting: P.self), displayName: displayName,
                           typeName: typeName, initialState: state, initialAttachments: attachments,
                           config: process.processConfig, host: host, runsErrorHandlerAfterCrash: runsErrorHandlerAfterCrash)
    }

    deinit { core.abandon() }

    /// What the process wrote to its streams set to `.capture` (`ProcessConfig.stdout`,
    /// `.stderr`), across its retries: complete once it has ended, what came so far before.
    public var capturedOutput: CapturedOutput { core.capturedOutput }

    /// What happens to the process from now on, as an `AsyncSequence` of `ProcessEvent`s
    /// (spawned, ready, crashed, restarted, timed out, killed, exited); it ends after `exited`.
    /// Get it before `start()` to see the first spawn.
    public var events: ProcessEvents { core.events }

    /// Spawns the child and starts the lifecycle; returns once the child has the process.
    /// `try await handle.start()`.
    public var start: Modifiable<StartOperation, AsyncCall> { operation(StartOperation(core: core, owner: self), "start") }

    /// The process's result, once it has ended (across retries while it has lives).
    /// `try await handle.result()` throws the `ProcessError` it failed with (a hook's kind,
    /// `ProcessTimeoutError`, `ProcessCrashError` for a crash or `kill()`) or a `ProcessingError`.
    public var result: Modifiable<ResultOperation<P>, AsyncCall> { operation(ResultOperation(core: core, owner: self), "result") }

    /// Waits for the process to end (finished, failed, stopped or killed), across retries.
    /// `try await handle.wait()` returns true; `wait(timeout:)` returns false if the time-out
    /// passes first. Throws `CancellationError` if the waiting task is cancelled.
    public var wait: Modifiable<WaitOperation, AsyncCall> { operation(WaitOperation(core: core, owner: self), "wait") }

    /// The next value the process sent with `tell`:
    /// `try await handle.listen(String.self, timeout: .seconds(1))` gives it as a `String`, or
    /// nil if the time-out passes first. Throws `ProcessingError` with code
    /// `.messageTypeMismatch` if the next message is of another type (it stays queued), and
    /// `.channelClosed` once the process has ended and nothing is left to receive.
    public var listen: Modifiable<ListenOperation, AsyncCall> { operation(ListenOperation(core: core, owner: self), "listen") }

    /// Sends a value to the process, which receives it with `listen` in its hooks:
    /// `try await handle.tell("print")`. Returns once the value is written to the channel;
    /// told while the process restarts after a failure, it goes to the new child.
    public var tell: Modifiable<TellOperation, AsyncCall> { operation(TellOperation(core: core, owner: self), "tell") }

    private func operation<Base>(_ base: Base, _ name: String) -> Modifiable<Base, AsyncCall> {
        Modifiable(base, name: name) { [core] in core.currentRun }
    }

    /// Asks the process to stop gracefully: the current run finishes, then `onFinish` and
    /// `result` run. Use `wait()` or `result()` to wait for it. Returns at once, also when the
    /// child reads nothing for now (busy, or stopped with SIGSTOP): the stop goes ahead of
    /// messages not yet written, and reaches it when it reads again. `await handle.stop()`;
    /// from synchronous code, `try handle.stop.sync()()`.
    public var stop: Modifiable<StopOperation, AsyncCall> { operation(StopOperation(core: core), "stop") }

    /// Kills the child now, ignoring `lives`: no `onFinish`, no result (`result()` throws
    /// `ProcessCrashError` with cause `.killed`). Returns at once; `wait()` returns once it is
    /// gone. `await handle.kill()`; from synchronous code, `try handle.kill.sync()()`.
    public var kill: Modifiable<KillOperation, AsyncCall> { operation(KillOperation(core: core), "kill") }

    /// Whether the process is running (also while it restarts after a failure).
    public var isAlive: Bool { core.isAlive }

    /// The running child's pid; nil before it is spawned and once it has ended.
    public var pid: Int32? { core.pid }

    /// The run the process is in (0-based), as last reported; after it ends, the runs done.
    public var currentRun: Int { core.currentRun }

    /// The timings of the process's sections, recorded in the child. Complete once the
    /// process has ended; while it runs, as far as the child has reported them.
    public var timers: ProcessTimers { core.timers }

    /// The error the process failed with, once it has ended; nil while it runs or if it succeeded.
    public var error: (any Error)? {
        if case .failure(let error)? = core.outcome { return error }
        return nil
    }
}

extension Skprocess where Output: Codable & Sendable {
    /// Starts this process in a child and returns its handle.
    public func start() async throws -> ProcessHandle<Self> {
        let handle = try ProcessHandle(self)
        try await handle.start()
        return handle
    }

    /// Starts this process on `host` and returns its handle: `try await Counter().start(on:
    /// .ssh("me@build-box"))`. The first start on a remote host finds (or copies) this build
    /// there; see ``WorkerHost``.
    public func start(on host: WorkerHost) async throws -> ProcessHandle<Self> {
        let handle = try ProcessHandle(self, on: host)
        try await handle.start()
        return handle
    }
}
