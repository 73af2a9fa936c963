import Foundation
import Testing
@testable import Processing

/// How `Flaky` fails.
enum FailureMode: String, Codable, Sendable, CaseIterable {
    case throwing, crashing, hanging
}

/// Runs five times, failing at run 2 the first `failures` times it gets there (counted in a
/// file, the only thing that outlives a child), then succeeding. Its result is the runs its
/// state saw, so a retry that did not resume from the last checkpoint shows.
struct Flaky: Skprocess {
    var mode: FailureMode
    var attemptsFile: String
    var failures = 2
    var runsSeen: [Int] = []
    var processConfig = ProcessConfig(runs: 5, lives: 3, timeouts: .init(run: .seconds(2)))

    mutating func run() async throws {
        if currentRun == 2 {
            let earlier = (try? String(contentsOfFile: attemptsFile, encoding: .utf8))?.count ?? 0
            try String(repeating: "x", count: earlier + 1).write(toFile: attemptsFile, atomically: true, encoding: .utf8)
            if earlier < failures {
                switch mode {
                case .throwing: throw TestFailure(code: earlier)
                case .crashing: abort()
                case .hanging: try await Task.sleep(for: .seconds(3600))
                }
            }
        }
        runsSeen.append(currentRun)
    }

    func result() async throws -> [Int] { runsSeen }

    static func attemptsFile() -> String {
        NSTemporaryDirectory() + "processing-flaky-\(UUID().uuidString)"
    }
}

/// Always fails the same way at run 1; `error(_:)` turns the failure into a result.
struct Doomed: Skprocess {
    var mode: FailureMode
    var handles = true
    var processConfig = ProcessConfig(runs: 3, lives: 2, timeouts: .init(run: .seconds(2)))

    mutating func run() async throws {
        guard currentRun == 1 else { return }
        switch mode {
        case .throwing: throw TestFailure(code: 7)
        case .crashing: abort()
        case .hanging: try await Task.sleep(for: .seconds(3600))
        }
    }

    func result() async throws -> String { "finished" }

    func error(_ error: any ProcessError) async throws -> String {
        guard handles else { throw error }
        return "handled \(type(of: error)) in run \(error.currentRun), seen in run \(currentRun)"
    }
}

/// A section that hangs, for time-outs.
struct Hanger: Skprocess {
    var hangIn: ProcessSection
    var processConfig = ProcessConfig(runs: 2, timeouts: .init(prerun: .seconds(2), run: .seconds(2),
                                                               onFinish: .seconds(2)))
    mutating func prerun() async throws { if hangIn == .prerun, currentRun == 1 { try await Task.sleep(for: .seconds(3600)) } }
    mutating func run() async throws { if hangIn == .run, currentRun == 1 { try await Task.sleep(for: .seconds(3600)) } }
    mutating func onFinish() async throws { if hangIn == .onFinish { try await Task.sleep(for: .seconds(3600)) } }
}

/// Runs until stopped; `joinIn` stops it.
struct Joiner: Skprocess {
    var runsDone = 0
    var finished = false
    var processConfig = ProcessConfig(runs: nil, joinIn: .milliseconds(300))
    mutating func run() async throws {
        try await Task.sleep(for: .milliseconds(10))
        runsDone += 1
    }
    mutating func onFinish() async throws { finished = true }
    func result() async throws -> SleeperReport { SleeperReport(runsDone: runsDone, finished: finished) }
}

@Suite("Lives, time-outs and joinIn", .timeLimit(.minutes(2)))
struct ProcessResilienceTests {
    @Test("lives = 3 with two failures, then success: the result is right and runs resume where they stopped",
          arguments: FailureMode.allCases)
    func retriesResume(mode: FailureMode) async throws {
        let file = Flaky.attemptsFile()
        defer { try? FileManager.default.removeItem(atPath: file) }
        let handle = try await Flaky(mode: mode, attemptsFile: file).start()
        let runsSeen = try await handle.result()
        #expect(runsSeen == [0, 1, 2, 3, 4])
        #expect(handle.currentRun == 5)
        #expect(try String(contentsOfFile: file, encoding: .utf8).count == 3)  // two failures, then the success
        #expect(handle.timers.fullRun.count == 5)
    }

    @Test("a failure on the last life is decided by error(_:)", arguments: FailureMode.allCases)
    func livesExhausted(mode: FailureMode) async throws {
        let handle = try await Doomed(mode: mode).start()
        let expectedKind = switch mode {
        case .throwing: "RunError"
        case .crashing: "ProcessCrashError"
        case .hanging: "ProcessTimeoutError"
        }
        #expect(try await handle.result() == "handled \(expectedKind) in run 1, seen in run 1")
    }

    @Test("with the default error(_:), the last failure is thrown", arguments: FailureMode.allCases)
    func livesExhaustedRethrows(mode: FailureMode) async throws {
        let handle = try await Doomed(mode: mode, handles: false).start()
        do {
            _ = try await handle.result()
            Issue.record("expected a failure")
        } catch let error as RunError {
            #expect(mode == .throwing)
            #expect(error.currentRun == 1)
            #expect(error.underlying?.value as? TestFailure == TestFailure(code: 7))
        } catch let error as ProcessCrashError {
            #expect(mode == .crashing)
            #expect(error.signal == SIGABRT)
            #expect(error.currentRun == 1)
        } catch let error as ProcessTimeoutError {
            #expect(mode == .hanging)
            #expect(error.section == .run && error.currentRun == 1)
        }
    }

    @Test("a section that overruns its time-out is killed and reported with section, limit and run",
          arguments: [ProcessSection.prerun, .run, .onFinish])
    func sectionTimeout(section: ProcessSection) async throws {
        let started = ContinuousClock.now
        let handle = try await Hanger(hangIn: section).start()
        let error = await expectError(ProcessTimeoutError.self) { try await handle.result() }
        let elapsed = ContinuousClock.now - started
        #expect(error?.section == section)
        #expect(error?.timeout == .seconds(2))
        #expect(error?.currentRun == (section == .onFinish ? 2 : 1))
        #expect(!handle.isAlive)
        // Cut off, not slept through (the bound is loose on purpose: 2 noisy cores).
        #expect(elapsed < .seconds(20))
        print("time-out of \(section): 2 s limit, result() threw after \(elapsed)")
    }

    @Test("joinIn stops a process that has no run limit, gracefully")
    func joinInStops() async throws {
        let report = try await Joiner().start().result()
        // It ended by itself, through onFinish (how many runs fit in 300 ms depends on load).
        #expect(report.finished)
    }

    @Test("kill() ignores lives")
    func killIgnoresLives() async throws {
        let file = Flaky.attemptsFile()
        defer { try? FileManager.default.removeItem(atPath: file) }
        var flaky = Flaky(mode: .hanging, attemptsFile: file)
        flaky.processConfig.timeouts = .init()
        let handle = try await flaky.start()
        while (try? String(contentsOfFile: file, encoding: .utf8)) == nil { try await Task.sleep(for: .milliseconds(5)) }
        await handle.kill()
        let error = await expectError(ProcessCrashError.self) { try await handle.result() }
        #expect(error?.cause == .killed)
        #expect(try String(contentsOfFile: file, encoding: .utf8).count == 1)
    }

    @Test("a message told while the process restarts reaches the new child")
    func tellDuringRestart() async throws {
        let echo = RestartingEcho()
        defer { try? FileManager.default.removeItem(atPath: echo.pidFile) }
        let handle = try await echo.start()
        var firstChild: pid_t?
        while firstChild == nil {
            firstChild = (try? String(contentsOfFile: echo.pidFile, encoding: .utf8)).flatMap { pid_t($0) }
            try await Task.sleep(for: .milliseconds(2))
        }
        // Once the first child is reaped, the process is between lives or in its second one.
        while Glibc.kill(firstChild!, 0) == 0 { try await Task.sleep(for: .milliseconds(2)) }
        #expect(handle.isAlive)
        try await handle.tell("hello")
        let echoed: String? = try await handle.listen(timeout: .seconds(10))
        #expect(echoed == "hello")
        _ = try await handle.result()
    }

    @Test("joinIn bounds a child that does not stop: after the grace period it is killed, and the error says why")
    func joinInKillsAStuckChild() async throws {
        for spinning in [true, false] {
            let handle = try await Unstoppable(spinning: spinning).start()
            let ended = try await outcome(within: .seconds(30)) { try await handle.result() }
            let error = try #require(ended, "joinIn did not end a child that ignores stop (spinning: \(spinning))")
            guard case .failure(let failure) = error else {
                Issue.record("a stuck child returned a result")
                continue
            }
            #expect(failure is JoinTimeoutError, "\(failure)")
            #expect(String(describing: failure).contains("joinIn"), "\(failure)")
            #expect(!handle.isAlive)
        }
    }

    @Test("section time-outs are cancelled as their sections end: none is left armed")
    func sectionTimersCancelled() async throws {
        #expect(try await SectionTimerProbe().start().result() == 0)
    }

    @Test("a wait's time-out is gone once the wait returns: nothing keeps the process alive")
    func waitTimerReleased() async throws {
        weak var core: ProcessCore?
        do {
            let handle = try await Counter().start()
            core = handle.core
            #expect(try await handle.wait(timeout: .seconds(3600)))
        }
        // The reactor thread lets go of the process just after resuming the wait (seen under
        // ThreadSanitizer's slower schedule); an hour-long time-out would hold it for an hour.
        for _ in 0..<1_000 where core != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(core == nil, "an ended wait's hour-long time-out still holds the process")
    }
}

/// Runs until stopped; once joinIn asks it to stop (after 100 ms), its onFinish never ends:
/// it spins (never awaiting) or sleeps an hour, and its grace is short.
struct Unstoppable: Skprocess {
    var spinning: Bool
    var processConfig = ProcessConfig(runs: nil, joinIn: .milliseconds(100), joinGrace: .milliseconds(200))
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(5)) }
    mutating func onFinish() async throws {
        if spinning {
            var x: UInt64 = 1
            while x != 0 { x = x &* 6364136223846793005 &+ 1442695040888963407 }
        }
        try await Task.sleep(for: .seconds(3600))
    }
}
/// Crashes at once on its first life (leaving its pid in a file); on its second, echoes
/// one message.
struct RestartingEcho: Skprocess {
    var pidFile = Flaky.attemptsFile()
    var processConfig = ProcessConfig(runs: 1, lives: 2)
    mutating func run() async throws {
        if !FileManager.default.fileExists(atPath: pidFile) {
            try String(getpid()).write(toFile: pidFile, atomically: true, encoding: .utf8)
            abort()
        }
        let message: String? = try await listen(timeout: .seconds(10))
        try await tell(message ?? "nothing")
    }
}

/// A parent of its own: runs a process with an hour-long run time-out through 200 runs, and
/// returns how many more timers are armed after it ended than before.
struct SectionTimerProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> Int {
        let before = OneShotTimer.armed
        _ = try await HourLimitedRuns().start().result()
        return OneShotTimer.armed - before
    }
}

/// 200 quick runs, each under a time-out of an hour.
struct HourLimitedRuns: Skprocess {
    var processConfig = ProcessConfig(runs: 200, timeouts: .init(run: .seconds(3600)))
    mutating func run() async throws {}
}
