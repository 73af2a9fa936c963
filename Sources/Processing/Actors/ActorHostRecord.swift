/// The parent's record of one actor process it spawned: the process, its handle (holding it
/// keeps the child; dropping the last reference kills it) and the connection to it.
final class ActorHostRecord: Sendable {
    let name: String
    let core: ProcessCore
    private let owner: any AnyObject & Sendable
    let connection: ActorConnection

    init(name: String, core: ProcessCore, owner: any AnyObject & Sendable, connection: ActorConnection) {
        (self.name, self.core, self.owner, self.connection) = (name, core, owner, connection)
    }

    /// Stops the process gracefully, killing it after `gracePeriod`: false if it was killed.
    /// Throws the process's failure (what `shutdown()` threw, a crash).
    func stop(gracePeriod: Duration) async throws -> Bool {
        connection.requestStop()
        var graceful = true
        if try await !core.waitForEnd(timeout: gracePeriod) {
            graceful = false
            await core.end()
        }
        if graceful, case .failure(let error)? = core.outcome { throw error }
        return graceful
    }

    /// Waits for the end; throws the process's failure.
    func waitForEnd() async throws {
        _ = try await core.waitForEnd(timeout: nil)
        if case .failure(let error)? = core.outcome { throw error }
    }

    /// Waits for the child's end even in a cancelled task, so that nothing outlives its owner.
    func ended() async { await core.ended() }
}
