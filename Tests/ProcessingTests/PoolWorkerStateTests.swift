import Testing
@testable import Processing

/// `PoolWorkerState`'s transitions, without processes: waiters and timers are plain strings.
@Suite("Pool worker state machine")
struct PoolWorkerStateTests {
    typealias Machine = PoolWorkerState<String, String, String, String>

    static let crash = ProcessCrashError(cause: .signal(9), stderrTail: "", processName: "a pool worker", currentRun: 0)

    /// A worker past its ready reply.
    static func ready() -> Machine {
        var machine = Machine()
        _ = machine.readyReplied()
        return machine
    }

    static func isCancellation(_ error: any Error) -> Bool { error is CancellationError }

    @Test("the ready reply resumes the one waiting for it; a later wait finds it ready")
    func readyReply() {
        var machine = Machine()
        guard case .waiting = machine.waitForReady("launch", cancelled: false) else { Issue.record("did not wait"); return }
        #expect(machine.readyReplied() == "launch")
        guard case .ready = machine.waitForReady("again", cancelled: false) else { Issue.record("not ready"); return }
        #expect(machine.readyReplied() == nil)
    }

    @Test("a ready wait cancelled before it registers fails at once; one cancelled after is withdrawn")
    func readyCancelled() {
        var machine = Machine()
        guard case .failed(let error) = machine.waitForReady("early", cancelled: true), Self.isCancellation(error) else {
            Issue.record("a cancelled wait waited"); return
        }
        #expect(machine.cancelReadyWait() == nil)
        guard case .waiting = machine.waitForReady("late", cancelled: false) else { Issue.record("did not wait"); return }
        #expect(machine.cancelReadyWait() == "late")
        #expect(machine.readyReplied() == nil, "the withdrawn waiter was resumed twice")
    }

    @Test("a kill while starting fails the ready waiter at once; a later wait fails too")
    func killWhileStarting() {
        var machine = Machine()
        _ = machine.waitForReady("launch", cancelled: false)
        let failed = machine.kill()
        #expect(failed?.readyWaiter == "launch")
        #expect(failed?.error.cause == .killed)
        #expect(machine.isDead)
        guard case .failed = machine.waitForReady("after", cancelled: false) else { Issue.record("waited on a dead worker"); return }
        let exit = machine.exited(Self.crash)
        #expect(exit.readyWaiter == nil, "the ready waiter was resumed twice")
        #expect(exit.error.cause == .killed, "the kill is the reason kept, not the signal")
    }

    @Test("an exit while starting fails the ready waiter with the crash")
    func exitWhileStarting() {
        var machine = Machine()
        _ = machine.waitForReady("launch", cancelled: false)
        let exit = machine.exited(Self.crash)
        #expect(exit.readyWaiter == "launch")
        #expect(exit.error.cause == .signal(9))
    }

    @Test("a batch claims the worker, installs its work once, and its reply frees it")
    func batchRoundTrip() throws {
        var starting = Machine()
        #expect(throws: ProcessingError.self) { _ = try starting.claim(workID: 1) }
        var machine = Self.ready()
        let first = try machine.claim(workID: 7)
        #expect(first.install)
        #expect(machine.isRunningBatch)
        #expect(throws: ProcessingError.self) { _ = try machine.claim(workID: 7) }
        guard case .send = machine.awaitReply(batchID: first.batchID, reply: "r1", timer: "t1", cancelled: false) else {
            Issue.record("not sent"); return
        }
        let ended = machine.endBatch(first.batchID)
        #expect(ended?.reply == "r1")
        #expect(ended?.timer == "t1")
        #expect(machine.endBatch(first.batchID) == nil, "a batch ended twice")
        #expect(!machine.isRunningBatch)
        let second = try machine.claim(workID: 7)
        #expect(!second.install)
        #expect(second.batchID == first.batchID + 1)
    }

    @Test("a failed install removes the work, so the next batch installs it again")
    func installFailed() throws {
        var machine = Self.ready()
        let first = try machine.claim(workID: 3)
        machine.installFailed(batchID: first.batchID, workID: 3)
        #expect(!machine.isRunningBatch)
        #expect(try machine.claim(workID: 3).install)
    }

    @Test("a batch cancelled before its reply waits fails, cancels its timer and leaves the worker idle, in either order")
    func cancelledBeforeWaiting() throws {
        // The cancellation handler ran first: the batch ends with nothing to resume.
        var machine = Self.ready()
        let batch = try machine.claim(workID: 1)
        let ended = machine.endBatch(batch.batchID)
        #expect(ended != nil && ended?.reply == nil)
        guard case .fail(let error, let timer) = machine.awaitReply(batchID: batch.batchID, reply: "r", timer: "t", cancelled: true),
              Self.isCancellation(error) else { Issue.record("waited"); return }
        #expect(timer == "t")
        #expect(!machine.isRunningBatch && !machine.isDead)
        // The wait saw the cancellation first.
        var other = Self.ready()
        let next = try other.claim(workID: 1)
        guard case .fail(let otherError, nil) = other.awaitReply(batchID: next.batchID, reply: "r", timer: nil, cancelled: true),
              Self.isCancellation(otherError) else { Issue.record("waited"); return }
        #expect(!other.isRunningBatch && !other.isDead)
        #expect(other.endBatch(next.batchID) == nil, "the handler found the batch still there")
        #expect(try other.claim(workID: 1).batchID == next.batchID + 1)
    }

    @Test("a kill while a batch runs keeps it until the exit, which fails it with the kill")
    func killWhileRunning() throws {
        var machine = Self.ready()
        let batch = try machine.claim(workID: 1)
        _ = machine.awaitReply(batchID: batch.batchID, reply: "r", timer: "t", cancelled: false)
        #expect(machine.kill() == nil)
        #expect(machine.isDead)
        #expect(machine.isRunningBatch)
        #expect(throws: ProcessingError.self) { _ = try machine.claim(workID: 1) }
        let exit = machine.exited(Self.crash)
        #expect(exit.batch?.reply == "r")
        #expect(exit.batch?.timer == "t")
        #expect(exit.error.cause == .killed)
        #expect(throws: ProcessCrashError.self) { _ = try machine.claim(workID: 1) }
    }

    @Test("a reply that comes after a kill but before the exit still reaches its batch")
    func replyAfterKill() throws {
        var machine = Self.ready()
        let batch = try machine.claim(workID: 1)
        _ = machine.awaitReply(batchID: batch.batchID, reply: "r", timer: nil, cancelled: false)
        _ = machine.kill()
        #expect(machine.endBatch(batch.batchID)?.reply == "r")
        #expect(machine.exited(Self.crash).batch == nil)
    }

    @Test("a batch that was claimed when the worker was killed fails as it comes to wait")
    func awaitAfterKill() throws {
        var machine = Self.ready()
        let batch = try machine.claim(workID: 1)
        _ = machine.kill()
        guard case .fail(let error, let timer) = machine.awaitReply(batchID: batch.batchID, reply: "r", timer: "t", cancelled: false) else {
            Issue.record("waited on a killed worker"); return
        }
        #expect((error as? ProcessCrashError)?.cause == .killed)
        #expect(timer == "t")
        #expect(!machine.isRunningBatch)
    }

    @Test("a reply for another batch id ends nothing")
    func strayReply() throws {
        var machine = Self.ready()
        let batch = try machine.claim(workID: 1)
        _ = machine.awaitReply(batchID: batch.batchID, reply: "r", timer: nil, cancelled: false)
        #expect(machine.endBatch(batch.batchID + 5) == nil)
        #expect(machine.isRunningBatch)
    }

    @Test("exit waits: registered ones end at the exit, cancelled ones are withdrawn, later ones do not wait")
    func exitWaits() {
        var machine = Self.ready()
        let a = machine.makeExitWaitID(), b = machine.makeExitWaitID(), c = machine.makeExitWaitID()
        let (waitsA, waitsB) = (machine.waitForExit("a", id: a, cancelled: false), machine.waitForExit("b", id: b, cancelled: false))
        let waitsC = machine.waitForExit("c", id: c, cancelled: true)
        #expect(waitsA && waitsB)
        #expect(!waitsC, "a cancelled wait waited")
        #expect(machine.cancelExitWait(b) == "b")
        #expect(machine.cancelExitWait(c) == nil)
        #expect(machine.exited(Self.crash).exitWaiters == ["a"])
        let waitsAfter = machine.waitForExit("d", id: machine.makeExitWaitID(), cancelled: false)
        #expect(!waitsAfter, "a wait after the exit waited")
    }
}
