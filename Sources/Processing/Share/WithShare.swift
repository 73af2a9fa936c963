/// Creates a share holding `initial`, runs `body` with it, and stops the share when the scope
/// ends, whether `body` returns or throws: afterwards, reads and updates of it in any process
/// throw `ProcessingError` (`.shareStopped`).
///
/// ```swift
/// let total = try await withShare(Stats()) { share in
///     try await withProcess(Worker(share: share)) { try await $0.wait() }
///     return try await share.counter
/// }
/// ```
public func withShare<State: Codable & Sendable, R>(
    _ initial: State,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (Share<State>) async throws -> R
) async throws -> R {
    let share = try await Share(initial)
    defer { try? share.storage.setRunning(false) }
    return try await body(share)
}
