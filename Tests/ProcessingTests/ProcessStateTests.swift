import Testing
@testable import Processing

/// `ProcessState`'s transitions, without processes: children, waiters and timers are strings,
/// and each armed timer is recorded with its purpose.
@Suite("Process state machine")
struct ProcessStateTests {
    typealias Machine = ProcessState<String, String, String>

    /// Records what was armed; a timer's value names its purpose.
    final class Timers {
        var armed: [(Machine.TimerPurpose, Duration)] = []
        func arm(_ purpose: Machine.TimerPurpose, _ limit: Duration) -> String {
            armed.append((purpose, limit))
            return "\(purpose)"
        }
    }

    static func machine(lives: Int = 1, joinIn: Duration? = nil, runTimeout: Duration? = nil) -> Machine {
        var timeouts = ProcessConfig.Timeouts()
        timeouts.run = runTimeout
        let settings = Machine.Settings(processName: "P", typeName: "T", lives: lives, joinIn: joinIn,
                                        joinGrace: .seconds(1), timeouts: timeouts, terminationGrace: .milliseconds(250))
        return Machine(settings: settings, initialState: [1], initialAttachments: nil)
    }

    static let frame = OutgoingFrame(bytes: Frame.encode(.stop), attachments: nil)

    /// Launches and returns the first child's start request.
    @discardableResult
    static func start(_ machine: inout Machine, _ timers: Timers, child: String = "c1") throws -> StartRequest {
        let request = try machine.launch(arm: timers.arm)
        _ = machine.launched(child)
        #expect(machine.started().isEmpty)
        return request
    }

    static func failure(_ outcome: ProcessOutcome?) -> (any Error)? {
        if case .failure(let error)? = outcome { return error }
        return nil
    }

    @Test("a handle starts once; a message before start fails, one told while launching is sent after the start")
    func startAndSend() throws {
        var machine = Self.machine()
        let timers = Timers()
        #expect(throws: ProcessingError.self) { _ = try machine.send(Self.frame, operation: "tell") }
        #expect(throws: ProcessingError.self) { _ = try machine.beginWait() }
        let request = try machine.launch(arm: timers.arm)
        #expect(request.typeName == "T" && request.state == [1] && request.isLastLife && !request.sendsStateCheckpoints)
        #expect(throws: ProcessingError.self) { _ = try machine.launch(arm: timers.arm) }
        #expect(try machine.send(Self.frame, operation: "tell") == nil, "sent with no child")
        let launched = machine.launched("c1")
        #expect(launched.pending.count == 1 && !launched.kill && !launched.stopRequested)
        // Being started: a message told now waits behind those, and nothing overtakes them.
        #expect(try machine.send(Self.frame, operation: "tell") == nil, "a message overtook the start request")
        #expect(machine.child == "c1", "a stop or kill cannot reach the child being started")
        #expect(machine.started().count == 1)
        #expect(machine.started().isEmpty)
        #expect(try machine.send(Self.frame, operation: "tell") == "c1")
        #expect(machine.isActive)
    }

    @Test("a stop or kill while launching reaches the child when it is spawned")
    func requestsWhileLaunching() throws {
        var machine = Self.machine(lives: 3)
        _ = try machine.launch(arm: Timers().arm)
        #expect(machine.requestStop() == nil)
        #expect(machine.kill() == nil)
        let launched = machine.launched("c1")
        #expect(launched.stopRequested && launched.kill)
        // A kill gives up the process: no retry, whatever lives are left.
        guard case .finish(let finished) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("retried after a kill"); return
        }
        #expect((Self.failure(finished.outcome) as? ProcessCrashError)?.cause == .killed)
    }

    @Test("a crash with lives left retries from the last checkpoint; on the last life, a child runs error(_:)")
    func crashRetriesThenHandles() throws {
        var machine = Self.machine(lives: 2)
        let timers = Timers()
        let first = try Self.start(&machine, timers)
        #expect(!first.isLastLife && first.sendsStateCheckpoints)
        machine.checkpoint(Checkpoint(currentRun: 4, state: [9], timings: ProcessTimers()), attachments: nil)
        guard case .launch(let retry, _) = machine.exited(cause: .signal(11), stderr: StderrTail()) else {
            Issue.record("no retry"); return
        }
        #expect(retry.firstRun == 4 && retry.state == [9] && retry.isLastLife && retry.handleFailure == nil)
        #expect(machine.isActive && machine.child == nil)
        _ = machine.launched("c2")
        _ = machine.started()
        guard case .launch(let handler, _) = machine.exited(cause: .signal(11), stderr: StderrTail()) else {
            Issue.record("no child for error(_:)"); return
        }
        #expect(handler.handleFailure?.crash?.cause == .signal(11))
        _ = machine.launched("c3")
        let endsOnResult = machine.result(run: 4, bytes: [7])
        #expect(!endsOnResult, "ended on a result before the child's output ended")
        guard case .finish(let finished) = machine.exited(cause: .exit(0), stderr: StderrTail()),
              case .output(let run, let bytes) = finished.outcome else { Issue.record("error(_:)'s result lost"); return }
        #expect(run == 4 && bytes == [7])
    }

    @Test("a result ends the process once the child's output has ended too, in either order, and its exit changes nothing")
    func endOnResult() throws {
        for outputFirst in [false, true] {
            var machine = Self.machine(runTimeout: .seconds(5))
            let timers = Timers()
            try Self.start(&machine, timers)
            #expect(machine.sectionChanged((.run, 1), arm: timers.arm) == nil)
            let wait = try #require(try machine.beginWait())
            #expect(machine.registerWait("w", id: wait, timeout: nil, cancelled: false, arm: timers.arm) == nil)
            let early = machine.endOnResult()
            #expect(early == nil, "ended with neither the result nor the output's end")
            let (first, second) = outputFirst
                ? (machine.outputEnded(), machine.result(run: 2, bytes: [5]))
                : (machine.result(run: 2, bytes: [5]), machine.outputEnded())
            #expect(!first && second, "not ready to end on the second of the result and the output's end")
            let ending = machine.endOnResult()
            let (finished, child) = try #require(ending)
            #expect(child == "c1" && finished.waiters == ["w"] && finished.timers.contains("section(token: 1)"))
            guard case .output(2, [5])? = machine.outcome else { Issue.record("not ended with the result"); return }
            #expect(machine.endedOnResult)
            let again = machine.endOnResult()
            let killed = machine.kill()
            #expect(!machine.isActive && machine.child == nil && again == nil)
            #expect(killed == nil, "a kill after the end reached the exiting child")
            guard case .ended = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
                Issue.record("the exit after the end was handled again"); return
            }
            guard case .output(2, [5])? = machine.outcome else { Issue.record("the exit changed the outcome"); return }
        }
    }

    @Test("an output that ended without a result ends nothing; the next child starts with its output open")
    func outputEndedWithoutResult() throws {
        var machine = Self.machine(lives: 2)
        try Self.start(&machine, Timers())
        let endsWithoutResult = machine.outputEnded()
        #expect(!endsWithoutResult)
        guard case .launch = machine.exited(cause: .signal(11), stderr: StderrTail()) else { Issue.record("no retry"); return }
        _ = machine.launched("c2")
        let endsOnResult = machine.result(run: 1, bytes: [])
        let ended = machine.endOnResult()
        #expect(!endsOnResult && ended == nil, "the first child's ended output counted for the second")
        guard case .finish = machine.exited(cause: .exit(0), stderr: StderrTail()) else { Issue.record("not finished"); return }
        #expect(!machine.endedOnResult)
    }

    @Test("the child that runs error(_:) dying too leaves the original failure")
    func handlerDies() throws {
        var machine = Self.machine()
        try Self.start(&machine, Timers())
        guard case .launch = machine.exited(cause: .signal(6), stderr: StderrTail()) else { Issue.record("no handler"); return }
        _ = machine.launched("c2")
        guard case .finish(let finished) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("not finished"); return
        }
        #expect((Self.failure(finished.outcome) as? ProcessCrashError)?.cause == .signal(6))
    }

    @Test("a hook's error on the last life ends the process: error(_:) ran in the child already")
    func sectionErrorOnLastLife() throws {
        var machine = Self.machine()
        try Self.start(&machine, Timers())
        machine.failureReported(FailureReport(RunError(currentRun: 2, underlying: nil)))
        guard case .finish(let finished) = machine.exited(cause: .exit(0), stderr: StderrTail()) else {
            Issue.record("relaunched"); return
        }
        #expect(Self.failure(finished.outcome) is RunError)
        #expect(machine.currentRun == 2)
    }

    @Test("a section's time-out: armed on entry, replaced on the next, stale firings ignored, then SIGTERM, the grace and a failure")
    func sectionTimeout() throws {
        var machine = Self.machine(runTimeout: .seconds(2))
        let timers = Timers()
        try Self.start(&machine, timers)
        #expect(machine.sectionChanged((.prerun, 0), arm: timers.arm) == nil, "prerun has no time-out")
        #expect(machine.sectionChanged((.run, 0), arm: timers.arm) == nil)
        #expect(timers.armed.last?.0 == .section(token: 1) && timers.armed.last?.1 == .seconds(2))
        #expect(machine.sectionChanged((.run, 1), arm: timers.arm) == "section(token: 1)", "the last run's timer was kept")
        #expect(machine.sectionOverran(1, arm: timers.arm) == nil, "a stale timer fired")
        #expect(machine.sectionOverran(2, arm: timers.arm) == "c1")
        #expect(timers.armed.last?.0 == .killGrace)
        #expect(machine.killGracePassed() == "c1")
        #expect(machine.killGracePassed() == nil)
        guard case .launch(let handler, _) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("no child for error(_:)"); return
        }
        #expect(handler.handleFailure?.timeout?.section == .run)
    }

    @Test("the exit cancels the section's timers")
    func exitCancelsSectionTimers() throws {
        var machine = Self.machine(lives: 2, runTimeout: .seconds(2))
        let timers = Timers()
        try Self.start(&machine, timers)
        _ = machine.sectionChanged((.run, 0), arm: timers.arm)
        guard case .launch(_, let cancel) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("no retry"); return
        }
        #expect(cancel == ["section(token: 1)"])
        #expect(machine.sectionOverran(1, arm: timers.arm) == nil)
    }

    @Test("joinIn passing while the child is spawned asks it to stop, and its grace begins once it has its start request")
    func joinInWhileSpawning() throws {
        var machine = Self.machine(joinIn: .milliseconds(300))
        let timers = Timers()
        _ = try machine.launch(arm: timers.arm)
        #expect(machine.joinInPassed(arm: timers.arm) == nil, "no child to tell yet")
        #expect(timers.armed.map(\.0) == [.joinIn], "the grace ran before the child existed")
        #expect(machine.launched("c1").stopRequested)
        machine.armJoinGraceIfAwaited(arm: timers.arm)
        #expect(timers.armed.map(\.0) == [.joinIn, .joinGrace])
        machine.armJoinGraceIfAwaited(arm: timers.arm)
        #expect(timers.armed.count == 2, "armed twice")
    }

    @Test("joinIn: a stop, then the grace, then a kill that ends in JoinTimeoutError with no retry; every timer is cancelled at the end")
    func joinIn() throws {
        var machine = Self.machine(lives: 3, joinIn: .seconds(5))
        let timers = Timers()
        try Self.start(&machine, timers)
        #expect(timers.armed.map(\.0) == [.joinIn])
        #expect(machine.joinInPassed(arm: timers.arm) == "c1")
        #expect(timers.armed.last?.0 == .joinGrace && timers.armed.last?.1 == .seconds(1))
        #expect(machine.joinGracePassed() == "c1")
        guard case .finish(let finished) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("retried"); return
        }
        #expect(Self.failure(finished.outcome) is JoinTimeoutError)
        #expect(finished.timers == ["joinGrace"])
        #expect(machine.joinInPassed(arm: timers.arm) == nil, "a late timer did something")
    }

    @Test("a stop asked for is sticky: the retried child is started stopping")
    func stopIsSticky() throws {
        var machine = Self.machine(lives: 2)
        try Self.start(&machine, Timers())
        #expect(machine.requestStop() == "c1")
        guard case .launch = machine.exited(cause: .signal(9), stderr: StderrTail()) else { Issue.record("no retry"); return }
        #expect(machine.launched("c2").stopRequested)
    }

    @Test("a broken channel fails the process with why and returns the child to kill; no retry")
    func channelEnded() throws {
        var machine = Self.machine(lives: 2)
        try Self.start(&machine, Timers())
        let error = ProcessingError(.malformedFrame, "bad")
        #expect(machine.channelEnded(error) == "c1")
        guard case .finish(let finished) = machine.exited(cause: .signal(9), stderr: StderrTail()) else {
            Issue.record("retried"); return
        }
        #expect((Self.failure(finished.outcome) as? ProcessingError)?.description == error.description)
    }

    @Test("waits: cancelled before registering, timed, withdrawn, and ended together; after the end none waits")
    func waits() throws {
        var machine = Self.machine()
        let timers = Timers()
        try Self.start(&machine, timers)
        let early = try #require(try machine.beginWait())
        #expect(machine.registerWait("early", id: early, timeout: nil, cancelled: true, arm: timers.arm) == .cancelled)
        #expect(machine.withdrawWait(early) == nil)
        let timed = try #require(try machine.beginWait())
        #expect(machine.registerWait("timed", id: timed, timeout: .seconds(3), cancelled: false, arm: timers.arm) == nil)
        #expect(timers.armed.last?.0 == .wait(id: timed))
        let plain = try #require(try machine.beginWait())
        #expect(machine.registerWait("plain", id: plain, timeout: nil, cancelled: false, arm: timers.arm) == nil)
        let gone = try #require(try machine.beginWait())
        #expect(machine.registerWait("gone", id: gone, timeout: nil, cancelled: false, arm: timers.arm) == nil)
        #expect(machine.withdrawWait(gone)?.waiter == "gone")
        #expect(machine.waitingCount == 2)
        let endsOnResult = machine.result(run: 1, bytes: [])
        #expect(!endsOnResult)
        guard case .finish(let finished) = machine.exited(cause: .exit(0), stderr: StderrTail()) else {
            Issue.record("not finished"); return
        }
        #expect(finished.waiters == ["timed", "plain"])
        #expect(finished.timers == ["wait(id: \(timed))"])
        #expect(try machine.beginWait() == nil)
        #expect(machine.waitingCount == 0)
    }

    @Test("a wait that decided before the end and registers after it finds the end")
    func endBetweenDecideAndWait() throws {
        var machine = Self.machine()
        try Self.start(&machine, Timers())
        let id = try #require(try machine.beginWait())
        _ = machine.finish(.output(run: 0, bytes: []))
        #expect(machine.registerWait("late", id: id, timeout: nil, cancelled: false, arm: Timers().arm) == .ended)
        #expect(throws: ProcessingError.self) { _ = try machine.send(Self.frame, operation: "tell") }
        #expect(machine.kill() == nil && machine.requestStop() == nil)
    }
}
