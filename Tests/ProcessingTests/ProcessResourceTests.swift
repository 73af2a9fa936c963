import Foundation
import Testing
@testable import Processing

struct LeakReport: Codable, Sendable, Equatable {
    var fdsBefore: Int
    var fdsAfter: Int
    var childrenAfter: Int
    var results: Int
}

/// Runs inside a child, so that its counts are not disturbed by tests running beside it:
/// spawns `spawns` counters (8 at a time) and counts its own fds and children before and after.
struct SpawnLeakProbe: Skprocess {
    var spawns: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> LeakReport {
        _ = try await Counter().start().result()  // warm up: the reactor's own fds exist from here on
        try await awaitChildrenReaped()
        let fdsBefore = openFileDescriptorCount()
        var results = 0
        for _ in 0..<(spawns / 8) {
            results += try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 { group.addTask { try await Counter().start().result() } }
                return try await group.reduce(0, +)
            }
        }
        // A killed and a crashed child must be cleaned up as well.
        let killed = try await Sleeper().start()
        await killed.kill()
        try await killed.wait()
        _ = try? await FatalProcess().start().result()
        try await awaitChildrenReaped()
        return LeakReport(fdsBefore: fdsBefore, fdsAfter: openFileDescriptorCount(),
                          childrenAfter: childProcessIDs().count, results: results)
    }
}

@Suite("Many processes, and what they leave behind", .timeLimit(.minutes(3)))
struct ProcessResourceTests {
    @Test("64 processes at once")
    func sixtyFourAtOnce() async throws {
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<64 { group.addTask { try await Counter().start().result() } }
            return try await group.reduce(0, +)
        }
        #expect(total == 640)
    }

    @Test("after 200 spawns, open fds and child processes are back where they started")
    func noLeaks() async throws {
        let report = try await SpawnLeakProbe(spawns: 200).start().result()
        #expect(report.results == 2000)
        #expect(report.fdsAfter == report.fdsBefore)
        #expect(report.childrenAfter == 0)
    }

    @Test("dropping the last reference to a handle kills its child")
    func droppedHandle() async throws {
        var handle: ProcessHandle<PidTeller>? = try await PidTeller().start()
        let pid = try #require(try await handle?.listen(Int.self, timeout: .seconds(60)))
        handle = nil
        // The child is killed and reaped by the reactor; poll (bounded) until it is gone.
        var gone = false
        for _ in 0..<600 where !gone {
            gone = !FileManager.default.fileExists(atPath: "/proc/\(pid)")
            if !gone { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(gone)
    }
}
