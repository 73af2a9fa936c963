import Foundation
import Testing
@testable import Processing

struct ScopeReport: Codable, Sendable, Equatable {
    var threw: Bool
    var childrenInScope: Int
    var childrenAfter: Int
}

/// Runs inside a child, so that tests beside it do not disturb its count of children: opens a
/// `withProcess` scope on a process that runs forever, throws inside it, and counts.
struct ScopeProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> ScopeReport {
        var childrenInScope = 0
        var threw = false
        do {
            try await withProcess(Sleeper()) { handle in
                childrenInScope = childProcessIDs().count
                throw TestFailure(code: 1)
            }
        } catch is TestFailure {
            threw = true
        }
        return ScopeReport(threw: threw, childrenInScope: childrenInScope, childrenAfter: childProcessIDs().count)
    }
}

@Suite("Scoped lifetimes and cancellation", .timeLimit(.minutes(1)))
struct ProcessScopeTests {
    @Test("withProcess leaves no child after a throw inside the scope")
    func scopeEndsChildOnThrow() async throws {
        let report = try await ScopeProbe().start().result()
        #expect(report == ScopeReport(threw: true, childrenInScope: 1, childrenAfter: 0))
    }

    @Test("withProcess returns only once its child is reaped, also when the process ended on its result")
    func scopeWaitsForReap() async throws {
        for _ in 0..<5 {
            var childPID: pid_t?
            let total = try await withProcess(Counter()) { handle in
                childPID = handle.pid
                return try await handle.result()
            }
            let pid = try #require(childPID)
            #expect(total == 10)
            // A zombie is still this process's child: reaped, it is gone.
            #expect(processParent(pid) != getpid(), "withProcess returned before its child \(pid) was reaped")
        }
    }

    @Test("withProcess returns the scope's value, and the process's result can be awaited inside")
    func scopeReturnsValue() async throws {
        let total = try await withProcess(Counter()) { try await $0.result() }
        #expect(total == 10)
    }

    @Test("cancelling a task that awaits result(), wait() or listen() ends it with CancellationError",
          arguments: ["result", "wait", "listen"])
    func cancellation(operation: String) async throws {
        let handle = try await Sleeper().start()
        let waiter = Task {
            switch operation {
            case "result": _ = try await handle.result()
            case "wait": try await handle.wait()
            default: _ = try await handle.listen(String.self)
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let cancelled = ContinuousClock.now
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        print("cancelled \(operation)() returned after \(ContinuousClock.now - cancelled)")
        #expect(handle.isAlive)  // cancelling a waiter does not end the process; its owner does
        await handle.kill()
        try await handle.wait()
    }
}
