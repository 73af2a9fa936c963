import Synchronization

/// The binary each remote host runs, found once per host (and copied there if need be):
/// every worker started on the host afterwards uses it without asking again. A failure is
/// not kept: the next start asks again (the host may be back).
final class RemoteBinaries: Sendable {
    static let shared = RemoteBinaries()

    private let found = Mutex<[WorkerHost: Task<String, any Error>]>([:])

    /// The path of this program's build on `host`; concurrent starts share one look.
    func path(on host: WorkerHost) async throws -> String {
        let task = found.withLock { found in
            if let task = found[host] { return task }
            let task = Task { try await RemoteLauncher(host: host).resolveBinary() }
            found[host] = task
            return task
        }
        do {
            return try await Self.value(of: task)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            found.withLock { found in
                if found[host] == task { found[host] = nil }
            }
            throw error
        }
    }

    /// `task`'s value; a cancelled caller stops waiting at once (the task goes on, for the
    /// next start on that host).
    private static func value(of task: Task<String, any Error>) async throws -> String {
        let waiter = Waiter()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiter.slot.withLock { $0 = continuation }
                if Task.isCancelled {
                    waiter.slot.withLock { $0.take() }?.resume(throwing: CancellationError())
                    return
                }
                Task {
                    let result = await task.result
                    waiter.slot.withLock { $0.take() }?.resume(with: result)
                }
            }
        } onCancel: {
            waiter.slot.withLock { $0.take() }?.resume(throwing: CancellationError())
        }
    }

    /// Forgets what was found for `host` (its binary was removed, say).
    func forget(_ host: WorkerHost) {
        _ = found.withLock { $0.removeValue(forKey: host) }
    }

    /// The one continuation that the value or the cancellation resumes, whichever is first.
    private final class Waiter: Sendable {
        let slot = Mutex<CheckedContinuation<String, any Error>?>(nil)
    }
}
