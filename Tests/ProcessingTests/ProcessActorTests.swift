import Distributed
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

// MARK: Actors

struct ActorBox: Codable, Equatable, Sendable {
    var name: String
    var values: [Int]
}

/// A `Codable` error: it crosses as itself.
struct ActorParseFailure: Error, Codable, Equatable {
    var line: Int
}

/// Not `Codable`: it crosses by name and description.
struct ActorOpaqueFailure: Error, CustomStringConvertible {
    var description: String { "opaque failure" }
}

/// The test's actor process: arithmetic, generic and `Void` funcs, errors of each kind, slow
/// calls that notice their cancellation, a crash, calls back to the parent and messages out.
distributed actor Calculator: ProcessActor {
    var total = 0
    var cancelledCalls = 0
    var sentOut = 0
    /// Calls of `sleep` that have begun.
    var sleepers = 0

    distributed func add(_ n: Int) -> Int {
        total += n
        return total
    }

    distributed func square(_ n: Int) -> Int { n * n }

    distributed func echo<T: Codable & Sendable>(_ value: T) -> T { value }

    distributed func reset() { total = 0 }

    distributed func fail(line: Int) throws -> Int { throw ActorParseFailure(line: line) }

    distributed func failOpaque() throws -> Int { throw ActorOpaqueFailure() }

    distributed func failVoid() throws { throw ActorParseFailure(line: 7) }

    distributed func processID() -> Int32 { getpid() }

    /// Sleeps; counts the calls that were cancelled while they slept.
    distributed func sleep(seconds: Double) async throws -> Bool {
        sleepers += 1
        do {
            try await Task.sleep(for: .seconds(seconds))
            return true
        } catch {
            cancelledCalls += 1
            throw error
        }
    }

    distributed func cancelled() -> Int { cancelledCalls }

    distributed func sleeping() -> Int { sleepers }

    distributed func crash() { Glibc.kill(getpid(), SIGKILL) }

    /// Calls an actor of the parent back.
    distributed func report(_ n: Int, to collector: ActorCollector) async throws -> Int {
        try await collector.collect(n * 10)
    }

    /// Sends `count` ints out to the parent.
    distributed func emit(_ count: Int) async throws {
        for i in 0..<count {
            try await actorSystem.sendOut(i)
            sentOut += 1
        }
    }

    distributed func emitted() -> Int { sentOut }

    /// Sends one blob of each size out.
    distributed func emitSizes(_ sizes: [Int]) async throws {
        for size in sizes { try await actorSystem.sendOut([UInt8](repeating: 1, count: size)) }
    }

    /// Sends `count` blobs of `size` bytes out, each filled with its index.
    distributed func emitBlobs(_ count: Int, size: Int) async throws {
        for i in 0..<count { try await actorSystem.sendOut([UInt8](repeating: UInt8(i % 256), count: size)) }
    }
}

/// Lives in the parent; the child calls it.
distributed actor ActorCollector {
    typealias ActorSystem = ProcessActorSystem
    var items: [Int] = []

    distributed func collect(_ n: Int) -> Int {
        items.append(n)
        return items.count
    }

    distributed func all() -> [Int] { items }
}

/// Made from parameters; its hooks send messages out.
distributed actor ActorWithHooks: ProcessActorWithParameters {
    struct Parameters: Codable, Sendable {
        var base: Int
        var failsAtStartup = false
    }

    let base: Int
    let failsAtStartup: Bool

    init(actorSystem: ProcessActorSystem, parameters: Parameters) {
        self.actorSystem = actorSystem
        base = parameters.base
        failsAtStartup = parameters.failsAtStartup
    }

    func startup() async throws {
        if failsAtStartup { throw ActorParseFailure(line: base) }
        try await actorSystem.sendOut("startup")
    }

    func shutdown() async throws {
        try await actorSystem.sendOut("shutdown")
    }

    var slowCalls = 0

    distributed func plus(_ n: Int) -> Int { base + n }

    distributed func slowPlus(_ n: Int) async throws -> Int {
        slowCalls += 1
        try await Task.sleep(for: .milliseconds(300))
        return base + n
    }

    distributed func slowCallsBegun() -> Int { slowCalls }
}

// MARK: Tests

@Suite("Distributed actors in child processes", .timeLimit(.minutes(2)))
struct ProcessActorTests {
    @Test("calls run in the child and return; generic and Void funcs cross")
    func calls() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        #expect(try await calculator.add(2) == 2)
        #expect(try await calculator.add(3) == 5)
        #expect(try await calculator.square(12) == 144)
        let childPID = try await calculator.processID()
        #expect(childPID != getpid())
        #expect(system.pid(of: calculator) == childPID)
        #expect(try await calculator.echo("héllo") == "héllo")
        let box = ActorBox(name: "b", values: [1, 2, 3])
        #expect(try await calculator.echo(box) == box)
        #expect(try await calculator.echo([box, box]) == [box, box])
        try await calculator.reset()
        #expect(try await calculator.add(1) == 1)
        #expect(try await system.stop(calculator))
    }

    @Test("a Codable error crosses as itself, others by name and description; Void funcs' errors surface")
    func errors() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        await #expect(throws: ActorParseFailure(line: 3)) { try await calculator.fail(line: 3) }
        await #expect(throws: ActorParseFailure(line: 7)) { try await calculator.failVoid() }
        do {
            _ = try await calculator.failOpaque()
            Issue.record("failOpaque returned")
        } catch let error as RemoteError {
            #expect(error.typeName.hasSuffix("ActorOpaqueFailure"))
            #expect(error.errorDescription == "opaque failure")
        }
        // The actor is still there after its errors.
        #expect(try await calculator.add(4) == 4)
        try await system.stop(calculator)
    }

    @Test("16 concurrent callers on one actor: every call counted once")
    func concurrentCallers() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let results = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<16 {
                group.addTask { var seen: [Int] = []; for _ in 0..<100 { seen.append(try await calculator.add(1)) }; return seen }
            }
            return try await group.reduce(into: [Int]()) { $0 += $1 }
        }
        // Each call saw its own total: the 1,600 totals are 1...1600, once each.
        #expect(results.sorted() == Array(1...1600))
        try await system.stop(calculator)
    }

    @Test("the child killed with calls pending: they all fail with its crash, and later calls too")
    func killedWithPendingCalls() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let pid = try #require(system.pid(of: calculator))
        let pending = (0..<5).map { _ in Task { try await calculator.sleep(seconds: 60) } }
        // Every call runs in the child before it dies.
        while try await calculator.sleeping() < 5 { try await Task.sleep(for: .milliseconds(10)) }
        Glibc.kill(pid, SIGKILL)
        for call in pending {
            do {
                _ = try await call.value
                Issue.record("a pending call returned")
            } catch let error as ProcessCrashError {
                #expect(error.signal == SIGKILL)
            }
        }
        await #expect(throws: ProcessCrashError.self) { try await calculator.add(1) }
        await #expect(throws: ProcessCrashError.self) { try await system.waitForEnd(calculator) }
    }

    @Test("a crash inside a call fails that call and the others with the crash")
    func crashInsideACall() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let slow = Task { try await calculator.sleep(seconds: 60) }
        while try await calculator.sleeping() < 1 { try await Task.sleep(for: .milliseconds(10)) }
        await #expect(throws: ProcessCrashError.self) { try await calculator.crash() }
        await #expect(throws: ProcessCrashError.self) { try await slow.value }
    }

    @Test("a call time-out fails the call and cancels it in the child")
    func callTimeout() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        do {
            _ = try await ProcessActorSystem.withCallTimeout(.milliseconds(200)) {
                try await calculator.sleep(seconds: 60)
            }
            Issue.record("the call returned")
        } catch let error as ProcessActorError {
            #expect(error.code == .callTimedOut)
        }
        while try await calculator.cancelled() == 0 { try await Task.sleep(for: .milliseconds(10)) }
        // The system's own time-out works the same way.
        let limited = ProcessActorSystem(callTimeout: .milliseconds(200))
        let other = try await limited.spawn(Calculator.self)
        await #expect(throws: ProcessActorError.self) { try await other.sleep(seconds: 60) }
        // Still there (with a time-out no loaded machine reaches: 200 ms is for the sleep only).
        let after = try await ProcessActorSystem.withCallTimeout(.seconds(60)) { try await other.add(1) }
        #expect(after == 1)
        try await system.stop(calculator)
        try await limited.stop(other)
    }

    @Test("cancelling the caller's task cancels the call in the child")
    func cancellation() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let call = Task { try await calculator.sleep(seconds: 60) }
        while try await calculator.sleeping() < 1 { try await Task.sleep(for: .milliseconds(10)) }
        call.cancel()
        await #expect(throws: CancellationError.self) { try await call.value }
        while try await calculator.cancelled() == 0 { try await Task.sleep(for: .milliseconds(10)) }
        try await system.stop(calculator)
    }

    @Test("the child calls an actor of the parent")
    func childCallsParent() async throws {
        let system = ProcessActorSystem()
        let collector = ActorCollector(actorSystem: system)
        let calculator = try await system.spawn(Calculator.self)
        #expect(try await calculator.report(1, to: collector) == 1)
        #expect(try await calculator.report(2, to: collector) == 2)
        #expect(try await collector.all() == [10, 20])
        try await system.stop(calculator)
    }

    @Test("messages sent out arrive in order, and the child waits while the parent holds 256")
    func messagesOut() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let messages = try system.messages(from: calculator, as: Int.self)
        let emitting = Task { try await calculator.emit(1000) }
        // Unread, the child can send no more than the window.
        while try await calculator.emitted() < 256 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await calculator.emitted() == 256)
        var received: [Int] = []
        for try await message in messages {
            received.append(message)
            if received.count == 1000 { break }
        }
        #expect(received == Array(0..<1000))
        try await emitting.value

        try await system.stop(calculator)
    }

    @Test("large messages out: the child waits on bytes of credit too, and every one arrives whole")
    func largeMessagesOut() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self)
        let messages = try system.messages(from: calculator, as: [UInt8].self)
        let emitting = Task { try await calculator.emitBlobs(10, size: 2 << 20) }   // 20 MiB: over the 16 MiB window
        var index = 0
        for try await blob in messages {
            #expect(blob.count == 2 << 20 && blob.first == UInt8(index) && blob.last == UInt8(index))
            index += 1
            if index == 10 { break }
        }
        try await emitting.value
        // 7 MiB read (under half the window: no grant yet), then 17 MiB, which waits for credit
        // until the reader grants what it read.
        let sizes = Task { try await calculator.emitSizes([7 << 20, 17 << 20, 1]) }
        var seen: [Int] = []
        for try await blob in messages {
            seen.append(blob.count)
            if seen.count == 3 { break }
        }
        #expect(seen == [7 << 20, 17 << 20, 1])
        try await sizes.value
        try await system.stop(calculator)
    }

    @Test("parameters, startup and shutdown hooks; stop lets pending calls finish; the stopped actor is gone")
    func lifecycle() async throws {
        let system = ProcessActorSystem()
        let actor = try await system.spawn(ActorWithHooks.self, parameters: .init(base: 100))
        let messages = try system.messages(from: actor, as: String.self)
        #expect(try await actor.plus(1) == 101)
        let slow = Task { try await actor.slowPlus(2) }
        // The call runs in the child before the stop is asked for.
        while try await actor.slowCallsBegun() < 1 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(try await system.stop(actor))
        #expect(try await slow.value == 102)
        var said: [String] = []
        for try await message in messages { said.append(message) }
        #expect(said == ["startup", "shutdown"])
        do {
            _ = try await actor.plus(1)
            Issue.record("a stopped actor answered")
        } catch let error as ProcessActorError {
            #expect(error.code == .processEnded)
        }
    }

    @Test("an ended actor process's record and connection are let go; calls to it still say how it ended")
    func endedRecordsGo() async throws {
        let system = ProcessActorSystem()
        for _ in 0..<3 {
            let calculator = try await system.spawn(Calculator.self)
            try await system.stop(calculator)
        }
        let crashed = try await system.spawn(Calculator.self)
        try system.kill(crashed)
        await #expect(throws: ProcessCrashError.self) { try await system.waitForEnd(crashed) }
        while system.heldRecords > 0 { try await Task.sleep(for: .milliseconds(10)) }
        await #expect(throws: ProcessCrashError.self) { try await crashed.add(1) }
        await #expect(throws: ProcessCrashError.self) { try await system.stop(crashed) }
        #expect(!system.isAlive(crashed) && system.pid(of: crashed) == nil)
    }

    @Test("what startup throws fails the spawn")
    func startupFails() async throws {
        let system = ProcessActorSystem()
        await #expect(throws: ActorParseFailure(line: 9)) {
            _ = try await system.spawn(ActorWithHooks.self, parameters: .init(base: 9, failsAtStartup: true))
        }
    }

    @Test("shutdown stops every actor process of the system")
    func systemShutdown() async throws {
        let system = ProcessActorSystem()
        let first = try await system.spawn(Calculator.self)
        let second = try await system.spawn(Calculator.self, name: "Second")
        await system.shutdown()
        #expect(!system.isAlive(first))
        #expect(!system.isAlive(second))
        await #expect(throws: ProcessActorError.self) { try await second.add(1) }
    }
}

// MARK: The connection's state machine

@Suite("An actor connection's state machine")
struct ActorConnectionStateTests {
    typealias State = ActorConnectionState<Int, String, String, String, String, String>

    @Test("a reply that comes before its caller waits is kept; one for a call given up on is dropped")
    func calls() throws {
        var state = State(messageWindow: 4)
        let id = try state.beginCall().get()
        let early = state.replied(id, 7)
        #expect(early == nil)
        let kept = try state.wait(for: id, "caller")?.get()
        #expect(kept == 7)
        let other = try state.beginCall().get()
        let waits = state.wait(for: other, "caller")
        #expect(waits == nil)
        let withdrawn = state.withdraw(other, CancellationError())
        #expect(withdrawn == "caller")
        let late = state.replied(other, 1)
        #expect(late == nil)
        #expect(state.callsInFlight == 0)
    }

    @Test("one message reader at a time; a sender past its credit is refused; reading grants credit")
    func messages() {
        var state = State(messageWindow: 4)
        if case .wait = state.nextMessage(1, "reader") {} else { Issue.record("the first reader did not wait") }
        if case .busy = state.nextMessage(2, "second") {} else { Issue.record("a second reader was not refused") }
        #expect(state.withdrawMessageWaiter(2) == nil, "the second reader's cancellation withdrew the first")
        #expect(state.withdrawMessageWaiter(1) == "reader")
        var fresh = State(messageWindow: 4)
        var accepted = 0
        for _ in 0..<5 where fresh.messageArrived([1]).accepted { accepted += 1 }
        #expect(accepted == 4)
        var granted = State.Grant(count: 0, bytes: 0)
        for _ in 0..<4 {
            if case .message(_, let grant?) = fresh.nextMessage(3, "reader") {
                granted.count += grant.count
                granted.bytes += grant.bytes
            }
        }
        #expect(granted == State.Grant(count: 4, bytes: 4))
    }

    @Test("message credit counts bytes too: a sender waits, and a reader refuses a sender that does not")
    func messageBytes() throws {
        var sender = State(messageWindow: 100, messageByteWindow: 10)
        let big = try sender.takeCredit(1, bytes: 30, "big").get()
        #expect(big, "one message over the window goes when nothing is outstanding")
        let next = try sender.takeCredit(2, bytes: 1, "next").get()
        #expect(!next, "the next waits for credit")
        let resumed = sender.granted(State.Grant(count: 1, bytes: 30))
        #expect(resumed == ["next"])
        var reader = State(messageWindow: 100, messageByteWindow: 10)
        let first = reader.messageArrived([UInt8](repeating: 0, count: 30)).accepted
        let second = reader.messageArrived([0]).accepted
        #expect(first && !second)
    }

    @Test("a sender waiting for credit that half a window would not bring asks for it, and gets what was read")
    func creditWanted() throws {
        var sender = State(messageWindow: 100, messageByteWindow: 16)
        var reader = State(messageWindow: 100, messageByteWindow: 16)
        let small = try sender.takeCredit(1, bytes: 7, "small").get()
        #expect(small)
        #expect(reader.messageArrived([UInt8](repeating: 0, count: 7)).accepted)
        guard case .message(_, let grant) = reader.nextMessage(1, "reader") else {
            Issue.record("no message")
            return
        }
        #expect(grant == nil, "7 of 16 bytes read: not yet half a window")
        let large = try sender.takeCredit(2, bytes: 10, "large").get()
        #expect(!large, "7 + 10 is over the window")
        let wanted = reader.senderWantsCredit()
        #expect(wanted == State.Grant(count: 1, bytes: 7))
        #expect(sender.granted(wanted!) == ["large"])
    }

    @Test("calls past the running limit wait their turn; one given up on before it never runs")
    func queuedCalls() {
        var state = State(messageWindow: 4)
        for id in 0..<UInt64(State.runningLimit) {
            let admitted = state.admit(id, later: "call")
            #expect(admitted == .admitted)
        }
        let waits = state.admit(5000, later: "queued")
        let givenUp = state.admit(5001, later: "given up")
        let third = state.admit(5002, later: "third")
        #expect(waits == .queued && givenUp == .queued && third == .queued)
        #expect(state.cancelRunning(5001) == nil)
        let afterFirst = state.finished(0)
        #expect(afterFirst.next?.call == "queued" && afterFirst.drained == nil)
        let afterSecond = state.finished(1)
        #expect(afterSecond.next?.call == "third")
    }

    @Test("a duplicate call ID is refused; a task attached after the end is cancelled")
    func running() {
        var state = State(messageWindow: 4)
        let first = state.admit(1, later: "call")
        let again = state.admit(1, later: "call")
        #expect(first == .admitted && again == .duplicate)
        let ended = state.end(CancellationError())
        #expect(ended != nil)
        let cancelNow = state.attach(1, "task")
        #expect(cancelNow)
        let afterEnd = state.admit(2, later: "call")
        #expect(afterEnd == .refused)
        let waits = state.waitUntilDrained("drain")
        #expect(!waits)
    }
}

// MARK: Leftovers

/// Acts as the main process for one scenario of actors, events and groups, twice, and says
/// whether the second run left a child, a zombie or a descriptor behind.
struct ActorLeftoverProbe: Skprocess {
    enum Scenario: String, Codable, CaseIterable { case stop, crash, dropped, startupFails, timeout, group, events }
    var scenario: Scenario
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    private func runScenario() async throws -> String {
        switch scenario {
        case .stop:
            let system = ProcessActorSystem()
            let calculator = try await system.spawn(Calculator.self)
            _ = try await calculator.add(1)
            let messages = try system.messages(from: calculator, as: Int.self)
            try await calculator.emit(3)
            try await system.stop(calculator)
            var count = 0
            for try await _ in messages { count += 1 }
            return "stopped \(count)"
        case .crash:
            let system = ProcessActorSystem()
            let calculator = try await system.spawn(Calculator.self)
            let pending = Task { try await calculator.sleep(seconds: 60) }
            _ = try await calculator.add(0)
            try system.kill(calculator)
            return (try? await pending.value) == nil ? "crashed" : "returned"
        case .dropped:
            // The system and its references dropped without a stop: the process goes with them.
            var system: ProcessActorSystem? = ProcessActorSystem()
            var calculator: Calculator? = try await system!.spawn(Calculator.self)
            _ = try await calculator!.add(1)
            calculator = nil
            system = nil
            return "dropped"
        case .startupFails:
            let system = ProcessActorSystem()
            do {
                _ = try await system.spawn(ActorWithHooks.self, parameters: .init(base: 1, failsAtStartup: true))
                return "spawned"
            } catch {
                return "refused"
            }
        case .timeout:
            let system = ProcessActorSystem(callTimeout: .milliseconds(50))
            let calculator = try await system.spawn(Calculator.self)
            let outcome = (try? await calculator.sleep(seconds: 60)) == nil ? "timed out" : "returned"
            try await system.stop(calculator)
            return outcome
        case .group:
            try await ProcessGroup.run(handlesSignals: false) { group in
                let system = group.add(ProcessActorSystem())
                let calculator = try await system.spawn(Calculator.self)
                _ = try await calculator.add(1)
                let pool = group.add(Pool(workers: 1))
                _ = try await pool.map([1, 2], ActorLeftoverDouble())
            }
            return "group ended"
        case .events:
            let events = try EventGroup(count: 4)
            let system = ProcessActorSystem()
            let worker = try await system.spawn(EventWorker.self, parameters: .init(events: events))
            let index = try events.reserve()
            try await worker.signal(index, after: 1)
            let set = try await events.wait(index, setBy: worker)
            try await system.stop(worker)
            return set ? "set" : "not set"
        }
    }

    func result() async throws -> RelayLeftoverProbe.Report {
        try await RelayLeftoverProbe.leftovers { try await runScenario() }
    }
}

struct ActorLeftoverDouble: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int { x * 2 }
}

@Suite("Actors, events and groups leave nothing behind", .timeLimit(.minutes(2)))
struct ProcessActorLeftoverTests {
    @Test("no child, zombie or descriptor is left after a stop, a crash, a dropped system, a failed spawn, a time-out, a group and events",
          arguments: ActorLeftoverProbe.Scenario.allCases)
    func nothingLeft(scenario: ActorLeftoverProbe.Scenario) async throws {
        let report = try await ActorLeftoverProbe(scenario: scenario).start().result()
        let expected: [ActorLeftoverProbe.Scenario: String] = [
            .stop: "stopped 3", .crash: "crashed", .dropped: "dropped", .startupFails: "refused",
            .timeout: "timed out", .group: "group ended", .events: "set",
        ]
        #expect(report.outcome == expected[scenario])
        #expect(report.children.isEmpty, "children left: \(report.children)")
        #expect(report.descriptorsAfter == report.descriptorsBefore)
    }
}
