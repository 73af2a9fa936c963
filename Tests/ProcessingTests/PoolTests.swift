import Foundation
import Testing
@testable import Processing

struct Square: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int { x * x }
}

struct Scale: PoolWork {
    var factor: Int
    func callAsFunction(_ x: Int) async throws -> Int { x * factor }
}

/// Sleeps `x` milliseconds, then returns `x`.
struct Nap: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(x))
        return x
    }
}

/// Returns `x`; item 300 first waits until the file `marker` exists.
struct Gated: PoolWork {
    var marker: String
    func callAsFunction(_ x: Int) async throws -> Int {
        while x == 300, !FileManager.default.fileExists(atPath: marker) { try await Task.sleep(for: .milliseconds(5)) }
        return x
    }
}

/// Throws for one item.
struct FailAt: PoolWork {
    var bad: Int
    func callAsFunction(_ x: Int) async throws -> Int {
        if x == bad { throw TestFailure(code: x) }
        return x
    }
}

/// Reports the worker's pid; item 13 kills its worker the first time (a marker file says so).
struct KillOnce: PoolWork {
    var marker: String
    func callAsFunction(_ x: Int) async throws -> Int32 {
        if x == 13, !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            kill(getpid(), SIGKILL)
        }
        return getpid()
    }
}

/// Counts up forever.
struct Naturals: AsyncSequence, Sendable {
    struct AsyncIterator: AsyncIteratorProtocol {
        var next = 0
        mutating func next() async -> Int? {
            defer { next += 1 }
            return next
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}

@Suite("Pool", .timeLimit(.minutes(2)))
struct PoolTests {
    @Test("map keeps input order; unorderedMap returns every output")
    func maps() async throws {
        try await withPool(workers: 2) { pool in
            #expect(try await pool.map(0..<1000, Square()) == (0..<1000).map { $0 * $0 })
            #expect(try await pool.map(Array(1...5), Scale(factor: 3)) == [3, 6, 9, 12, 15])
            let unordered = try await pool.unorderedMap(0..<500, Square())
            #expect(unordered.sorted() == (0..<500).map { $0 * $0 })
            #expect(try await pool.map([Int](), Square()).isEmpty)
        }
    }

    @Test("imap is ordered, unorderedIMap comes fastest first, over both input kinds")
    func streams() async throws {
        try await withPool(workers: 2) { pool in
            var ordered: [Int] = []
            for try await y in try pool.imap([300, 10, 20], Nap()) { ordered.append(y) }
            #expect(ordered == [300, 10, 20])
            // The slow item waits for a marker made after the first result, so that the first
            // result cannot be it however loaded the machine is.
            let marker = NSTemporaryDirectory() + "processing-gate-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: marker) }
            var unordered: [Int] = []
            for try await y in try pool.unorderedIMap.chunkSize(1)([300, 10, 20], Gated(marker: marker)) {
                if unordered.isEmpty { _ = FileManager.default.createFile(atPath: marker, contents: nil) }
                unordered.append(y)
            }
            #expect(unordered.first != 300 && unordered.sorted() == [10, 20, 300])

            let asyncInput = AsyncStream<Int> { continuation in
                for x in 0..<100 { continuation.yield(x) }
                continuation.finish()
            }
            var fromAsync: [Int] = []
            for try await y in try pool.imap(asyncInput, Square()) { fromAsync.append(y) }
            #expect(fromAsync == (0..<100).map { $0 * $0 })
        }
    }

    @Test("an endless input, iterated with break, stops the map")
    func endlessInput() async throws {
        try await withPool(workers: 2) { pool in
            var seen = 0
            for try await y in try pool.imap(Naturals(), Square()) {
                #expect(y == seen * seen)
                seen += 1
                if seen == 5000 { break }
            }
            #expect(seen == 5000)
            // The pool still works after the broken-off map.
            #expect(try await pool.map(0..<10, Square()) == (0..<10).map { $0 * $0 })
        }
    }

    @Test("an item that throws fails with its index and the original error")
    func throwingItem() async throws {
        try await withPool(workers: 2) { pool in
            let error = await expectError(PoolItemError.self) { try await pool.map(0..<200, FailAt(bad: 77)) }
            #expect(error?.index == 77)
            #expect((error?.error as? RemoteError)?.value as? TestFailure == TestFailure(code: 77))
            var received: [Int] = []
            do {
                for try await y in try pool.imap.chunkSize(1)(0..<10, FailAt(bad: 4)) { received.append(y) }
                Issue.record("expected the stream to throw")
            } catch let error as PoolItemError {
                #expect(error.index == 4)
            }
            #expect(received == [0, 1, 2, 3])
        }
    }

    @Test("a worker SIGKILLed mid-map fails only its batch, and the pool keeps working")
    func workerKilled() async throws {
        let marker = NSTemporaryDirectory() + "processing-killonce-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try await withPool(workers: 2) { pool in
            let error = await expectError(PoolItemError.self) {
                try await pool.map.chunkSize(1)(0..<40, KillOnce(marker: marker))
            }
            #expect(error?.index == 13)
            #expect((error?.error as? ProcessCrashError)?.signal == SIGKILL)
            let pids = try await pool.map.chunkSize(1)(0..<40, KillOnce(marker: marker))
            #expect(pids.count == 40)
        }
    }

    @Test("cancelling the task that awaits a map stops it promptly")
    func cancellation() async throws {
        let pool = Pool(workers: 2)
        let mapping = Task { try await pool.map.chunkSize(1)(Array(repeating: 60_000, count: 4), Nap()) }
        try await Task.sleep(for: .milliseconds(300))
        mapping.cancel()
        await #expect(throws: (any Error).self) { try await mapping.value }
        #expect(try await pool.map(0..<10, Square()).count == 10)
        await pool.close()
    }

    @Test("modifiers on map: timeout, background, sync")
    func modifiers() async throws {
        try await withPool(workers: 2) { pool in
            await #expect(throws: ResultTimeoutError.self) {
                try await pool.map.timeout(.milliseconds(100))([5_000, 5_000], Nap())
            }
            #expect(try await pool.map.background()(0..<10, Square()).value == (0..<10).map { $0 * $0 })
            let fromThread = try await onPlainThread { try pool.map.sync()(0..<10, Square()) }
            #expect(fromThread == (0..<10).map { $0 * $0 })
        }
    }

    @Test("close() and terminate() leave no worker behind")
    func ending() async throws {
        let pool = Pool(workers: 2)
        _ = try await pool.map(0..<10, Square())
        await pool.close()
        await #expect(throws: ProcessingError.self) { try await pool.map(0..<10, Square()) }
        let other = Pool(workers: 2)
        let running = Task { try await other.map.chunkSize(1)([60_000, 60_000], Nap()) }
        try await Task.sleep(for: .milliseconds(300))
        await other.terminate()
        await #expect(throws: (any Error).self) { try await running.value }
    }
    // MARK: Faults: waits that must end

    @Test("one worker, two maps at once, many times: neither waits forever for the worker")
    func twoMapsOneWorker() async throws {
        try await withPool(workers: 1) { pool in
            for round in 0..<60 {
                let both = try await outcome(within: .seconds(20)) {
                    async let first = pool.map.chunkSize(1)(0..<3, Square())
                    async let second = pool.map.chunkSize(1)(0..<3, Square())
                    return try await first + second
                }
                #expect(both.flatMap { try? $0.get() } == [0, 1, 4, 0, 1, 4], "round \(round)")
                guard both != nil else { return }
            }
        }
    }

    @Test("close() lets a map that waits for a worker finish, and then refuses new maps")
    func closeServesWaitingMaps() async throws {
        let pool = Pool(workers: 1)
        let running = Task { try await pool.map.chunkSize(1)([1_000, 1], Nap()) }
        // Polled, not slept: the second map must be waiting for the one worker when close() comes.
        for _ in 0..<1_000 where pool.checkoutCounts.activeMaps < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let waiting = Task { try await pool.map.chunkSize(1)([2, 3], Nap()) }
        for _ in 0..<1_000 where pool.checkoutCounts.waiting < 1 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(pool.checkoutCounts == (activeMaps: 2, waiting: 1))
        let closed = try await outcome { await pool.close() }
        #expect(closed != nil, "close() did not return")
        #expect(try await running.value == [1_000, 1])
        let second = try await outcome { try await waiting.value }
        #expect(second.flatMap { try? $0.get() } == [2, 3], "a map waiting for a worker when close() came was stranded")
        await #expect(throws: ProcessingError.self) { try await pool.map(0..<1, Square()) }
    }

    @Test("a chunk size above the look-ahead runs, and a map cancelled while its input waits ends")
    func largeChunks() async throws {
        try await withPool(workers: 2) { pool in
            let large = try await outcome { try await pool.map.chunkSize(10_000)(0..<20_000, Square()) }
            #expect(large.flatMap { try? $0.get() }?.count == 20_000, "a chunk of 10,000 items hung the map")
        }
    }

    @Test("a crashed worker's error names the items it was running, not a run")
    func crashNamesItems() async throws {
        let marker = NSTemporaryDirectory() + "processing-killonce-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        await withPool(workers: 1) { pool in
            let error = await expectError(PoolItemError.self) {
                try await pool.map.chunkSize(4)(12..<16, KillOnce(marker: marker))
            }
            let text = String(describing: error.map { $0 as Any } ?? "")
            #expect(text.contains("items 0–3") || text.contains("items 0-3"), "\(text)")
            #expect(!text.contains("during run 0"), "\(text)")
        }
    }

    @Test("batches over the size limit are split, only an item too large alone fails, and the worker stays usable")
    func batchesOverTheLimit() async throws {
        #expect(try await BatchLimitProbe().start().result() == ["20 of 20", "item 1: messageTooLarge", "then 3"])
    }

    @Test("workers that die are forgotten once reaped, in a pool that lives on")
    func deadWorkersForgotten() async throws {
        try await withPool(workers: 1) { pool in
            for _ in 0..<12 { _ = try? await pool.map.chunkSize(1)([1], Suicide()) }
            var records = pool.workerRecords
            for _ in 0..<500 where records > 1 {
                try await Task.sleep(for: .milliseconds(10))
                records = pool.workerRecords
            }
            #expect(records <= 1, "\(records) workers remembered")
        }
    }

    @Test("what processes run by a pool tell is dropped, not waited on forever")
    func pooledProcessesTell() async throws {
        #expect(try await PooledTellerProbe().start().result() == [8])
    }

    @Test("a second batch on a busy worker is refused, and the first still completes")
    func oneBatchAtATime() async throws {
        let worker = try await PoolWorker.launch()
        let work = try PoolJobWork(Nap(), pool: Pool(workers: 1))
        guard case .workers(let install, _, let encode, _) = work.runner else {
            Issue.record("not worker work")
            return
        }
        let first = Task { try await worker.run(batch: encode([1_000]), work: install) }
        // Not a fixed sleep: on a loaded machine the first task may not have begun by then.
        for _ in 0..<1_000 where !worker.isRunningBatch { try await Task.sleep(for: .milliseconds(10)) }
        #expect(worker.isRunningBatch)
        let second = try await outcome { try await worker.run(batch: encode([1]), work: install) }
        if case .success? = second { Issue.record("a second batch ran on a busy worker") }
        let firstDone = try await outcome { try await first.value }
        #expect(firstDone != nil, "the first batch's caller was stranded by the second")
        worker.kill()
        await worker.waitForExit()
    }
}

/// Kills its own worker.
struct Suicide: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int {
        kill(getpid(), SIGKILL)
        return x
    }
}

/// Echoes bytes' count.
struct ByteCount: PoolWork {
    func callAsFunction(_ bytes: [UInt8]) async throws -> Int { bytes.count }
}

/// A parent of its own with a 64 KiB message limit: 20 items of 10 KB in batches of 20 (over
/// the limit), then an item of 100 KB between two small ones, then a small map on the same pool.
struct BatchLimitProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [String] {
        ProcessingLimits.maximumMessageSize = 64 << 10
        return try await withPool(workers: 1) { pool in
            var report: [String] = []
            let counts = try await pool.map.chunkSize(20)(Array(repeating: [UInt8](repeating: 1, count: 10_000), count: 20), ByteCount())
            report.append("\(counts.filter { $0 == 10_000 }.count) of 20")
            do {
                _ = try await pool.map.chunkSize(3)([[1], [UInt8](repeating: 2, count: 100_000), [3]], ByteCount())
                report.append("the large item ran")
            } catch let error as PoolItemError {
                report.append("item \(error.index): \((error.error as? ProcessingError)?.code.rawValue ?? "\(error.error)")")
            }
            report.append("then \(try await pool.map([[1], [2], [3]], ByteCount()).count)")
            return report
        }
    }
}

/// Tells 8 messages of 1 MiB, with no one listening.
struct PooledTeller: Skprocess, Sendable {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for _ in 0..<8 { try await tell([UInt8](repeating: 9, count: 1 << 20)) }
    }
    func result() async throws -> Int { 8 }
}

/// A parent of its own with a 1 MiB mailbox capacity, running a PooledTeller through a pool.
struct PooledTellerProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [Int] {
        ProcessingLimits.mailboxCapacity = 1 << 20
        return try await withPool(workers: 1) { pool in try await pool.map([PooledTeller()]) }
    }
}
