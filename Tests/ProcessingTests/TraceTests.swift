import Foundation
import Testing
@testable import Processing

/// A pool map's timeline (`trace(to:)`): Chrome trace events that match what ran, and an SVG.
@Suite("Map timelines", .timeLimit(.minutes(1)))
struct TraceTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "processing-trace-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The trace's events, by phase.
    static func events(at path: String) throws -> [[String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        return try #require((object as? [String: Any])?["traceEvents"] as? [[String: Any]])
    }

    @Test("every item is in exactly one batch, on a worker lane that was named; spawns are there; the SVG draws each batch")
    func matchesWhatRan() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/map.json"
        let pool = Pool(workers: 2)
        let squares = try await pool.map.chunkSize(5).trace(to: path)(0..<40, Square())
        await pool.close()
        #expect(squares == (0..<40).map { $0 * $0 })
        let events = try Self.events(at: path)
        let lanes = Set(events.filter { $0["name"] as? String == "thread_name" }.compactMap { $0["tid"] as? Int })
        #expect((1...2).contains(lanes.count))
        let batches = events.filter { $0["cat"] as? String == "batch" }
        var covered: [Int] = []
        for batch in batches {
            let args = try #require(batch["args"] as? [String: Any])
            let (first, last) = (try #require(args["first"] as? Int), try #require(args["last"] as? Int))
            covered += Array(first...last)
            #expect(args["count"] as? Int == last - first + 1)
            #expect(lanes.contains(try #require(batch["tid"] as? Int)), "a batch on a lane with no name")
            #expect(try #require(batch["dur"] as? Int) > 0)
            #expect(batch["ph"] as? String == "X")
        }
        #expect(covered.sorted() == Array(0..<40), "items missing or run twice")
        #expect(batches.count == 8)
        let spawns = events.filter { $0["cat"] as? String == "start" }
        #expect(spawns.count == lanes.count, "a fresh pool's workers start inside the map")
        let svg = try String(contentsOfFile: directory + "/map.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg"))
        // A bar per batch and start, and the legend's three squares.
        #expect(svg.components(separatedBy: "<rect x=").count - 1 == batches.count + spawns.count + 3)
    }

    @Test("a crashed batch is drawn as failed, with why, and its replacement worker gets a lane of its own")
    func failure() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/crash.json"
        let marker = directory + "/killed-once"
        let pool = Pool(workers: 1)
        _ = try await pool.map.chunkSize(4).retries(1).trace(to: path)(12..<16, KillOnce(marker: marker))
        await pool.close()
        let events = try Self.events(at: path)
        let failed = events.filter { ($0["name"] as? String)?.hasPrefix("failed: ") == true }
        #expect(failed.count == 1)
        let why = (failed.first?["args"] as? [String: Any])?["failure"] as? String
        #expect(why?.contains("crashed") == true, "\(why ?? "no reason")")
        #expect(events.contains { $0["ph"] as? String == "i" && $0["name"] as? String == "failure" })
        let lanes = events.filter { $0["name"] as? String == "thread_name" }
        #expect(lanes.count == 2, "the replacement worker shares a lane")
        let svg = try String(contentsOfFile: directory + "/crash.svg", encoding: .utf8)
        #expect(svg.contains("#d9534f"))
    }
}
