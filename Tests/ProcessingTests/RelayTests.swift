import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

// MARK: Stages

/// A first stage: sends `range`.
struct RelayNumbers: RelayActor {
    typealias Output = Int
    var range: Range<Int>
    mutating func loop() async throws {
        for i in range { try await send(i) }
    }
}

/// Doubles what it receives.
struct RelayDouble: RelayActor {
    typealias Output = Int
    mutating func recv(_ x: Int) async throws { try await send(x * 2) }
}

/// Passes on what it receives, unchanged.
struct RelayPass: RelayActor {
    typealias Output = Int
    mutating func recv(_ x: Int) async throws { try await send(x) }
}

/// A last stage: adds up what it receives and writes the total (and its count) to `path` in
/// `shutdown()`, which must run once, after every message.
struct RelayFileSum: RelayActor {
    var path: String
    var total = 0
    var count = 0
    var shutdowns = 0
    mutating func recv(_ x: Int) async throws {
        total += x
        count += 1
    }
    mutating func shutdown() async throws {
        shutdowns += 1
        try "\(total) \(count) \(shutdowns)".write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// Receives strings: a type that does not fit after `RelayNumbers`.
struct RelayStrings: RelayActor {
    mutating func recv(_ text: String) async throws {}
}

/// What the backpressure test shares between its source and its slow sink.
struct RelayProgress: Codable, Sendable {
    var sent = 0
    var received = 0
    var mostAhead = 0
}

/// Sends `count` numbers, recording in the share how many it has sent.
struct RelayCountingSource: RelayActor {
    typealias Output = Int
    var count: Int
    var progress: Share<RelayProgress>
    mutating func loop() async throws {
        for i in 0..<count {
            try await send(i)
            try await progress.update { $0.sent = i + 1 }
        }
    }
}

/// Takes 1 ms per message, and records how far ahead the source ran.
struct RelaySlowSink: RelayActor {
    var progress: Share<RelayProgress>
    mutating func recv(_ x: Int) async throws {
        try await Task.sleep(for: .milliseconds(1))
        try await progress.update { state in
            state.received += 1
            state.mostAhead = max(state.mostAhead, state.sent - state.received)
        }
    }
}

/// An error a stage throws, which crosses as itself.
struct RelayStageFault: Error, Codable, Equatable {
    var at: Int
}

/// Passes numbers on; at `at`, throws `RelayStageFault` or kills its own process.
struct RelayFaulty: RelayActor {
    typealias Output = Int
    var at: Int
    var crashes: Bool
    var received = 0
    mutating func recv(_ x: Int) async throws {
        received += 1
        if received == at {
            if crashes { kill(getpid(), SIGKILL) }
            throw RelayStageFault(at: received)
        }
        try await send(x)
    }
}

/// Passes numbers on; its first process kills itself (SIGKILL) at its `at`-th message.
/// Which process it is, is kept in a file: a restarted stage starts from the value it was
/// connected with.
struct RelayCrashOnce: RelayActor {
    typealias Output = Int
    var lives = 2
    var at: Int
    var marker: String
    var received = 0
    mutating func recv(_ x: Int) async throws {
        received += 1
        if received == at, !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            kill(getpid(), SIGKILL)
        }
        try await send(x)
    }
}

/// Passes numbers on, but dies (SIGKILL) on `poison`, every time.
struct RelayPoisoned: RelayActor {
    typealias Output = Int
    var lives = 3
    var poison: Int
    mutating func recv(_ x: Int) async throws {
        if x == poison { kill(getpid(), SIGKILL) }
        try await send(x)
    }
}

/// Throws on `at`, in every process: with lives, each life fails on it.
struct RelayAlwaysThrows: RelayActor {
    typealias Output = Int
    var lives = 2
    var at: Int
    mutating func recv(_ x: Int) async throws {
        if x == at { throw RelayStageFault(at: x) }
        try await send(x)
    }
}

/// A first stage that sends until the relay is asked to stop.
struct RelayEndless: RelayActor {
    typealias Output = Int
    var progress: Share<RelayProgress>?
    mutating func loop() async throws {
        var i = 0
        while !isStopping {
            try await send(i)
            i += 1
            if i % 100 == 0 {
                try await progress?.update { $0.sent = i }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }
}

/// Logs each message it passes on, and its start and end.
struct RelayLogger: RelayActor {
    typealias Output = Int
    var seen = 0
    mutating func startup() async throws { log("start") }
    mutating func recv(_ x: Int) async throws {
        log("\(seen)")
        seen += 1
        try await send(x)
    }
    mutating func shutdown() async throws { log("end") }
}

/// Runs a logging relay in a child acting as the main process (the log handler is global).
struct RelayLogCollector: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [LogEntry] {
        let entries = Synchronization.Mutex<[LogEntry]>([])
        ProcessLog.setHandler { entry in entries.withLock { $0.append(entry) } }
        let relay = Relay(maxsize: 4)
        try relay.connect(RelayNumbers(range: 0..<50), [RelayLogger(), RelayLogger()], RelayLogger())
        var received = 0
        for try await _ in try relay.output(as: Int.self) { received += 1 }
        await ProcessLog.flush()
        return entries.withLock { $0 } + [LogEntry(process: "collector", pid: getpid(), level: .info, message: "received \(received)")]
    }
}

// MARK: Tests

@Suite("Relays", .timeLimit(.minutes(2)))
struct RelayTests {
    static func temporaryPath() -> String {
        NSTemporaryDirectory() + "relay-\(getpid())-\(UUID().uuidString)"
    }

    @Test("1-1: a source and a sink; shutdown runs once, after every message")
    func oneToOne() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let relay = Relay(maxsize: 16)
        try relay.connect(RelayNumbers(range: 0..<10_000), RelayFileSum(path: path))
        try await relay.start()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "\((0..<10_000).reduce(0, +)) 10000 1")
    }

    @Test("1-1 to the parent keeps the order")
    func order() async throws {
        let relay = Relay(maxsize: 8)
        try relay.connect(RelayNumbers(range: 0..<5_000), RelayPass())
        var received: [Int] = []
        for try await x in try relay.output(as: Int.self) { received.append(x) }
        #expect(received == Array(0..<5_000))
    }

    @Test("1-n, n-1 and n-m sum exactly", arguments: [(1, 3), (3, 1), (3, 3), (2, 2)])
    func topologies(senders: Int, receivers: Int) async throws {
        let relay = Relay(maxsize: 32)
        let sources = (0..<senders).map { RelayNumbers(range: $0 * 1_000..<($0 + 1) * 1_000) }
        try relay.connect(sources, Array(repeating: RelayDouble(), count: receivers), Array(repeating: RelayPass(), count: receivers))
        var total = 0
        var count = 0
        for try await x in try relay.output(as: Int.self) {
            total += x
            count += 1
        }
        let expected = (0..<senders * 1_000).reduce(0, +) * 2
        #expect(count == senders * 1_000)
        #expect(total == expected)
    }

    @Test("a slow sink with maxsize 8 holds the source back to what the connections hold")
    func backpressure() async throws {
        let progress = try await Share(RelayProgress())
        let relay = Relay(maxsize: 8)
        try relay.connect(RelayCountingSource(count: 300, progress: progress), RelayPass(), RelaySlowSink(progress: progress))
        try await relay.start()
        let seen = try await progress.read()
        #expect(seen.sent == 300)
        #expect(seen.received == 300)
        // Two connections of 8, and one message in the middle stage's hands.
        #expect(seen.mostAhead <= 8 + 8 + 1, "the source ran \(seen.mostAhead) messages ahead")
        #expect(seen.mostAhead >= 8, "the source never filled the connections: was it slowed at all?")
    }

    @Test("the parent feeds the first stage from an AsyncSequence and reads the last as one")
    func feedAndOutput() async throws {
        let relay = Relay(maxsize: 16)
        try relay.connect([RelayDouble(), RelayDouble()], RelayPass())
        let feed = AsyncStream<Int> { continuation in
            for i in 0..<2_000 { continuation.yield(i) }
            continuation.finish()
        }
        var total = 0
        for try await x in try relay.output(as: Int.self, feeding: feed) { total += x }
        #expect(total == (0..<2_000).reduce(0, +) * 2)
    }

    @Test("a feed into a relay that ends in a sink: start(feeding:)")
    func feedIntoSink() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let relay = Relay()
        try relay.connect(RelayPass(), RelayFileSum(path: path))
        try await relay.start(feeding: AsyncStream<Int> { continuation in
            for i in 1...100 { continuation.yield(i) }
            continuation.finish()
        })
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "5050 100 1")
    }

    @Test("a type mismatch is refused by connect, naming both stages and types")
    func typeMismatch() async throws {
        let relay = Relay()
        let error = await expectError(ProcessingError.self) {
            try relay.connect(RelayNumbers(range: 0..<1), RelayStrings())
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("RelayNumbers sends Swift.Int") == true)
        #expect(error?.message.contains("RelayStrings, the stage after it, receives Swift.String") == true)
        // Nothing to start.
        let start = await expectError(ProcessingError.self) { try await relay.start() }
        #expect(start?.code == .invalidState)
    }

    @Test("ends that do not fit are refused before anything spawns")
    func endsRefused() async throws {
        let relay = Relay()
        try relay.connect(RelayNumbers(range: 0..<1), RelayPass())
        // The last stage sends Int, and start() has nowhere to put it.
        let error = await expectError(ProcessingError.self) { try await relay.start() }
        #expect(error?.message.contains("output(as: Swift.Int.self)") == true)
        let fed = Relay()
        try fed.connect(RelayPass())
        let feedError = await expectError(ProcessingError.self) {
            _ = try fed.output(as: Int.self, feeding: AsyncStream<String> { $0.finish() })
        }
        #expect(feedError?.message.contains("the feed sends Swift.String") == true)
    }

    @Test("a middle stage that throws fails the relay with its error, and stops the rest", arguments: [false, true])
    func failingStage(crashes: Bool) async throws {
        let result = try await outcome(within: .seconds(30)) {
            let relay = Relay(maxsize: 16)
            try relay.connect(RelayNumbers(range: 0..<100_000), RelayFaulty(at: 500, crashes: crashes), RelayPass())
            var count = 0
            for try await _ in try relay.output(as: Int.self) { count += 1 }
            return count
        }
        guard case .failure(let error)? = result else {
            Issue.record("the relay did not fail: \(String(describing: result))")
            return
        }
        let relayError = try #require(error as? RelayError, "\(error)")
        #expect(relayError.stage == "RelayFaulty")
        if crashes {
            #expect(relayError.hook == nil)
            let crash = try #require(relayError.underlying as? ProcessCrashError)
            #expect(crash.cause == .signal(SIGKILL))
        } else {
            #expect(relayError.hook == "recv(_:)")
            #expect((relayError.underlying as? RemoteError)?.value as? RelayStageFault == RelayStageFault(at: 500))
        }
    }

    @Test("a stage with lives that dies is restarted; what it held is sent again, and nothing is lost",
          arguments: [false, true])
    func restartWithLives(middle: Bool) async throws {
        let marker = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let relay = Relay(maxsize: 16)
        let crashing = RelayCrashOnce(at: 300, marker: marker)
        if middle {
            try relay.connect(RelayNumbers(range: 0..<2_000), crashing, RelayPass())
        } else {
            try relay.connect(RelayNumbers(range: 0..<2_000), crashing)
        }
        var received: [Int] = []
        for try await x in try relay.output(as: Int.self) { received.append(x) }
        #expect(FileManager.default.fileExists(atPath: marker), "the first process did not die")
        #expect(Set(received) == Set(0..<2_000))
        // At least once: only what the dead process was in the middle of may come twice.
        #expect(received.count - 2_000 <= 16, "\(received.count - 2_000) duplicates")
    }

    @Test("neighbouring stages with lives that both die are both restarted, and nothing is lost")
    func neighboursWithLives() async throws {
        let first = Self.temporaryPath()
        let second = Self.temporaryPath()
        defer {
            try? FileManager.default.removeItem(atPath: first)
            try? FileManager.default.removeItem(atPath: second)
        }
        let result = try await outcome(within: .seconds(60)) {
            let relay = Relay(maxsize: 16)
            try relay.connect(RelayNumbers(range: 0..<3_000), RelayCrashOnce(at: 400, marker: first),
                              RelayCrashOnce(at: 1_500, marker: second))
            var received: [Int] = []
            for try await x in try relay.output(as: Int.self) { received.append(x) }
            return (received, relay.restarts.map(\.stage))
        }
        guard case .success(let (received, restarted))? = result else {
            Issue.record("the relay did not finish: \(String(describing: result))")
            return
        }
        #expect(restarted.count == 2)
        #expect(Set(received) == Set(0..<3_000))
        #expect(received.count - 3_000 <= 32, "\(received.count - 3_000) duplicates")
    }

    @Test("a message that kills a stage twice is dropped and reported; the relay goes on")
    func poisonMessage() async throws {
        let relay = Relay(maxsize: 16)
        try relay.connect(RelayNumbers(range: 0..<2_000), RelayPoisoned(poison: 777), RelayPass())
        var received = Set<Int>()
        for try await x in try relay.output(as: Int.self) { received.insert(x) }
        #expect(Set(0..<2_000).subtracting(received) == [777])
        let restarts = relay.restarts
        try #require(restarts.count == 2, "\(restarts)")
        #expect(restarts.map(\.stage) == ["RelayPoisoned", "RelayPoisoned"])
        #expect(restarts.map(\.life) == [2, 3])
        #expect(restarts[0].message?.sender == "RelayNumbers")
        #expect(restarts[0].message?.index == 777)
        #expect(restarts[0].dropped == false)
        #expect(restarts[1].message?.index == 777)
        #expect(restarts[1].dropped == true)
        #expect((restarts[0].cause.underlying as? ProcessCrashError)?.cause == .signal(SIGKILL))
        #expect(restarts[1].description.contains("died on message 777 from RelayNumbers twice, so that message was dropped"))
    }

    @Test("a stage that throws on every life fails the relay once its lives are spent")
    func livesSpent() async throws {
        let relay = Relay(maxsize: 16)
        try relay.connect(RelayNumbers(range: 0..<1_000), RelayAlwaysThrows(at: 100), RelayPass())
        let error = await expectError(RelayError.self) {
            for try await _ in try relay.output(as: Int.self) {}
        }
        #expect(error?.stage == "RelayAlwaysThrows")
        #expect(error?.hook == "recv(_:)")
        #expect((error?.underlying as? RemoteError)?.value as? RelayStageFault == RelayStageFault(at: 100))
    }

    @Test("the handler's stop() ends the first stages' loops, and everything drains")
    func stopFromHandler() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let relay = Relay(maxsize: 64)
        let progress = try await Share(RelayProgress())
        try relay.connect(RelayEndless(progress: progress), [RelayDouble(), RelayDouble()], RelayFileSum(path: path))
        try await relay.start { control in
            #expect(control.stages == [["RelayEndless"], ["RelayDouble#0", "RelayDouble#1"], ["RelayFileSum"]])
            while try await progress.read().sent < 1_000 { try await Task.sleep(for: .milliseconds(5)) }
            await control.stop()
        }
        let fields = try String(contentsOfFile: path, encoding: .utf8).split(separator: " ").compactMap { Int($0) }
        #expect(fields.count == 3)
        let count = fields[1]
        #expect(count > 0)
        #expect(fields[0] == (0..<count).reduce(0, +) * 2, "every message sent before the stop arrived")
        #expect(fields[2] == 1)
    }

    @Test("a handler that throws stops every stage, and start rethrows its error")
    func handlerThrows() async throws {
        struct HandlerFault: Error, Equatable {}
        let result = try await outcome(within: .seconds(30)) {
            let relay = Relay(maxsize: 64)
            try relay.connect(RelayEndless(), RelayDouble(), RelayFileSum(path: "/dev/null"))
            try await relay.start { _ in
                try await Task.sleep(for: .milliseconds(50))
                throw HandlerFault()
            }
        }
        guard case .failure(let error)? = result else {
            Issue.record("start did not fail: \(String(describing: result))")
            return
        }
        #expect(error is HandlerFault, "\(error)")
    }

    @Test("stop() at once, before the stages have begun to run: they still run, see isStopping, and end their streams")
    func stopBeforeTheStagesRun() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let relay = Relay()
        try relay.connect(RelayEndless(), RelayDouble(), RelayFileSum(path: path))
        try await relay.start { control in await control.stop() }
        // Written by the last stage's shutdown(), once every stream before it ended.
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix(" 1"))
    }

    @Test("stop() ends a feed that waits for its next element, and the relay drains")
    func stopEndsAWaitingFeed() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try await outcome(within: .seconds(30)) {
            let (feed, continuation) = AsyncStream<Int>.makeStream()
            for i in 1...10 { continuation.yield(i) }   // and then nothing, never finished
            let relay = Relay()
            try relay.connect(RelayPass(), RelayFileSum(path: path))
            try await relay.start(feeding: feed) { control in
                try await Task.sleep(for: .milliseconds(200))
                await control.stop()
            }
            continuation.finish()
        }
        guard case .success? = result else {
            Issue.record("the relay did not end: \(String(describing: result))")
            return
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "55 10 1")
    }

    @Test("cancelling reaches a handler that is still running after the stages ended")
    func cancellationReachesTheHandler() async throws {
        let task = Task {
            let relay = Relay()
            try relay.connect(RelayNumbers(range: 0..<10), RelayFileSum(path: "/dev/null"))
            try await relay.start { _ in try await Task.sleep(for: .seconds(3600)) }
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = try await outcome(within: .seconds(20)) { await task.result }
        guard case .success(let ending)? = result else {
            Issue.record("start did not return after the cancellation")
            return
        }
        #expect(throws: CancellationError.self) { try ending.get() }
    }

    @Test("cancelling the task that awaits the relay stops every stage")
    func cancellation() async throws {
        let relay = Relay(maxsize: 64)
        try relay.connect(RelayEndless(), RelayDouble(), RelayFileSum(path: "/dev/null"))
        let task = Task { try await relay.start() }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
    }

    @Test("leaving the output loop early stops every stage")
    func leavingEarly() async throws {
        let relay = Relay(maxsize: 64)
        try relay.connect(RelayEndless(), RelayPass())
        var seen = 0
        for try await _ in try relay.output(as: Int.self) {
            seen += 1
            if seen == 1_000 { break }
        }
        #expect(seen == 1_000)
    }

    @Test("logs from every stage arrive in the main process, in order per stage")
    func logs() async throws {
        let entries = try await RelayLogCollector().start().result()
        #expect(entries.last?.message == "received 50")
        let byProcess = Dictionary(grouping: entries.filter { $0.process.hasPrefix("RelayLogger") }, by: \.pid)
        #expect(byProcess.count == 3)
        for (_, stageEntries) in byProcess {
            let messages = stageEntries.map(\.message)
            #expect(messages.first == "start")
            #expect(messages.last == "end")
            // Each stage numbers what it logs: the numbers arrive in the order they were logged.
            let numbers = messages.dropFirst().dropLast().compactMap { Int($0) }
            #expect(numbers == Array(0..<numbers.count))
        }
        let counts = Dictionary(grouping: entries, by: \.process).mapValues { $0.count - 2 }
        #expect((counts["RelayLogger#0"] ?? 0) + (counts["RelayLogger#1"] ?? 0) == 50)
        #expect(counts["RelayLogger"] == 50)
        #expect(Set(entries.map(\.process)).isSuperset(of: ["RelayLogger#0", "RelayLogger#1", "RelayLogger"]))
    }
}

/// Runs a relay that fails or is stopped early in a child acting as the main process, and
/// reports what that child has left afterwards: children (zombies included) and descriptors.
struct RelayLeftoverProbe: Skprocess {
    enum Scenario: String, Codable, CaseIterable { case throwing, crash, cancel, leaveEarly, finish, restart }
    struct Report: Codable, Sendable {
        var children: [Int32]
        var descriptorsBefore: Int
        var descriptorsAfter: Int
        var outcome: String
    }
    var scenario: Scenario
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    /// This process's descriptors of the kinds a relay opens: sockets (its connections and
    /// control pipes), pipes (its children's output), pidfds and memfds. Not the event
    /// machinery's epolls, eventfds and timerfds: libdispatch opens some of those lazily, the
    /// first time it needs one of a kind (a timer clock, a worker monitor), keeps them for the
    /// process's life, and which it needs depends on timing (under the full suite's load, a
    /// `cancel` run opened one more in 2 runs of 10); the reactor's own are made once. Nor
    /// this process's own stdout and stderr opened again: the output forwarder opens its own
    /// description of them the first time a child's line is forwarded, and keeps it.
    static func descriptorCount() -> Int {
        func target(_ fd: String) -> String {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
        }
        let (stdout, stderr) = (target("1"), target("2"))
        let machinery: Set<String> = ["anon_inode:[timerfd]", "anon_inode:[eventfd]", "anon_inode:[eventpoll]"]
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            let link = target(fd)
            return !machinery.contains(link) && (Int(fd)! <= 2 || (link != stdout && link != stderr))
        }.count
    }

    private func runScenario() async throws -> String {
        let relay = Relay(maxsize: 16)
        var outcome = "finished"
        switch scenario {
        case .throwing, .crash:
            try relay.connect(RelayNumbers(range: 0..<100_000), RelayGroup(RelayFaulty(at: 300, crashes: scenario == .crash), RelayPass()), RelayPass())
            do {
                for try await _ in try relay.output(as: Int.self) {}
            } catch let error as RelayError {
                outcome = "failed in \(error.stage)"
            }
        case .cancel:
            try relay.connect(RelayEndless(), RelayDouble(), RelayFileSum(path: "/dev/null"))
            let task = Task { try await relay.start() }
            try await Task.sleep(for: .milliseconds(100))
            task.cancel()
            if case .failure(let error) = await task.result, error is CancellationError { outcome = "cancelled" }
        case .leaveEarly:
            try relay.connect(RelayEndless(), [RelayPass(), RelayPass()])
            for try await x in try relay.output(as: Int.self) where x > 500 { break }
            outcome = "left"
        case .finish:
            try relay.connect([RelayNumbers(range: 0..<1_000), RelayNumbers(range: 0..<1_000)], [RelayPass(), RelayPass()], RelayFileSum(path: "/dev/null"))
            try await relay.start()
        case .restart:
            let marker = NSTemporaryDirectory() + "relay-probe-\(getpid())-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: marker) }
            try relay.connect(RelayNumbers(range: 0..<1_000), RelayGroup(RelayCrashOnce(at: 100, marker: marker), RelayPass()), RelayPass())
            var count = 0
            for try await _ in try relay.output(as: Int.self) { count += 1 }
            outcome = relay.restarts.count == 1 && count >= 1_000 ? "restarted" : "restarts \(relay.restarts), \(count) received"
        }
        return outcome
    }

    func result() async throws -> Report {
        try await Self.leftovers { try await runScenario() }
    }

    /// Runs `scenario` twice and reports what the second run left behind. The first run
    /// opens what stays open for the process's life (the reactor's descriptors, Dispatch's
    /// timerfds): it is the second run that must leave nothing. (Also used by the actors'
    /// probe.)
    static func leftovers(of scenario: () async throws -> String) async throws -> Report {
        _ = try await scenario()
        // Leaving an output loop early kills the stages at once, and reaps them and closes
        // their descriptors moments later: wait until the count has held for 100 ms.
        var before = descriptorCount()
        var steady = 0
        for _ in 0..<200 where steady < 5 {
            try await Task.sleep(for: .milliseconds(20))
            let now = descriptorCount()
            steady = now == before && childProcessIDs().isEmpty ? steady + 1 : 0
            before = now
        }
        var outcome = try await scenario()
        // A child reaped a moment after the scenario returned is still this process's for a moment.
        var children = childProcessIDs()
        for _ in 0..<200 where !children.isEmpty {
            try await Task.sleep(for: .milliseconds(10))
            children = childProcessIDs()
        }
        var after = descriptorCount()
        for _ in 0..<200 where after != before {
            try await Task.sleep(for: .milliseconds(10))
            after = descriptorCount()
        }
        if after != before {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            outcome += " " + fds.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) ?? $0 }.joined(separator: ",")
        }
        return Report(children: children.map { Int32($0) }, descriptorsBefore: before,
                      descriptorsAfter: after, outcome: outcome)
    }
}

@Suite("Relays leave nothing behind", .timeLimit(.minutes(2)))
struct RelayLeftoverTests {
    @Test("no child, zombie or descriptor is left when a relay fails, is cancelled, is left early or finishes",
          arguments: RelayLeftoverProbe.Scenario.allCases)
    func nothingLeft(scenario: RelayLeftoverProbe.Scenario) async throws {
        let report = try await RelayLeftoverProbe(scenario: scenario).start().result()
        switch scenario {
        case .throwing, .crash: #expect(report.outcome == "failed in RelayFaulty#0")
        case .cancel: #expect(report.outcome == "cancelled")
        case .leaveEarly: #expect(report.outcome == "left")
        case .finish: #expect(report.outcome == "finished")
        case .restart: #expect(report.outcome == "restarted")
        }
        #expect(report.children.isEmpty, "children left: \(report.children)")
        #expect(report.descriptorsAfter == report.descriptorsBefore)
    }
}
