import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// Lifecycle events (`ProcessEvents`) of a process, a pool and the program.
@Suite("Lifecycle events", .timeLimit(.minutes(1)))
struct EventTests {
    /// The events' kinds, by name, until the sequence ends.
    static func kinds(_ events: ProcessEvents) async -> [String] {
        var kinds: [String] = []
        for await event in events { kinds.append(event.kind.name) }
        return kinds
    }

    static func marker() -> String { NSTemporaryDirectory() + "processing-events-\(UUID().uuidString)" }

    @Test("a crash and its retry: spawned, ready, crashed, restarted 2 of 2, spawned, ready, exited")
    func crashAndRetry() async throws {
        let marker = Self.marker()
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let handle = try ProcessHandle(CrashesOnce(marker: marker))
        let events = handle.events
        try await handle.start()
        #expect(try await handle.result() == 7)
        #expect(await Self.kinds(events) == ["spawned", "ready", "crashed", "restarted 2/2", "spawned", "ready", "exited"])
    }

    @Test("a section time-out, then the child that runs error(_:), then the failure")
    func timeout() async throws {
        let handle = try ProcessHandle(Hangs())
        let events = handle.events
        try await handle.start()
        _ = await expectError(ProcessTimeoutError.self) { try await handle.result() }
        #expect(await Self.kinds(events) == ["spawned", "ready", "timed out", "spawned", "ready", "exited with an error"])
    }

    @Test("a kill: killed, then exited with the error; a sequence made after the end is empty")
    func killed() async throws {
        let handle = try ProcessHandle(Idles())
        let events = handle.events
        try await handle.start()
        await handle.kill()
        _ = try? await handle.result()
        #expect(await Self.kinds(events) == ["spawned", "ready", "killed", "exited with an error"])
        #expect(await Self.kinds(handle.events).isEmpty)
    }

    @Test("a pool's events: its workers spawn and get ready, one crashes, all exit; the sequence ends when the pool closes")
    func pool() async throws {
        let marker = Self.marker()
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let pool = Pool(workers: 1)
        let events = pool.events
        _ = try await pool.map.retries(1)(12..<15, KillOnce(marker: marker))
        await pool.close()
        let kinds = await Self.kinds(events)
        #expect(kinds == ["spawned", "ready", "crashed", "exited with an error", "spawned", "ready", "killed", "exited"], "\(kinds)")
    }

    @Test("the program's events include every process's")
    func program() async throws {
        let events = ProcessEvents.program
        let handle = try await Watched().start()
        try await handle.wait()
        var seen: [String] = []
        for await event in events where event.process == "Watched" {
            seen.append(event.kind.name)
            if case .exited = event.kind { break }
        }
        #expect(seen.suffix(3) == ["spawned", "ready", "exited"])
    }
}

extension ProcessEvent.Kind {
    /// A short name, for comparing sequences.
    var name: String {
        switch self {
        case .spawned: "spawned"
        case .ready: "ready"
        case .crashed: "crashed"
        case .killed: "killed"
        case .timedOut: "timed out"
        case .restarted(let life, let lives): "restarted \(life)/\(lives)"
        case .exited(nil): "exited"
        case .exited: "exited with an error"
        case .missed(let count): "missed \(count)"
        }
    }
}

/// Dies of SIGKILL on its first life (unless `marker` exists), then returns 7.
struct CrashesOnce: Skprocess {
    var marker: String
    var processConfig = ProcessConfig(runs: 1, lives: 2)
    mutating func run() async throws {
        if !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            kill(getpid(), SIGKILL)
        }
    }
    func result() async throws -> Int { 7 }
}

/// Runs once; only the program-wide events test starts it.
struct Watched: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
}

/// Runs until killed (no time-out: a loaded machine must not make it time out first).
struct Idles: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { try await Task.sleep(for: .seconds(3600)) }
}

/// Its run hangs past its 100 ms time-out.
struct Hangs: Skprocess {
    var processConfig = ProcessConfig(runs: 1, timeouts: .init(run: .milliseconds(100)))
    mutating func run() async throws { try await Task.sleep(for: .seconds(3600)) }
}
