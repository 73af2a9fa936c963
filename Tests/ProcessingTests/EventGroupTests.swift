import Distributed
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// An actor process that sets events of a group it was made with, and waits for the
/// parent's.
distributed actor EventWorker: ProcessActorWithParameters {
    struct Parameters: Codable, Sendable {
        var events: EventGroup
    }

    let events: EventGroup

    init(actorSystem: ProcessActorSystem, parameters: Parameters) {
        self.actorSystem = actorSystem
        events = parameters.events
    }

    /// Sets event `index` after `delay` ms, without holding the call.
    distributed func signal(_ index: Int, after delay: Int) {
        let events = events
        Task {
            try await Task.sleep(for: .milliseconds(delay))
            try events.set(index)
        }
    }

    /// Waits until the parent sets event `index`.
    distributed func waitForParent(_ index: Int) async throws -> Bool {
        try await events.wait(index, setBy: getppid())
    }

    /// Reserves an event here (the reservation is shared with the parent).
    distributed func reserveHere() throws -> Int { try events.reserve() }

    /// Never sets anything; dies when told.
    distributed func die() { Glibc.kill(getpid(), SIGKILL) }
}

/// A process with the group in its state: sets `index` and exits.
struct EventSetterProcess: Skprocess {
    var events: EventGroup
    var index: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { try events.set(index) }
}

@Suite("Events across processes", .timeLimit(.minutes(2)))
struct EventGroupTests {
    @Test("reserve and release by index; exhaustion is an ordinary error")
    func reservation() throws {
        let events = try EventGroup(count: 3)
        let taken = try (0..<3).map { _ in try events.reserve() }
        #expect(Set(taken) == [0, 1, 2])
        #expect(throws: EventGroupError.self) { try events.reserve() }
        events.release(1)
        #expect(!events.isReserved(1))
        #expect(try events.reserve() == 1)
        #expect(throws: EventGroupError.self) { try events.set(3) }
        #expect(throws: EventGroupError.self) { try EventGroup(count: 0) }
    }

    @Test("set, clear and wait in one process; a wait times out, and cancellation ends it")
    func local() async throws {
        let events = try EventGroup(count: 2)
        #expect(!events.isSet(0))
        try events.set(0)
        #expect(events.isSet(0))
        #expect(try await events.wait(0))
        try events.clear(0)
        #expect(try await events.wait(0, timeout: .milliseconds(50)) == false)
        let waiter = Task { try await events.wait(1) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        let second = Task { try await events.wait(1) }
        try events.set(1)
        #expect(try await second.value)
    }

    @Test("a child sets an event the parent waits for, and the parent one the child waits for")
    func bothWays() async throws {
        let events = try EventGroup(count: 4)
        let system = ProcessActorSystem()
        let worker = try await system.spawn(EventWorker.self, parameters: .init(events: events))
        let pid = try #require(system.pid(of: worker))
        // Child → parent.
        let index = try events.reserve()
        try await worker.signal(index, after: 50)
        #expect(try await events.wait(index, setBy: pid))
        events.release(index)
        // Parent → child.
        let other = try events.reserve()
        let waiting = Task { try await worker.waitForParent(other) }
        try await Task.sleep(for: .milliseconds(50))
        try events.set(other)
        #expect(try await waiting.value)
        events.release(other)
        // Reservations are shared: what the child reserved the parent cannot.
        let childs = try await worker.reserveHere()
        #expect(events.isReserved(childs))
        // SyncIndex: reserve, the child sets it, wait, released.
        let reservedBefore = (0..<4).filter(events.isReserved)
        try await events.withSyncIndex(setBy: pid) { index in try await worker.signal(index, after: 10) }
        #expect((0..<4).filter(events.isReserved) == reservedBefore)
        // A process with the group in its state.
        let last = try events.reserve()
        try await EventSetterProcess(events: events, index: last).start().wait()
        #expect(events.isSet(last))
        try await system.stop(worker)
    }

    @Test("a waiter whose setter died gets an error, not a hang")
    func deadSetter() async throws {
        let events = try EventGroup(count: 2)
        let system = ProcessActorSystem()
        let worker = try await system.spawn(EventWorker.self, parameters: .init(events: events))
        let pid = try #require(system.pid(of: worker))
        let index = try events.reserve()
        let waiting = Task { try await events.wait(index, setBy: pid) }
        try await Task.sleep(for: .milliseconds(50))
        try? await worker.die()
        do {
            _ = try await waiting.value
            Issue.record("the wait returned")
        } catch let error as EventGroupError {
            #expect(error.code == .setterEnded)
        }
        // A setter that is gone already.
        await #expect(throws: EventGroupError.self) { try await events.wait(index, setBy: pid) }
        let sync = try SyncIndex(events)
        await #expect(throws: EventGroupError.self) { try await sync.wait(setBy: pid) }
        #expect(!events.isReserved(sync.index))
    }
}
