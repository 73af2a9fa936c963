import Foundation
import Synchronization
import Testing
@testable import Processing

/// Item 13 kills its worker every time.
struct KillAt13: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int {
        if x == 13 { kill(getpid(), SIGKILL) }
        return x
    }
}

/// Writes its worker's pid into `directory`, then sleeps `x` ms.
struct NapAndReport: PoolWork {
    var directory: String
    func callAsFunction(_ x: Int) async throws -> Int {
        _ = FileManager.default.createFile(atPath: directory + "/\(getpid())", contents: nil)
        try await Task.sleep(for: .milliseconds(x))
        return x
    }
}

@Suite("Pool policies: item time-outs, retries, progress, cancellation, streaming modifiers", .timeLimit(.minutes(2)))
struct PoolPolicyTests {
    @Test("an item past its time-out fails with PoolTimeoutError; the pool goes on with a new worker")
    func itemTimeout() async throws {
        try await withPool(workers: 2) { (pool: Pool) async throws in
            let error = await expectError(PoolItemError.self) {
                try await pool.map.itemTimeout(.seconds(5))([10, 60_000, 20], Nap())
            }
            #expect(error?.index == 1)
            #expect((error?.error as? PoolTimeoutError)?.timeout == .seconds(5))
            #expect(try await pool.map.itemTimeout(.seconds(30))([1, 2, 3], Nap()) == [1, 2, 3])
        }
    }

    @Test("retries re-run a crashed worker's items one at a time, so only the poisonous one fails")
    func retries() async throws {
        let marker = NSTemporaryDirectory() + "processing-killonce-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try await withPool(workers: 2) { (pool: Pool) async throws in
            // Crashes once: with a retry, every item succeeds.
            let pids = try await pool.map.chunkSize(8).retries(1)(0..<40, KillOnce(marker: marker))
            #expect(pids.count == 40)
            // Crashes every time: without retries the whole batch (items 8...15) fails from its
            // first item; with them, exactly item 13.
            let whole = await expectError(PoolItemError.self) { try await pool.map.chunkSize(8)(0..<40, KillAt13()) }
            #expect(whole?.index == 8)
            let isolated = await expectError(PoolItemError.self) { try await pool.map.chunkSize(8).retries(2)(0..<40, KillAt13()) }
            #expect(isolated?.index == 13)
            #expect((isolated?.error as? ProcessCrashError)?.signal == SIGKILL)
            var survivors: [Int] = []
            do {
                for try await y in try pool.imap.chunkSize(8).retries(1)(0..<16, KillAt13()) { survivors.append(y) }
            } catch let error as PoolItemError {
                #expect(error.index == 13)
            }
            #expect(survivors == Array(0..<13))
        }
    }

    @Test("progress reports every item, in order, with the total once known")
    func progress() async throws {
        try await withPool(workers: 2) { (pool: Pool) async throws in
            let seen = Synchronization.Mutex<[PoolProgress]>([])
            _ = try await pool.map.progress { progress in seen.withLock { $0.append(progress) } }(0..<1000, Square())
            let reports = seen.withLock { $0 }
            #expect(reports.last?.completed == 1000)
            #expect(reports.allSatisfy { $0.total == 1000 })
            #expect(zip(reports, reports.dropFirst()).allSatisfy { $0.completed < $1.completed })
            #expect(reports.last?.fractionCompleted == 1)

            seen.withLock { $0 = [] }
            let input = AsyncStream { continuation in
                for x in 0..<20 { continuation.yield(x) }
                continuation.finish()
            }
            _ = try? await pool.map.chunkSize(1).progress { progress in seen.withLock { $0.append(progress) } }(input, FailAt(bad: 100))
            let streamed = seen.withLock { $0 }
            #expect(streamed.first?.total == nil)
            #expect(streamed.last?.total == 20)
            #expect(streamed.map(\.completed).max() == 20)
        }
    }

    @Test("cancelling a map kills its busy workers: none is left running")
    func cancellationKillsWorkers() async throws {
        let directory = NSTemporaryDirectory() + "processing-pids-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pool = Pool(workers: 2)
        let mapping = Task { try await pool.map.chunkSize(1)([60_000, 60_000], NapAndReport(directory: directory)) }
        var pids: [pid_t] = []
        while pids.count < 2 {
            try await Task.sleep(for: .milliseconds(20))
            pids = (try FileManager.default.contentsOfDirectory(atPath: directory)).compactMap { pid_t($0) }
        }
        mapping.cancel()
        await #expect(throws: (any Error).self) { try await mapping.value }
        // Both workers die and are reaped (kill(pid, 0) then fails with ESRCH).
        var alive = pids
        for _ in 0..<250 where !alive.isEmpty {
            alive = alive.filter { kill($0, 0) == 0 }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(alive.isEmpty)
        await pool.close()
    }

    @Test("streaming maps: timeout bounds the map, sync() gives a blocking sequence")
    func streamingModifiers() async throws {
        try await withPool(workers: 2) { (pool: Pool) async throws in
            _ = try await pool.map.chunkSize(1)([1, 1], Nap())   // both workers up
            var received: [Int] = []
            let error = await expectError(ResultTimeoutError.self) {
                for try await y in try pool.imap.chunkSize(1).timeout(.seconds(5))([10, 60_000], Nap()) { received.append(y) }
            }
            #expect(error?.operation == "Pool.imap")
            #expect(received == [10])
            let outcomes = try await onPlainThread {
                try pool.imap.sync()(0..<10, Square()).map { try $0.get() }
            }
            #expect(outcomes == (0..<10).map { $0 * $0 })
            let failed = try await onPlainThread {
                Array(try pool.unorderedIMap.chunkSize(1).sync()(0..<5, FailAt(bad: 2)))
            }
            #expect(failed.count <= 5)
            guard case .failure(let failure as PoolItemError)? = failed.last else {
                Issue.record("the last outcome is not the failure: \(failed)")
                return
            }
            #expect(failure.index == 2)
            #expect(throws: ProcessingError.self) { _ = try pool.imap.sync()(0..<3, Square()) }
        }
    }
}
