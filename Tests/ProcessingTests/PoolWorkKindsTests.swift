import Foundation
import Testing
@testable import Processing

/// A process as pool work: counts `runs` runs; with a marker path, run 1 of its first life
/// fails (the marker file records that it did).
struct RunCounter: Skprocess, Sendable {
    var id: Int
    var failOnceMarker: String?
    var counter = 0
    var processConfig = ProcessConfig(runs: 3, lives: 2)
    mutating func run() async throws {
        counter += 1
        if let marker = failOnceMarker, currentRun == 1, !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            throw TestFailure(code: id)
        }
    }
    func result() async throws -> Int { id * 100 + counter }
}

/// A process whose last life fails.
struct AlwaysFails: Skprocess, Sendable {
    mutating func run() async throws { throw TestFailure(code: 3) }
}

func triple(_ x: Int) -> Int { x * 3 }

@Suite("Pool work kinds: closures, star(), processes", .timeLimit(.minutes(2)))
struct PoolWorkKindsTests {
    @Test("a non-capturing closure runs in the workers, over both input kinds and in every form")
    func closures() async throws {
        try await withPool(workers: 2) { pool in
            #expect(try await pool.map(0..<500) { $0 * 2 } == (0..<500).map { $0 * 2 })
            #expect(try await pool.unorderedMap(["a", "bb"]) { $0.count }.sorted() == [1, 2])
            let async = AsyncStream { continuation in
                for x in 0..<20 { continuation.yield(x) }
                continuation.finish()
            }
            #expect(try await pool.map(async) { x async throws -> String in String(x) } == (0..<20).map(String.init))
            var streamed: [Int] = []
            for try await y in try pool.imap(0..<50, { $0 + 1 }) { streamed.append(y) }
            #expect(streamed == Array(1...50))
            #expect(try await pool.map.background()(0..<5) { $0 - 1 }.value == [-1, 0, 1, 2, 3])
            let fromThread = try await onPlainThread { try pool.map.sync()(0..<5) { $0 * $0 } }
            #expect(fromThread == [0, 1, 4, 9, 16])
            // A named function, through a closure literal, and a closure that fails an item.
            #expect(try await pool.map(1...3) { triple($0) } == [3, 6, 9])
            let error = await expectError(PoolItemError.self) {
                try await pool.map(0..<10) { x -> Int in
                    if x == 6 { throw TestFailure(code: 6) }
                    return x
                }
            }
            #expect(error?.index == 6)
            #expect((error?.error as? RemoteError)?.value as? TestFailure == TestFailure(code: 6))
        }
    }

    @Test("a capturing closure is refused before anything runs, saying how to pass the value")
    func capturingClosure() async throws {
        let pool = Pool(workers: 1)
        let factor = Int.random(in: 2...9)
        let error = await expectError(ProcessingError.self) {
            try await pool.map(0..<3) { $0 * factor }
        }
        #expect(error?.code == .closureNotTransferable)
        #expect(error?.message.contains("PoolWork") == true)
        #expect(error?.message.contains("captures") == true)
        await pool.close()
    }

    @Test("star() spreads tuple items over the closure's parameters")
    func star() async throws {
        try await withPool(workers: 2) { pool in
            let pairs = (0..<100).map { ($0, $0 + 1) }
            #expect(try await pool.star().map(pairs) { (a: Int, b: Int) in a + b } == (0..<100).map { 2 * $0 + 1 })
            let triples = [(1, "a", 0.5), (2, "b", 1.5)]
            let labels = try await pool.star().unorderedMap(triples) { (n: Int, s: String, d: Double) in "\(s)\(n)\(d)" }
            #expect(labels.sorted() == ["a10.5", "b21.5"])
            var streamed: [Int] = []
            for try await y in try pool.star().imap(Array(pairs.prefix(5)), { (a: Int, b: Int) in a * b }) { streamed.append(y) }
            #expect(streamed == [0, 2, 6, 12, 20])
            let blocking = try await onPlainThread {
                try pool.star().map.sync()([(2, 3)]) { (a: Int, b: Int) in a * b }
            }
            #expect(blocking == [6])
        }
    }

    @Test("Skprocess values run their whole lifecycle, lives included, and their failures are per item")
    func processes() async throws {
        try await withPool(workers: 2) { pool in
            let marker = NSTemporaryDirectory() + "processing-runcounter-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: marker) }
            let processes = (0..<4).map { RunCounter(id: $0, failOnceMarker: $0 == 2 ? marker : nil) }
            #expect(try await pool.map(processes) == [3, 103, 203, 303])
            #expect(FileManager.default.fileExists(atPath: marker))
            var unordered: [Int] = []
            for try await y in try pool.unorderedIMap(processes) { unordered.append(y) }
            #expect(unordered.sorted() == [3, 103, 203, 303])
            let failure = await expectError(PoolItemError.self) { try await pool.map([AlwaysFails()]) }
            #expect(failure?.index == 0)
            #expect(failure?.error is RunError)
        }
    }
}
