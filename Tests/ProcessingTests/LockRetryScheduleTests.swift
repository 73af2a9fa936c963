import Testing
@testable import Processing

/// `LockRetrySchedule`, how a share operation waits for a held lock, on a clock of the test's.
@Suite("Share lock retry schedule")
struct LockRetryScheduleTests {
    typealias Schedule = LockRetrySchedule
    static let start = ContinuousClock.now

    @Test("retries at once while spinning, then sleeps 50 µs doubling up to 1 ms")
    func spinThenBackOff() {
        var schedule = Schedule(start: Self.start, limit: nil)
        #expect(schedule.missed(at: Self.start) == .retry)
        #expect(schedule.missed(at: Self.start + .microseconds(19)) == .retry)
        let sleeps = (0..<7).map { step in schedule.missed(at: Self.start + .microseconds(20) + .milliseconds(step)) }
        #expect(sleeps == [50, 100, 200, 400, 800, 1000, 1000].map { .sleep(.microseconds($0)) })
    }

    @Test("a limit clips the last sleep to the deadline, then times out, also while spinning")
    func limit() {
        var schedule = Schedule(start: Self.start, limit: .microseconds(130))
        #expect(schedule.missed(at: Self.start + .microseconds(30)) == .sleep(.microseconds(50)))
        #expect(schedule.missed(at: Self.start + .microseconds(90)) == .sleep(.microseconds(40)))
        #expect(schedule.missed(at: Self.start + .microseconds(130)) == .timedOut)
        var spinning = Schedule(start: Self.start, limit: .microseconds(5))
        #expect(spinning.missed(at: Self.start + .microseconds(6)) == .timedOut)
    }

    @Test("a blocking caller does not spin: its first miss sleeps")
    func noSpin() {
        var schedule = Schedule(start: Self.start, limit: .seconds(1), spin: .zero)
        #expect(schedule.missed(at: Self.start) == .sleep(.microseconds(50)))
    }
}
