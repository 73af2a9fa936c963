import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// `log(_:level:)` from children to the main process's handler. The handler is global to a
/// process, so each scenario runs in a child acting as the main process (`LogCollector`),
/// and the default handler in the fixture program.
@Suite("Logging in the main process", .timeLimit(.minutes(1)))
struct LoggingTests {
    static func collect(_ scenario: LogCollector.Scenario) async throws -> [LogEntry] {
        try await LogCollector(scenario: scenario).start().result()
    }

    @Test("entries arrive in order, tagged with the process's name and pid, also when it is killed right after")
    func orderAcrossACrash() async throws {
        let entries = try await Self.collect(.crash)
        let spoken = entries.filter { $0.process == "LogSpeaker" }
        #expect(spoken.map(\.message) == (0..<500).map { "entry \($0)" })
        #expect(Set(spoken.map(\.pid)).count == 1)
        #expect(spoken.first?.pid != getpid())
        // The collector saw the speaker die of SIGKILL, after all its entries.
        #expect(entries.last?.message == "speaker ended: signal 9")
    }

    @Test("levels: the parent's minimum level reaches the child; below it nothing is sent")
    func levels() async throws {
        let entries = try await Self.collect(.levels)
        #expect(entries.filter { $0.process == "LevelSpeaker" }.map(\.level) == [.warning, .error])
    }

    @Test("pool work and pool closures log as `pool worker`, every entry once")
    func poolWork() async throws {
        let entries = try await Self.collect(.pool).filter { $0.process == "pool worker" }
        #expect(entries.map(\.message).sorted() == (0..<40).map { "item \($0)" }.sorted())
    }

    @Test("a child that set no handler passes its children's entries on, keeping their name and pid")
    func forwardedFromAGrandchild() async throws {
        let entries = try await Self.collect(.nested)
        let spoken = entries.filter { $0.process == "LogSpeaker" }
        #expect(spoken.map(\.message) == (0..<10).map { "entry \($0)" })
        let relayed = entries.filter { $0.process == "LogRelayer" }
        #expect(relayed.map(\.message) == ["relaying"])
        #expect(spoken.first?.pid != relayed.first?.pid)
    }

    @Test("a message longer than 1 MiB is cut, and says so")
    func longMessage() async throws {
        let entries = try await Self.collect(.long).filter { $0.process == "LongSpeaker" }
        #expect(entries.count == 1)
        #expect(entries.first?.message.hasSuffix("… (10 more bytes cut)") == true)
    }

    @Test("by default each entry is a line on stderr, prefixed by its process, from children and from the main process")
    func defaultHandler() async throws {
        let program = try FixtureProgram("log-default")
        #expect(try await program.value("stage") == "done")
        let deadline = ContinuousClock.now + .seconds(20)
        while !program.stderr.contains("hello from main"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let lines = program.stderr.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("Chatty[") && $0.hasSuffix("] info: hello from a child") })
        #expect(lines.contains { $0.hasPrefix("Chatty[") && $0.hasSuffix("] warning: careful") })
        #expect(lines.contains { $0.hasPrefix("main[") && $0.hasSuffix("] info: hello from main") })
        #expect(!program.stderr.contains("not shown"))
        #expect(try await program.exit()?.status == 0)
    }
}

/// Acts as the main process for one logging scenario: sets a handler that collects, runs the
/// scenario's processes, and returns what the handler got.
struct LogCollector: Skprocess {
    enum Scenario: String, Codable { case crash, levels, pool, nested, long }
    var scenario: Scenario
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> [LogEntry] {
        let entries = Synchronization.Mutex<[LogEntry]>([])
        ProcessLog.setHandler { entry in entries.withLock { $0.append(entry) } }
        switch scenario {
        case .crash:
            let speaker = try await LogSpeaker(count: 500, killsItself: true).start()
            var ending = "no error"
            do {
                _ = try await speaker.result()
            } catch let error as ProcessCrashError {
                ending = if case .signal(let signal) = error.cause { "signal \(signal)" } else { "\(error.cause)" }
            }
            await ProcessLog.flush()
            entries.withLock { $0.append(LogEntry(process: "collector", pid: getpid(), level: .info, message: "speaker ended: \(ending)")) }
        case .levels:
            ProcessLog.minimumLevel = .warning
            try await LevelSpeaker().start().wait()
        case .pool:
            try await withPool(workers: 2) { pool in
                _ = try await pool.map(0..<20, LoggingWork())
                _ = try await pool.map(20..<40) { item in
                    log("item \(item)")
                    return item
                }
            }
        case .nested:
            try await LogRelayer().start().wait()
        case .long:
            try await LongSpeaker().start().wait()
        }
        await ProcessLog.flush()
        return entries.withLock { $0 }
    }
}

/// Logs `count` entries, then returns or kills itself with SIGKILL.
struct LogSpeaker: Skprocess {
    var count: Int
    var killsItself: Bool
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for index in 0..<count { log("entry \(index)") }
        if killsItself { kill(getpid(), SIGKILL) }
    }
}

/// Logs once at each level.
struct LevelSpeaker: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for level in LogLevel.allCases { log("at \(level)", level: level) }
    }
}

/// Logs, then starts a `LogSpeaker` of its own without setting a handler.
struct LogRelayer: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        log("relaying")
        try await LogSpeaker(count: 10, killsItself: false).start().wait()
    }
}

/// Logs one message of 1 MiB and 10 bytes.
struct LongSpeaker: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        log(String(repeating: "x", count: (1 << 20) + 10))
    }
}

/// Pool work that logs each item.
struct LoggingWork: PoolWork {
    func callAsFunction(_ item: Int) async throws -> Int {
        log("item \(item)")
        return item
    }
}
