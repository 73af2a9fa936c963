/// Starts `process` in a child, runs `body` with its handle, and ends the child when the
/// scope ends, whether `body` returns or throws: the child never outlives the scope.
///
/// ```swift
/// let total = try await withProcess(Counter()) { counter in
///     try await counter.result()
/// }
/// ```
///
/// A child still running when `body` finishes is killed (await `result()` or `wait()`
/// inside the scope to let it finish), and the scope returns only once it is reaped.
public func withProcess<P: Skprocess, R>(
    _ process: P,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ProcessHandle<P>) async throws -> R
) async throws -> R where P.Output: Codable & Sendable {
    let handle = try ProcessHandle(process)
    try await handle.start()
    do {
        let value = try await body(handle)
        await handle.core.end()
        return value
    } catch {
        await handle.core.end()
        throw error
    }
}

extension ProcessCore {
    /// Kills the child if it still runs and waits until it is reaped, even in a cancelled task.
    func end() async {
        kill()
        await ended()
    }

    /// Waits until the process has ended and its last child is reaped, even in a cancelled task
    /// (so that nothing outlives what owns it).
    func ended() async {
        await Task { [self] in _ = try? await waitForEnd(timeout: nil) }.value
        await untilReaped()
    }
}
