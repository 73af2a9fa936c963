import CProcessingShims
import Foundation
@testable import Processing
import Testing

// Spares are this process's global state, and idle spares are child processes: the scenarios
// run inside a probe process of their own, so that no other test sees them.

/// Prints a line to each stream and returns a value.
struct SparePrinter: Skprocess {
    var processConfig = ProcessConfig(runs: 1, stdout: .capture, stderr: .capture)
    mutating func run() async throws {
        print("to stdout")
        FileHandle.standardError.write(Data("to stderr\n".utf8))
    }
    func result() async throws -> String { "printed" }
}

/// Like `SparePrinter`, with its stdout thrown away.
struct SpareDiscarder: Skprocess {
    var processConfig = ProcessConfig(runs: 1, stdout: .discard, stderr: .capture)
    mutating func run() async throws {
        print("thrown away")
        FileHandle.standardError.write(Data("kept\n".utf8))
    }
    func result() async throws -> String { "discarded" }
}

/// Writes a line to stderr, then dies of SIGSEGV.
struct SpareCrasher: Skprocess {
    var processConfig = ProcessConfig(runs: 1, stderr: .discard)  // its tail is kept all the same
    mutating func run() async throws {
        FileHandle.standardError.write(Data("about to crash\n".utf8))
        kill(getpid(), SIGSEGV)
        try await Task.sleep(for: .seconds(10))
    }
}

/// Runs past its run time-out.
struct SpareOverrunner: Skprocess {
    var processConfig = ProcessConfig(runs: 1, timeouts: .init(run: .milliseconds(200)))
    mutating func run() async throws { try await Task.sleep(for: .seconds(30)) }
}

/// Sleeps until killed.
struct SpareSleeper: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { try await Task.sleep(for: .seconds(30)) }
}

/// Runs until `joinIn` stops it (how many runs it managed depends on the machine's load).
struct SpareJoiner: Skprocess {
    var processConfig = ProcessConfig(joinIn: .milliseconds(200))
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(20)) }
    func result() async throws -> Bool { true }
}

/// Answers with an environment variable it sees, and its working directory.
struct SpareEnvironmentReader: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> String {
        "\(ProcessInfo.processInfo.environment["PROCESSING_SPARE_TEST"] ?? "unset") in \(FileManager.default.currentDirectoryPath)"
    }
}

/// Logs a line to the main process.
struct SpareLogger: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { log("hello from a worker") }
}

/// What a scenario showed, once on a fresh worker and once on a spare.
struct SpareReport: Codable, Sendable {
    var fresh: String
    var spare: String
    /// Whether the second run's process was one of the idle spares' pids.
    var ranOnSpare: Bool
}

/// Runs a scenario without spares, then with warm spares, and says what each showed.
struct SpareProbe: Skprocess {
    enum Scenario: String, Codable, CaseIterable, Sendable {
        case output, discard, crash, lives, timeout, kill, joinIn, logging, pool
    }

    var scenario: Scenario
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> SpareReport {
        let fresh = try await outcome().text
        SpareWorkers.keep(2)
        try await SpareWorkers.warm(2)
        let spares = SparePool.shared.idlePIDs
        let (spare, pids) = try await outcome()
        await SpareWorkers.release()
        return SpareReport(fresh: fresh, spare: spare, ranOnSpare: !pids.isEmpty && pids.allSatisfy(spares.contains))
    }

    /// What happened, described without anything that differs between two runs (pids,
    /// times), and the pids of the processes that ran.
    func outcome() async throws -> (text: String, pids: [Int32]) {
        switch scenario {
        case .output:
            let handle = try await SparePrinter().start()
            let pid = handle.pid ?? 0  // (nil once the process has ended)
            let result = try await handle.result()
            return ("\(result) stdout=\(handle.capturedOutput.stdout) stderr=\(handle.capturedOutput.stderr) on result: \(handle.core.endedOnResult)", [pid])
        case .discard:
            let handle = try await SpareDiscarder().start()
            let pid = handle.pid ?? 0
            let result = try await handle.result()
            return ("\(result) stdout=\(handle.capturedOutput.stdout) stderr=\(handle.capturedOutput.stderr)", [pid])
        case .crash:
            let handle = try await SpareCrasher().start()
            let pid = handle.pid ?? 0
            do {
                _ = try await handle.result()
                return ("no crash", [pid])
            } catch let error as ProcessCrashError {
                return ("\(error.cause) tail has the line: \(error.stderrTail.contains("about to crash"))", [pid])
            }
        case .lives:
            let marker = NSTemporaryDirectory() + "spare-lives-\(getpid())-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: marker) }
            let handle = try await CrashesOnce(marker: marker).start()  // (EventTests)
            let pid = handle.pid ?? 0
            return ("second life: \(try await handle.result())", [pid])
        case .timeout:
            let handle = try await SpareOverrunner().start()
            let pid = handle.pid ?? 0
            do {
                _ = try await handle.result()
                return ("no time-out", [pid])
            } catch let error as ProcessTimeoutError {
                return ("timed out in \(error.section) after \(error.timeout)", [pid])
            }
        case .kill:
            let handle = try await SpareSleeper().start()
            let pid = handle.pid ?? 0
            try await Task.sleep(for: .milliseconds(50))
            await handle.kill()
            do {
                _ = try await handle.result()
                return ("not killed", [pid])
            } catch let error as ProcessCrashError {
                return ("\(error.cause)", [pid])
            }
        case .joinIn:
            let handle = try await SpareJoiner().start()
            let pid = handle.pid ?? 0
            return ("ran and stopped: \(try await handle.result())", [pid])
        case .logging:
            let lines = LockedLines()
            ProcessLog.setHandler { entry in lines.append("\(entry.level) \(entry.message)") }
            defer { ProcessLog.setHandler(nil) }
            let handle = try await SpareLogger().start()
            let pid = handle.pid ?? 0
            try await handle.wait()
            await ProcessLog.flush()
            return (lines.all.joined(separator: "|"), [pid])
        case .pool:
            let pool = Pool(workers: 2)
            let results = try await pool.map(Array(0..<100)) { $0 * 3 }
            let pids = pool.workerPIDs
            await pool.close()
            return ("\(results == (0..<100).map { $0 * 3 }) on \(pids.count) workers", pids)
        }
    }
}

/// Lines collected from several threads.
final class LockedLines: Sendable {
    private let lines = TestMutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// What spares leave behind, and how they cope with a spare that dies while idle.
struct SpareLeftoverProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    struct Report: Codable, Sendable {
        var outcome: String
        var children: [Int32]
        var descriptorsBefore: Int
        var descriptorsAfter: Int
    }

    func result() async throws -> Report {
        let report = try await RelayLeftoverProbe.leftovers {
            SpareWorkers.keep(3)
            try await SpareWorkers.warm(3)
            // A spare killed while idle is replaced, and starts go on.
            let victim = SparePool.shared.idlePIDs[0]
            kill(victim, SIGKILL)
            var replaced = false
            for _ in 0..<500 where !replaced {
                try await Task.sleep(for: .milliseconds(10))
                replaced = !SparePool.shared.idlePIDs.contains(victim) && SparePool.shared.idleCount == 3
            }
            try await SpareWorkers.warm(3)
            var answers = 0
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<6 { group.addTask { try await SparePrinter().start().result() } }
                for try await answer in group where answer == "printed" { answers += 1 }
            }
            let pool = Pool(workers: 2)
            let sum = try await pool.map(Array(0..<10)) { $0 }.reduce(0, +)
            await pool.close()
            await SpareWorkers.release()
            return "replaced \(replaced), \(answers) answers, sum \(sum), \(SparePool.shared.idleCount) idle"
        }
        return Report(outcome: report.outcome, children: report.children,
                      descriptorsBefore: report.descriptorsBefore, descriptorsAfter: report.descriptorsAfter)
    }
}

/// Starts a process after the environment and working directory changed: the spares made
/// before must not be used.
struct SpareSettingProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> [String] {
        SpareWorkers.keep(1)
        try await SpareWorkers.warm(1)
        let before = SparePool.shared.idlePIDs
        setenv("PROCESSING_SPARE_TEST", "changed", 1)
        let changedEnvironment = try await SpareEnvironmentReader().start()
        let changedPID = changedEnvironment.pid ?? 0
        let environmentAnswer = try await changedEnvironment.result()
        try await SpareWorkers.warm(1)
        let directory = NSTemporaryDirectory()
        _ = FileManager.default.changeCurrentDirectoryPath(directory)
        let changedDirectory = try await SpareEnvironmentReader().start()
        let directoryAnswer = try await changedDirectory.result()
        // With nothing changed since, the replacement is used.
        try await SpareWorkers.warm(1)
        let spares = SparePool.shared.idlePIDs
        let unchanged = try await SpareEnvironmentReader().start()
        let unchangedPID = unchanged.pid ?? 0
        let unchangedAnswer = try await unchanged.result()
        await SpareWorkers.release()
        return [
            environmentAnswer, "\(before.contains(changedPID))",
            directoryAnswer, "\(unchangedAnswer)", "\(spares.contains(unchangedPID))",
        ]
    }
}

@Suite("Spare workers", .timeLimit(.minutes(2)))
struct SpareWorkerTests {
    @Test("a process on a spare behaves as one on a fresh worker", arguments: SpareProbe.Scenario.allCases)
    func behavesAsFresh(scenario: SpareProbe.Scenario) async throws {
        let report = try await SpareProbe(scenario: scenario).start().result()
        #expect(report.ranOnSpare, "the second run did not take a spare")
        #expect(report.fresh == report.spare)
        switch scenario {
        case .output: #expect(report.spare == "printed stdout=to stdout\n stderr=to stderr\n on result: true")
        case .discard: #expect(report.spare == "discarded stdout= stderr=kept\n")
        case .crash: #expect(report.spare == "killed by SIGSEGV (signal 11) tail has the line: true")
        case .lives: #expect(report.spare == "second life: 7")
        case .timeout: #expect(report.spare.hasPrefix("timed out in run after"))
        case .kill: #expect(report.spare == "ended by kill(); a killed process has no result")
        case .joinIn: #expect(report.spare == "ran and stopped: true")
        case .logging: #expect(report.spare == "info hello from a worker")
        case .pool: #expect(report.spare == "true on 2 workers")
        }
    }

    @Test("spares leave no child, zombie or descriptor, and one killed while idle is replaced")
    func leaveNothing() async throws {
        let report = try await SpareLeftoverProbe().start().result()
        #expect(report.outcome == "replaced true, 6 answers, sum 45, 0 idle")
        #expect(report.children.isEmpty, "children left: \(report.children)")
        #expect(report.descriptorsAfter == report.descriptorsBefore)
    }

    @Test("a spare made before the environment or directory changed is not used")
    func settingChanges() async throws {
        let answers = try await SpareSettingProbe().start().result()
        let directory = NSTemporaryDirectory()
        let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        #expect(answers[0].hasPrefix("changed in "))
        #expect(answers[1] == "false", "a spare with the old environment was used")
        #expect(answers[2].hasPrefix("changed in "))
        #expect(answers[2].hasSuffix(directory) || answers[2].hasSuffix(resolved) || answers[2].hasSuffix(String(directory.dropLast())))
        #expect(answers[3] == answers[2])
        #expect(answers[4] == "true", "the replacement spare was not used")
    }

    @Test("a spare that warms up (or dies) just as it is recorded is counted as such")
    func readinessBeforeWatching() async throws {
        let outcome = try await SpareLateWatchProbe().start().result()
        #expect(outcome == ["2 warm", "replaced", "0 idle"])
    }

    @Test("a spare is told the process types started last, to look them up while it waits")
    func typeHints() async throws {
        let outcome = try await SpareHintProbe().start().result()
        #expect(outcome == ["fresh: []", "on spare: true", "hinted: true"])
    }

    @Test("warming waits for ready spares and can be cancelled; keep(0) ends them")
    func warmAndCancel() async throws {
        let outcome = try await SpareWarmProbe().start().result()
        #expect(outcome == ["2 ready", "cancelled", "0 idle"])
    }
}

/// Spares that warm up between the moment their readiness pipe is watched and the moment they
/// are recorded: their byte must count (warm hung for ever when its handler ran before the
/// spare was recorded), and so must the death of one killed then.
struct SpareLateWatchProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> [String] {
        SparePool.pauseAfterWatching.withLock { $0 = 300_000 }
        defer { SparePool.pauseAfterWatching.withLock { $0 = 0 } }
        let warmed = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { try await SpareWorkers.warm(2); return true }
            group.addTask { try await Task.sleep(for: .seconds(20)); return false }
            defer { group.cancelAll() }
            return try await group.next()!
        }
        var outcome = [warmed ? "\(SparePool.shared.warmCount) warm" : "warm hung"]
        // One more spare, killed before it is watched: it is seen dead and replaced.
        SparePool.pauseAfterWatching.withLock { $0 = 500_000 }
        let before = Set(childProcessIDs())
        SpareWorkers.keep(3)
        var victim: pid_t?
        for _ in 0..<400 where victim == nil {
            try await Task.sleep(for: .milliseconds(5))
            victim = Set(childProcessIDs()).subtracting(before).first
        }
        if let victim { kill(victim, SIGKILL) }
        var replaced = false
        for _ in 0..<500 where !replaced {
            try await Task.sleep(for: .milliseconds(10))
            let idle = SparePool.shared.idlePIDs
            replaced = idle.count == 3 && victim.map { !idle.contains($0) } == true && SparePool.shared.warmCount == 3
        }
        outcome.append(replaced ? "replaced" : "not replaced: \(SparePool.shared.idlePIDs), victim \(victim.map(String.init) ?? "none")")
        await SpareWorkers.release()
        outcome.append("\(SparePool.shared.idleCount) idle")
        return outcome
    }
}

/// Says which process types its worker was told to warm up for, if it was a spare.
struct SpareHintReader: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [String] {
        String(cString: processing_worker_spare_hints()).split(separator: ",").map(String.init)
    }
}

/// A spare spawned after a start is told that start's type (it looks it up while it waits).
struct SpareHintProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> [String] {
        let fresh = try await SpareHintReader().start().result()
        SpareWorkers.keep(1)
        try await SpareWorkers.warm(1)
        let spares = SparePool.shared.idlePIDs
        let handle = try await SpareHintReader().start()
        let onSpare = spares.contains(handle.pid ?? 0)
        let hints = try await handle.result()
        await SpareWorkers.release()
        let own = TypeName.mangled(SpareHintReader.self) ?? "?"
        return ["fresh: \(fresh)", "on spare: \(onSpare)", "hinted: \(hints.first == own)"]
    }
}

/// `warm` and its cancellation, in a process of its own.
struct SpareWarmProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    func result() async throws -> [String] {
        try await SpareWorkers.warm(2)
        let ready = "\(SparePool.shared.warmCount) ready"
        let waiting = Task { try await SpareWorkers.warm(50) }
        waiting.cancel()
        let cancelled: String
        do {
            try await waiting.value
            cancelled = "not cancelled"
        } catch is CancellationError {
            cancelled = "cancelled"
        }
        await SpareWorkers.release()
        return [ready, cancelled, "\(SparePool.shared.idleCount) idle"]
    }
}

@Suite("Spare pool state")
struct SparePoolStateTests {
    typealias Machine = SparePoolState<Int, String>

    @Test("keep asks for one spawn at a time until the target is met, and take asks for a replacement")
    func keepAndTake() {
        var machine = Machine()
        #expect(machine.keep(2).spawn)
        #expect(machine.spawned(10, id: 0).spawn)
        #expect(!machine.spawned(11, id: 1).spawn)
        #expect(machine.idleCount == 2)
        _ = machine.warmed(1)
        let (taken, actions) = machine.take { _ in true }
        #expect(taken == 11, "the warm spare is taken first")
        #expect(actions.spawn)
        #expect(machine.take { _ in true }.spare == 10)
        #expect(machine.take { _ in true }.spare == nil)
    }

    @Test("spares that no longer fit are all ended, and none is taken")
    func misfits() {
        var machine = Machine()
        _ = machine.keep(2)
        _ = machine.spawned(10, id: 0)
        _ = machine.spawned(11, id: 1)
        let (taken, actions) = machine.take { _ in false }
        #expect(taken == nil)
        #expect(actions.end.sorted() == [10, 11])
        #expect(actions.spawn)
        #expect(machine.idleCount == 0)
    }

    @Test("each spare's setting is checked: a warm one spawned under another environment is ended, not taken")
    func mixedSettings() {
        var machine = Machine()
        _ = machine.keep(3)
        _ = machine.spawned(10, id: 0)     // fits, still warming
        _ = machine.spawned(11, id: 1)     // spawned under another setting, warm
        _ = machine.spawned(12, id: 2)     // fits, warm
        _ = machine.warmed(1)
        _ = machine.warmed(2)
        let (taken, actions) = machine.take { $0 != 11 }
        #expect(taken == 12, "a spare whose setting no longer fits was taken")
        #expect(actions.end == [11])
        #expect(actions.spawn)
        #expect(machine.idleSpares == [10])
    }

    @Test("warm waiters go on once enough spares are warm; cancellation hands the waiter back")
    func warmWaits() {
        var machine = Machine()
        let (result, actions) = machine.waitUntilWarm(2, id: 0, "a")
        #expect(result == .waiting)
        #expect(actions.spawn)
        #expect(machine.target == 2)
        _ = machine.spawned(10, id: 1)
        _ = machine.spawned(11, id: 2)
        #expect(machine.warmed(1).resume.isEmpty)
        #expect(machine.warmed(2).resume == ["a"])
        _ = machine.waitUntilWarm(5, id: 3, "b")
        #expect(machine.cancelWait(3) == "b")
        #expect(machine.cancelWait(3) == nil)
    }

    @Test("three spares in a row that die before they are warm turn spares off")
    func earlyDeaths() {
        var machine = Machine()
        _ = machine.keep(1)
        _ = machine.waitUntilWarm(1, id: 100, "w")
        for id in UInt64(0)..<2 {
            _ = machine.spawned(Int(id), id: id)
            let actions = machine.died(id)
            #expect(actions.end == [Int(id)])
            #expect(actions.spawn)
        }
        _ = machine.spawned(2, id: 2)
        let actions = machine.died(2)
        #expect(actions.fail == ["w"])
        #expect(!actions.spawn)
        #expect(machine.target == 0)
        #expect(machine.offReason != nil)
        #expect(machine.keep(1).spawn, "keep turns them on again")
        #expect(machine.offReason == nil)
    }

    @Test("a spare that dies after it was taken is none of the pool's business")
    func deathAfterTake() {
        var machine = Machine()
        _ = machine.keep(1)
        _ = machine.spawned(10, id: 0)
        _ = machine.take { _ in true }
        let actions = machine.died(0)
        #expect(actions.end.isEmpty)
        #expect(!actions.spawn)
    }

    @Test("keep(0) ends the idle spares and fails the warm waiters; a spawn that finishes after is ended")
    func turnOff() {
        var machine = Machine()
        _ = machine.waitUntilWarm(1, id: 0, "w")
        let actions = machine.keep(0)
        #expect(actions.fail == ["w"])
        #expect(actions.failReason != nil)
        #expect(machine.spawned(10, id: 1).end == [10])
    }
}
