/// Creates a share holding `initial`, runs `body` with it, and stops the share when the scope
/// ends, whether `body` returns or throws: afterwards, reads and updates of it in any process
/// throw `ProcessingError` (`.shareStopped`). (Stopping waits for the share's lock; a task
/// cancelled meanwhile stops waiting, and the share then stays running.)
///
/// ```swift
/// let total = try await withShare(Stats()) { share in
///     _ = try await withProcess(Worker(share: share)) { try await $0.wait() }
///     return try await share.counter
/// }
/// ```
public func withShare<State: Codable & Sendable, R>(
    _ initial: State,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (Share<State>) async throws -> R
) async throws -> R {
    let share = try await Share(initial)
    do {
        let value = try await body(share)
        try? await share.stop()
        return value
    } catch {
        // (A cancelled scope whose share's lock is held elsewhere leaves it running.)
        try? await share.stop()
        throw error
    }
}
