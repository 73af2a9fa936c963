/// An operation as a value: call it (`try await handle.result()`), or modify it first.
///
/// Every waiting operation of a `ProcessHandle` (`start`, `result`, `wait`, `listen`, `tell`)
/// is a `Modifiable`, so the same modifiers apply to each, and they compose:
///
/// ```swift
/// let r  = try await handle.result()                          // async, the default
/// let r2 = try await handle.result.timeout(.seconds(10))()    // ResultTimeoutError after 10 s
/// let f  = handle.result.background()()                       // a Future, running now
/// let r3 = try handle.result.sync()()                         // blocks a non-async caller
/// let f2 = handle.result.timeout(.seconds(5)).background()()  // both
/// ```
///
/// `Base` names the operation; `Form` is how a call returns: `AsyncCall` (awaited),
/// `BackgroundCall` (a `Future` at once) or `SyncCall` (blocking the calling thread).
public struct Modifiable<Base: Sendable, Form: CallForm>: Sendable {
    /// The operation, with what it needs to run.
    let base: Base
    /// The operation's name, for errors ("result", "wait").
    let name: String
    /// The longest a call may take; nil for no limit.
    let limit: Duration?
    /// The run the process is in, for the error of a call that timed out.
    let currentRun: @Sendable () -> Int

    init(_ base: Base, name: String, limit: Duration? = nil, currentRun: @escaping @Sendable () -> Int = { 0 }) {
        (self.base, self.name, self.limit, self.currentRun) = (base, name, limit, currentRun)
    }

    private func with<NewForm>(_ form: NewForm.Type, limit: Duration?) -> Modifiable<Base, NewForm> {
        Modifiable<Base, NewForm>(base, name: name, limit: limit, currentRun: currentRun)
    }

    /// The same operation, failing with `ResultTimeoutError` if a call takes longer than
    /// `limit`. The call is cancelled then; the process itself goes on (use `kill()`, or
    /// `ProcessConfig.timeouts`, to end it). Two time-outs keep the shorter.
    public func timeout(_ limit: Duration) -> Modifiable<Base, Form> {
        with(Form.self, limit: self.limit.map { Swift.min($0, limit) } ?? limit)
    }
}

extension Modifiable where Form == AsyncCall {
    /// The same operation, called without `await`: a call starts it at once and returns a
    /// `Future` to await (`try await future.value`) or to wait for from synchronous code
    /// (`try future.wait()`).
    public func background() -> Modifiable<Base, BackgroundCall> { with(BackgroundCall.self, limit: limit) }

    /// The same operation for synchronous callers: a call blocks its thread until the
    /// operation finishes. Called from async code it throws `ProcessingError` with code
    /// `.blockingInAsyncContext` instead of risking a deadlock; use `await` there.
    public func sync() -> Modifiable<Base, SyncCall> { with(SyncCall.self, limit: limit) }
}

// MARK: - Performing a call in each form

extension Modifiable {
    /// Runs `body` under the time-out, if any: the first of the two to finish wins, and the
    /// other is cancelled.
    func perform<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let limit else { return try await body() }
        let (name, currentRun) = (name, currentRun)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw ResultTimeoutError(operation: name, timeout: limit, currentRun: currentRun())
            }
            return value
        }
    }

    /// Starts `body` in a task of its own and returns its future. `body` runs under the
    /// time-out unless it applies the time-out itself (`appliesLimit`).
    func performInBackground<T: Sendable>(
        appliesLimit: Bool = false, _ body: @escaping @Sendable () async throws -> T
    ) -> Future<T> {
        let modified = self
        return Future(operation: name) { try await appliesLimit ? body() : modified.perform(body) }
    }

    /// Blocks the calling thread until `body` finishes (under the time-out, as above).
    func performBlocking<T: Sendable>(
        appliesLimit: Bool = false, _ body: @escaping @Sendable () async throws -> T
    ) throws -> T {
        try Completion<T>.refuseToBlockInAsyncContext("\(name).sync()", instead: "try await …\(name)(…)")
        return try performInBackground(appliesLimit: appliesLimit, body).wait()
    }
}

/// How a `Modifiable` operation returns when called.
public protocol CallForm: Sendable {}

/// Called with `await`; the default form.
public enum AsyncCall: CallForm {}

/// Called without `await`; returns a `Future` and runs in the background.
public enum BackgroundCall: CallForm {}

/// Called from synchronous code; blocks the calling thread until done.
public enum SyncCall: CallForm {}

/// An operation without arguments that `Modifiable` can perform (`result`, `start`).
public protocol NullaryOperation: Sendable {
    /// What the operation returns.
    associatedtype Output: Sendable
    /// Performs the operation once.
    func perform() async throws -> Output
}

extension Modifiable where Base: NullaryOperation, Form == AsyncCall {
    /// Performs the operation.
    @discardableResult
    public func callAsFunction() async throws -> Base.Output {
        let base = base
        return try await perform { try await base.perform() }
    }
}

extension Modifiable where Base: NullaryOperation, Form == BackgroundCall {
    /// Starts the operation and returns its future.
    @discardableResult
    public func callAsFunction() -> Future<Base.Output> {
        let base = base
        return performInBackground { try await base.perform() }
    }
}

extension Modifiable where Base: NullaryOperation, Form == SyncCall {
    /// Performs the operation, blocking the calling thread.
    @discardableResult
    public func callAsFunction() throws -> Base.Output {
        let base = base
        return try performBlocking { try await base.perform() }
    }
}

/// An operation that cannot fail and returns nothing (`stop`, `kill`, `Pool.close`): called
/// with `await` and no `try`. A time-out only bounds the wait (`Pool.close`'s for the running
/// maps): the call returns when it passes, and the operation goes on.
public protocol WaitingOperation: Sendable {
    /// Performs the operation once.
    func perform() async
}

extension Modifiable where Base: WaitingOperation {
    /// Performs the operation, waiting at most the time-out (if one is set) and never failing.
    func performBounded() async {
        let base = base
        guard let limit else { return await base.perform() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await base.perform() }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }
}

extension Modifiable where Base: WaitingOperation, Form == AsyncCall {
    /// Performs the operation (waiting at most the time-out, if one is set).
    public func callAsFunction() async {
        await performBounded()
    }
}

extension Modifiable where Base: WaitingOperation, Form == BackgroundCall {
    /// Starts the operation and returns its future, which never throws.
    @discardableResult
    public func callAsFunction() -> Future<Void> {
        let modified = self
        return performInBackground(appliesLimit: true) { await modified.performBounded() }
    }
}

extension Modifiable where Base: WaitingOperation, Form == SyncCall {
    /// Performs the operation, blocking the calling thread (at most the time-out, if one is
    /// set). Throws only `ProcessingError` (`.blockingInAsyncContext`) if called from async
    /// code, where `await` is the way.
    public func callAsFunction() throws {
        let modified = self
        try performBlocking(appliesLimit: true) { await modified.performBounded() }
    }
}
