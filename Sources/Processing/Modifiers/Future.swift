import Dispatch
import Synchronization

/// The result of an operation started with the `background()` modifier: it runs at once, in
/// a task of its own, and you collect its value later, from async code (`try await
/// future.value`) or from synchronous code (`try future.wait()`).
public final class Future<Value: Sendable>: Sendable {
    private let task: Task<Value, any Error>
    private let completion: Completion<Value>
    private let operation: String

    init(operation: String, _ body: @escaping @Sendable () async throws -> Value) {
        let completion = Completion<Value>()
        self.operation = operation
        self.completion = completion
        task = Task.detached {
            do {
                let value = try await body()
                completion.complete(.success(value))
                return value
            } catch {
                completion.complete(.failure(error))
                throw error
            }
        }
    }

    /// The operation's value, once it has finished; rethrows what it threw.
    public var value: Value {
        get async throws { try await task.value }
    }

    /// Blocks the calling thread until the operation finishes; for synchronous code. Called
    /// from async code it throws `ProcessingError` (`.blockingInAsyncContext`): use `value`.
    public func wait() throws -> Value {
        try Completion<Value>.refuseToBlockInAsyncContext("Future.wait() for \(operation)", instead: "try await future.value")
        return try completion.wait().get()
    }

    /// Whether the operation has finished (with a value or an error).
    public var isDone: Bool { completion.isDone }

    /// Cancels the operation; waiting for it then throws `CancellationError` (or what the
    /// operation threw as it stopped).
    public func cancel() { task.cancel() }
}

/// A result that threads can block on until it is set once.
final class Completion<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var sleepers: [DispatchSemaphore] = []
    }

    private let state = Mutex(State())

    var isDone: Bool { state.withLock { $0.result != nil } }

    func complete(_ result: Result<Value, any Error>) {
        let sleepers = state.withLock { state in
            state.result = result
            defer { state.sleepers = [] }
            return state.sleepers
        }
        for sleeper in sleepers { sleeper.signal() }
    }

    func wait() -> Result<Value, any Error> {
        let sleeper = DispatchSemaphore(value: 0)
        if let result = state.withLock({ state in
            if state.result == nil { state.sleepers.append(sleeper) }
            return state.result
        }) {
            return result
        }
        sleeper.wait()
        return state.withLock { $0.result! }
    }

    /// Blocking a thread that runs a task could starve the cooperative pool of the thread the
    /// awaited work needs, a deadlock with no message: refuse, saying what to write instead.
    static func refuseToBlockInAsyncContext(_ what: String, instead: String) throws(ProcessingError) {
        guard withUnsafeCurrentTask(body: { $0 != nil }) else { return }
        throw ProcessingError(.blockingInAsyncContext, """
            \(what) blocks its thread and was called from async code, where that can deadlock the \
            cooperative thread pool; write `\(instead)` there, and keep sync() and wait() for \
            synchronous callers (a plain thread, a C callback, a DispatchQueue block)
            """)
    }
}
