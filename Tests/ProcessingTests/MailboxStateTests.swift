import Testing
@testable import Processing

/// `MailboxState`'s transitions, without processes: waiters are plain strings.
@Suite("Mailbox state machine")
struct MailboxStateTests {
    typealias Machine = MailboxState<String>
    static let capacity = 1_000

    /// A message of the type named `type`, its body `bytes` zeros.
    static func message(_ type: String, bytes: Int = 10) -> Message {
        var payload: [UInt8] = []
        BinaryFormat.appendVarint(UInt64(type.utf8.count), to: &payload)
        payload += Array(type.utf8) + [UInt8](repeating: 0, count: bytes)
        return try! Message(payload: payload)
    }

    /// Registers a listen for `type` that must wait; records if it did not.
    static func wait(_ machine: inout Machine, for type: String, as waiter: String, cancelled: Bool = false) -> UInt64 {
        let id = machine.makeListenID()
        let found = machine.register(id: id, typeName: type, cancelled: cancelled, capacity: capacity) { waiter }
        #expect(found == nil, "\(waiter) did not wait")
        return id
    }

    @Test("a message with no listen is queued; a listen of its type takes it, one of another type fails and leaves it")
    func queueThenListen() {
        var machine = Machine()
        guard case (.queued(let failing), nil) = machine.deliver(Self.message("A"), capacity: Self.capacity) else {
            Issue.record("not queued"); return
        }
        #expect(failing.isEmpty)
        guard case (.mismatch(let other), _)? = machine.find("B", capacity: Self.capacity) else { Issue.record("no mismatch"); return }
        #expect(other.typeName == "A")
        #expect(machine.queuedBytes == 11)
        guard case (.message(let taken), _)? = machine.find("A", capacity: Self.capacity) else { Issue.record("not taken"); return }
        #expect(taken.typeName == "A")
        #expect(machine.queuedBytes == 0)
        #expect(machine.find("A", capacity: Self.capacity) == nil)
    }

    @Test("a message goes to the first listen waiting for its type, not to one for another type")
    func handedByType() {
        var machine = Machine()
        _ = Self.wait(&machine, for: "A", as: "a1")
        _ = Self.wait(&machine, for: "B", as: "b1")
        _ = Self.wait(&machine, for: "B", as: "b2")
        guard case (.handed(let listen), nil) = machine.deliver(Self.message("B"), capacity: Self.capacity) else {
            Issue.record("not handed"); return
        }
        #expect(listen.waiter == "b1")
        #expect(machine.waitingCount == 2)
        #expect(machine.queuedBytes == 0)
    }

    @Test("a message queued while only listens for other types wait fails those listens")
    func queuedFailsOthers() {
        var machine = Machine()
        _ = Self.wait(&machine, for: "A", as: "a1")
        _ = Self.wait(&machine, for: "A", as: "a2")
        guard case (.queued(let failing), _) = machine.deliver(Self.message("C"), capacity: Self.capacity) else {
            Issue.record("not queued"); return
        }
        #expect(failing.map(\.waiter) == ["a1", "a2"])
        #expect(machine.waitingCount == 0)
    }

    @Test("a listen that finds a message of another type queued fails at once instead of waiting")
    func registerFindsMismatch() {
        var machine = Machine()
        _ = machine.deliver(Self.message("C"), capacity: Self.capacity)
        let found = machine.register(id: machine.makeListenID(), typeName: "A", cancelled: false, capacity: Self.capacity) { "a" }
        guard case (.mismatch(let message), _)? = found else { Issue.record("did not fail"); return }
        #expect(message.typeName == "C")
        #expect(machine.waitingCount == 0)
        #expect(machine.queuedBytes == 11, "the mismatch consumed the message")
    }

    @Test("cancelled before it registers: the listen fails at once and never waits")
    func cancelBeforeRegister() {
        var machine = Machine()
        let id = machine.makeListenID()
        #expect(machine.withdraw(id) == nil)  // the cancel handler ran first: nothing to withdraw
        var made = false
        let found = machine.register(id: id, typeName: "A", cancelled: true, capacity: Self.capacity) { made = true; return "a" }
        guard case (.cancelled, nil)? = found else { Issue.record("did not fail"); return }
        #expect(!made, "a waiter was made for a cancelled listen")
        #expect(machine.waitingCount == 0)
    }

    @Test("cancelled or timed out while waiting: withdrawn once, and a later message is queued, not handed to it")
    func withdrawWhileWaiting() {
        var machine = Machine()
        let id = Self.wait(&machine, for: "A", as: "a")
        #expect(machine.withdraw(id)?.waiter == "a")
        #expect(machine.withdraw(id) == nil, "withdrawn twice (a time-out firing after a cancel)")
        guard case (.queued, _) = machine.deliver(Self.message("A"), capacity: Self.capacity) else {
            Issue.record("handed to a withdrawn listen"); return
        }
    }

    @Test("a time-out that fires after the message came finds nothing to withdraw")
    func lateTimeout() {
        var machine = Machine()
        let id = Self.wait(&machine, for: "A", as: "a")
        guard case (.handed, _) = machine.deliver(Self.message("A"), capacity: Self.capacity) else { Issue.record("not handed"); return }
        #expect(machine.withdraw(id) == nil)
    }

    @Test("a stop wakes the waiting listens and every later one that finds nothing queued; queued messages come first")
    func stopIsSticky() {
        var machine = Machine()
        _ = Self.wait(&machine, for: "A", as: "a1")
        #expect(machine.stop().map(\.waiter) == ["a1"])
        #expect(machine.isStopped)
        // The stop came before this listen began (the lost-stop bug): it must not wait.
        let late = machine.register(id: machine.makeListenID(), typeName: "A", cancelled: false, capacity: Self.capacity) { "a2" }
        guard case (.stopped, _)? = late else { Issue.record("a listen after the stop waits"); return }
        _ = machine.deliver(Self.message("A"), capacity: Self.capacity)
        guard case (.message, _)? = machine.find("A", capacity: Self.capacity) else { Issue.record("the queued message was lost"); return }
        guard case (.stopped, _)? = machine.find("A", capacity: Self.capacity) else { Issue.record("not stopped"); return }
    }

    @Test("a close fails the waiting listens and later ones on an empty queue; the first error is kept")
    func closeIsSticky() {
        var machine = Machine()
        _ = Self.wait(&machine, for: "A", as: "a1")
        _ = Self.wait(&machine, for: "B", as: "b1")
        let first = ProcessingError(.channelClosed, "first")
        #expect(machine.close(first).failing.map(\.waiter) == ["a1", "b1"])
        _ = machine.close(ProcessingError(.channelClosed, "second"))
        guard case (.closed(let error), _)? = machine.find("A", capacity: Self.capacity) else { Issue.record("not closed"); return }
        #expect(error.message == "first")
    }

    @Test("flow control: past the capacity the channel is paused once, and resumed once half is taken")
    func flowControl() {
        var machine = Machine()
        #expect(machine.attach(capacity: Self.capacity) == nil)
        var pauses = 0
        for _ in 0..<15 {  // 15 × 101 bytes: past 1,000 at the tenth
            if case (_, .pause?) = machine.deliver(Self.message("A", bytes: 100), capacity: Self.capacity) { pauses += 1 }
        }
        #expect(pauses == 1)
        #expect(machine.isPaused)
        var resumes = 0
        var taken = 0
        while case (.message, let flow)? = machine.find("A", capacity: Self.capacity) {
            taken += 1
            if flow == .resume { resumes += 1; #expect(machine.queuedBytes <= Self.capacity / 2) }
        }
        #expect(taken == 15 && resumes == 1 && !machine.isPaused)
    }

    @Test("attached to a new channel while full, it pauses that one; after a close it resumes nothing")
    func reattachAndClose() {
        var machine = Machine()
        for _ in 0..<12 { _ = machine.deliver(Self.message("A", bytes: 100), capacity: Self.capacity) }
        #expect(machine.attach(capacity: Self.capacity) == .pause)
        _ = machine.close(ProcessingError(.channelClosed, "gone"))
        var flows: [Machine.FlowChange] = []
        while case (.message, let flow)? = machine.find("A", capacity: Self.capacity) { if let flow { flows.append(flow) } }
        #expect(flows.isEmpty, "a closed mailbox resumed a channel it no longer has")
    }

    @Test("messages dropped for a handle no one listens on: counted, the reason given once")
    func drops() {
        var machine = Machine()
        machine.dropMessages(because: "pooled")
        guard case (.dropped(let reason), _) = machine.deliver(Self.message("A"), capacity: Self.capacity) else { Issue.record("kept"); return }
        #expect(reason == "pooled")
        guard case (.dropped(let again), _) = machine.deliver(Self.message("A"), capacity: Self.capacity) else { Issue.record("kept"); return }
        #expect(again == nil)
        #expect(machine.dropped == 2 && machine.queuedBytes == 0)
    }
}
