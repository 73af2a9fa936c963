import Testing
@testable import Processing

/// The pool's checkout as a pure state machine: stand-in workers, waiters as names.
@Suite("Pool checkout: every transition, without processes")
struct PoolCheckoutTests {
    final class Worker {}
    typealias Checkout = PoolCheckout<Worker, String>

    private func worker(_ grant: PoolGrant<Worker>?) -> Worker? {
        if case .worker(let worker)? = grant { return worker }
        return nil
    }

    private func isSpawn(_ grant: PoolGrant<Worker>?) -> Bool {
        if case .spawn? = grant { return true }
        return false
    }

    @Test("places up to the capacity, then a wait; a check-in goes to the waiter, not to the idle list")
    func checkInServesTheWaiter() throws {
        var checkout = Checkout(capacity: 1)
        try checkout.beginMap()
        let step1 = checkout.checkOut(id: 1, waiter: "first")
        #expect(isSpawn(step1))
        let started = Worker()
        let step2 = checkout.spawned(started)
        #expect(!step2)
        // The second slot decides to wait and waits in the same step: no check-in can come between.
        let step3 = checkout.checkOut(id: 2, waiter: "second")
        #expect(step3 == nil)
        let actions = checkout.checkIn(started, dead: false)
        #expect(actions.resume.count == 1)
        #expect(actions.resume.first?.0 == "second")
        #expect(worker(actions.resume.first?.1) === started)
        #expect(actions.kill.isEmpty)
    }

    @Test("an idle worker is handed out again; with no waiter a check-in makes it idle")
    func idleReuse() throws {
        var checkout = Checkout(capacity: 2)
        try checkout.beginMap()
        let step4 = checkout.checkOut(id: 1, waiter: "a")
        #expect(isSpawn(step4))
        let first = Worker()
        _ = checkout.spawned(first)
        let step5 = checkout.checkIn(first, dead: false)
        #expect(step5.resume.isEmpty)
        let step6 = checkout.checkOut(id: 2, waiter: "b")
        #expect(worker(step6) === first)
    }

    @Test("a cancelled waiter leaves, and a later check-in goes to the next one or to the idle list")
    func cancelledWaiter() throws {
        var checkout = Checkout(capacity: 1)
        try checkout.beginMap()
        _ = checkout.checkOut(id: 1, waiter: "holder")
        let held = Worker()
        _ = checkout.spawned(held)
        let step7 = checkout.checkOut(id: 2, waiter: "cancelled")
        #expect(step7 == nil)
        let step8 = checkout.checkOut(id: 3, waiter: "next")
        #expect(step8 == nil)
        let step9 = checkout.cancel(id: 2)
        #expect(step9 == "cancelled")
        let step10 = checkout.cancel(id: 2)
        #expect(step10 == nil)
        let actions = checkout.checkIn(held, dead: false)
        #expect(actions.resume.map(\.0) == ["next"])
    }

    @Test("a dead worker's place, and a failed start's, go to the next waiter as a place to start one")
    func freedPlaces() throws {
        var checkout = Checkout(capacity: 1)
        try checkout.beginMap()
        _ = checkout.checkOut(id: 1, waiter: "a")
        let dying = Worker()
        _ = checkout.spawned(dying)
        _ = checkout.checkOut(id: 2, waiter: "b")
        let afterDeath = checkout.checkIn(dying, dead: true)
        #expect(afterDeath.resume.map(\.0) == ["b"] && isSpawn(afterDeath.resume.first?.1))
        _ = checkout.checkOut(id: 3, waiter: "c")
        let afterFailure = checkout.spawnFailed()
        #expect(afterFailure.resume.map(\.0) == ["c"] && isSpawn(afterFailure.resume.first?.1))
        #expect(checkout.live == 1)
    }

    @Test("close() refuses new maps, serves the running one, and closes when it ends")
    func closeWaitsForRunningMaps() throws {
        var checkout = Checkout(capacity: 1)
        try checkout.beginMap()
        _ = checkout.checkOut(id: 1, waiter: "a")
        let busy = Worker()
        _ = checkout.spawned(busy)
        let step11 = checkout.checkOut(id: 2, waiter: "waiting")
        #expect(step11 == nil)
        let step12 = checkout.close()
        #expect(step12.kill.isEmpty)
        #expect(throws: ProcessingError.self) { try checkout.beginMap() }
        // The running map's waiting slot still gets the worker.
        let step13 = checkout.checkIn(busy, dead: false)
        #expect(step13.resume.map(\.0) == ["waiting"])
        let step14 = checkout.checkIn(busy, dead: false)
        #expect(step14.resume.isEmpty)
        #expect(checkout.phase == .closing)
        let ended = checkout.endMap()
        #expect(checkout.phase == .closed)
        #expect(ended.kill.count == 1 && ended.kill.first === busy)
        let step15 = checkout.checkOut(id: 3, waiter: "late")
        if case .closed? = step15 {} else { Issue.record("a closed pool handed out a worker") }
        checkout.reaped(busy)
        #expect(checkout.isFinished)
    }

    @Test("terminate() kills every worker and answers every waiter with .closed")
    func terminate() throws {
        var checkout = Checkout(capacity: 1)
        try checkout.beginMap()
        _ = checkout.checkOut(id: 1, waiter: "a")
        let busy = Worker()
        _ = checkout.spawned(busy)
        _ = checkout.checkOut(id: 2, waiter: "b")
        let actions = checkout.terminate()
        #expect(actions.kill.count == 1)
        #expect(actions.resume.map(\.0) == ["b"])
        if case .closed? = actions.resume.first?.1 {} else { Issue.record("a waiter was not told the pool closed") }
        let step16 = checkout.checkIn(busy, dead: false)
        #expect(step16.kill.count == 1)
        // A worker started meanwhile is killed as it registers.
        let step17 = checkout.spawned(Worker())
        #expect(step17)
    }
}

@Suite("Pool credits")
struct PoolCreditsTests {
    @Test("a wait for credits ends when its task is cancelled, and a request above the capacity is served")
    func cancellableAndBounded() async throws {
        let credits = Credits(4)
        try await credits.acquire(10)           // clamped to the capacity: does not wait forever
        let waiting = Task { try await credits.acquire(1) }
        try await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        credits.release(4)
        try await credits.acquire(4)
    }

    @Test("a cancelled waiter at the head hands its turn to the waiters behind it that fit")
    func cancelledHeadHandsOn() async throws {
        let credits = Credits(4)
        try await credits.acquire(4)
        let large = Task { try await credits.acquire(4) }
        try await Task.sleep(for: .milliseconds(20))
        let small = Task { try await credits.acquire(1) }
        try await Task.sleep(for: .milliseconds(20))
        credits.release(1)           // one free: the head (4) does not fit, so it waits
        large.cancel()
        await #expect(throws: CancellationError.self) { try await large.value }
        let served = try await outcome(within: .seconds(10)) { try await small.value }
        #expect(served != nil, "the waiter behind a cancelled one stayed asleep with a credit free")
    }
}
