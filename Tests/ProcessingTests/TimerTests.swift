import Foundation
import Testing
@testable import Processing

/// Five runs of a known minimum length.
struct TimedRuns: Skprocess {
    var processConfig = ProcessConfig(runs: 5)
    mutating func prerun() async throws {}
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(20)) }
}

@Suite("Sktimer and ProcessTimers")
struct TimerTests {
    @Test("statistics of known samples")
    func statistics() {
        var timer = Sktimer()
        #expect(timer.count == 0 && timer.mean == .zero && timer.percentile(50) == .zero)
        for milliseconds in [40, 10, 30, 20] { timer.add(.milliseconds(milliseconds)) }
        #expect(timer.count == 4)
        #expect(timer.total == .milliseconds(100))
        #expect(timer.mean == .milliseconds(25))
        #expect(timer.min == .milliseconds(10))
        #expect(timer.max == .milliseconds(40))
        #expect(timer.median == .milliseconds(25))
        #expect(timer.percentile(0) == .milliseconds(10))
        #expect(timer.percentile(100) == .milliseconds(40))
        #expect(abs(timer.percentile(50).seconds - 0.025) < 1e-12)
        // Sample standard deviation of 10, 20, 30, 40 ms: sqrt(500/3) ms.
        #expect(abs(timer.stdev.seconds - (500.0 / 3).squareRoot() / 1000) < 1e-12)
    }

    @Test("a copy keeps its own statistics after either side changes")
    func copiesAreIndependent() {
        var a = Sktimer()
        a.add(.seconds(1))
        _ = a.median
        var b = a
        b.add(.seconds(3))
        a.add(.seconds(5))
        #expect(b.median == .seconds(2))
        #expect(a.median == .seconds(3))
    }

    @Test("merge adds every sample, and a timer crosses Codable intact")
    func mergeAndCode() throws {
        var a = Sktimer()
        a.add(.milliseconds(1))
        var b = Sktimer()
        b.add(.milliseconds(3))
        a.merge(b)
        #expect(a.count == 2 && a.mean == .milliseconds(2))
        let decoded = try BinaryDecoder().decode(Sktimer.self, from: BinaryEncoder().encode(a))
        #expect(decoded == a && decoded.median == a.median)
    }

    @Test("every section is timed in the child and the timings reach the parent", .timeLimit(.minutes(1)))
    func processTimers() async throws {
        let handle = try await TimedRuns().start()
        try await handle.wait()
        let timers = handle.timers
        #expect(timers.prerun.count == 5)
        #expect(timers.run.count == 5)
        #expect(timers.postrun.count == 5)
        #expect(timers.fullRun.count == 5)
        #expect(timers.onFinish.count == 1)
        #expect(timers.result.count == 1)
        #expect(timers.error.count == 0)
        #expect(timers.run.min >= .milliseconds(20))
        #expect(timers.fullRun.min >= timers.run.min)
        #expect(timers.run.percentile(95) <= timers.run.max)
    }
}
