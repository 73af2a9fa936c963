/// A process defined as a type: its state is its stored properties, its work is its
/// lifecycle hooks, and it runs in a child process.
///
/// ```swift
/// struct Counter: Skprocess {
///     var counter = 0
///     var processConfig = ProcessConfig(runs: 10)
///     mutating func run() async throws { counter += 1 }
///     func result() async throws -> Int { counter }
/// }
/// let handle = try await Counter().start()
/// let total = try await handle.result()   // 10
/// ```
///
/// The value is encoded in the parent, sent to a child process (this program's own binary,
/// re-executed), decoded there, and its hooks run in this order:
/// `prerun`, `run`, `postrun` for each run (`processConfig.runs` times, or until `stop()`),
/// then `onFinish`, then `result`. When a hook throws and no lives are left, `error(_:)`
/// decides the result; its default rethrows, so `result()` on the handle throws.
///
/// The type must be `Codable` and findable by name in the child: internal or public, not
/// `private`, `fileprivate` or declared inside a function (`start()` refuses those).
public protocol Skprocess: Codable {
    /// What `result()` returns; `NoResult` when the process defines no `result()`. It must be
    /// `Codable` and `Sendable` to cross back to the parent: `start()` requires it, so a
    /// `result()` returning another type is a compile error where the process is started,
    /// rather than a `NoResult` in its place. (It is left unconstrained here on purpose: with
    /// the constraint, such a `result()` would not count as the requirement's witness, and the
    /// default `NoResult` would be taken silently.)
    associatedtype Output = NoResult

    /// How the process runs. Declare it as a stored property to configure it.
    var processConfig: ProcessConfig { get }

    /// Whether the `Reconnector`s in the process (connections, files) connect again in the
    /// child before the first hook, and with which passwords. `.off` by default; declare
    /// `static let autoreconnect = Autoreconnect([...])` to turn it on.
    static var autoreconnect: Autoreconnect { get }

    /// Runs before each `run()`.
    mutating func prerun() async throws
    /// The work of one run. Required.
    mutating func run() async throws
    /// Runs after each `run()`.
    mutating func postrun() async throws
    /// Runs once after the last run (the run limit, or `stop()`).
    mutating func onFinish() async throws
    /// The process's result, returned by `result()` on its handle.
    mutating func result() async throws -> Output
    /// Decides the result when the process failed and has no lives left. Throw to fail;
    /// the default rethrows `error`.
    mutating func error(_ error: any ProcessError) async throws -> Output
}

/// The result of a process that defines no `result()`.
public struct NoResult: Codable, Sendable, Equatable {
    /// Creates the empty result.
    public init() {}
}

extension Skprocess {
    /// The default: runs until `stop()`, with one life and no time limits.
    public var processConfig: ProcessConfig { ProcessConfig() }
    /// Off by default: placeholders stay placeholders until `reconnectAll(_:auth:)`.
    public static var autoreconnect: Autoreconnect { .off }
    /// Does nothing by default.
    public mutating func prerun() async throws {}
    /// Does nothing by default.
    public mutating func postrun() async throws {}
    /// Does nothing by default.
    public mutating func onFinish() async throws {}
    /// Rethrows `error` by default, so the handle's `result()` throws it.
    public mutating func error(_ error: any ProcessError) async throws -> Output { throw error }
}

extension Skprocess where Output == NoResult {
    /// Returns `NoResult()` for a process that defines no result.
    public mutating func result() async throws -> NoResult { NoResult() }
}

// MARK: - Talking to the parent from inside the hooks

extension Skprocess {
    /// Sends `value` to the parent, which receives it with `listen` on the handle.
    /// Works inside the lifecycle hooks, which run in the child.
    public func tell<T: Codable & Sendable>(_ value: T) async throws {
        try await WorkerContext.require("tell").tell(value)
    }

    /// The next value the parent sent with `tell`, as a `T`; nil if `timeout` passes first,
    /// or once the parent has asked the process to stop and nothing it sent is left queued
    /// (whether the stop came while this waited or before it began).
    /// Works inside the lifecycle hooks, which run in the child.
    public func listen<T: Codable & Sendable>(_ type: T.Type = T.self, timeout: Duration? = nil) async throws -> T? {
        let context = try WorkerContext.require("listen")
        return try await context.mailbox.receive(T.self, timeout: timeout, polling: context.channel)
    }

    /// Asks the process to stop: the current run finishes (its `postrun` included), then
    /// `onFinish` and `result` run. Works inside the lifecycle hooks.
    public func stop() {
        guard let context = WorkerContext.active else {
            WorkerContext.warnOutsideWorker("stop()")
            return
        }
        context.requestStop()
    }

    /// The run in progress (0-based); after the last run, the number of runs done.
    /// Inside the hooks; 0 elsewhere.
    public var currentRun: Int { WorkerContext.active?.currentRun ?? 0 }
}
