import Foundation
import Testing
@testable import Processing

/// Seed 001's command loop: listen in prerun, act in run, answer in postrun.
struct CommandLoop: Skprocess {
    var command: String?
    var printed = 0
    mutating func prerun() async throws {
        command = try await listen(String.self, timeout: .seconds(30))
    }
    mutating func run() async throws {
        switch command {
        case "stop": stop()
        case "print": printed += 1
        default: throw TestFailure(code: 404)
        }
    }
    mutating func postrun() async throws {
        command = nil
        try await tell("command received")
    }
    func result() async throws -> Int { printed }
}

/// Echoes every Int it hears, doubled; stops on a negative one.
struct Doubler: Skprocess {
    mutating func run() async throws {
        guard let value = try await listen(Int.self) else { return }
        if value < 0 { stop() } else { try await tell(value * 2) }
    }
}

/// Tells an Int, then a String, then waits to be stopped.
struct MixedTeller: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        try await tell(42)
        try await tell("forty-two")
    }
}

/// Never says anything; runs until stopped or killed.
struct Silent: Skprocess {
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(20)) }
}

/// Listens until a stop wakes its listen with nil; reports that it was woken.
struct StopListener: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    var woken = 0
    mutating func run() async throws {
        try await tell("listening")
        while try await listen(Int.self) != nil {}
        woken += 1
    }
    func result() async throws -> Int { woken }
}

/// Tells, then is busy while the parent's stop arrives, and only then listens.
struct LateListener: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    var wokenByStop = false
    mutating func run() async throws {
        try await tell("listening")
        try await Task.sleep(for: .milliseconds(300))
        let began = ContinuousClock.now
        let message = try await listen(String.self, timeout: .seconds(20))
        // Nothing is ever sent: only the stop (or the time-out, 20 s later) ends the wait.
        wokenByStop = message == nil && ContinuousClock.now - began < .seconds(10)
    }
    func result() async throws -> Bool { wokenByStop }
}

@Suite("tell and listen between parent and child", .timeLimit(.minutes(2)))
struct ProcessMessagingTests {
    @Test("seed 001's command loop: ten prints, then a stop")
    func commandLoop() async throws {
        let handle = try await CommandLoop().start()
        for _ in 0..<10 {
            try await handle.tell("print")
            #expect(try await handle.listen(String.self, timeout: .seconds(30)) == "command received")
        }
        try await handle.tell("stop")
        #expect(try await handle.result() == 10)
    }

    @Test("ping-pong of 200 messages keeps order")
    func pingPong() async throws {
        let handle = try await Doubler().start()
        for value in 0..<200 {
            try await handle.tell(value)
            #expect(try await handle.listen(Int.self) == value * 2)
        }
        try await handle.tell(-1)
        #expect(try await handle.wait())
    }

    @Test("a burst of messages sent before any is read all arrive, in order")
    func burst() async throws {
        let handle = try await Doubler().start()
        for value in 0..<500 { try await handle.tell(value) }
        for value in 0..<500 { #expect(try await handle.listen(Int.self) == value * 2) }
        try await handle.tell(-1)
        try await handle.wait()
    }

    @Test("a 4 MiB message crosses intact both ways")
    func largeMessage() async throws {
        let handle = try await LargeEcho().start()
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await handle.tell(payload)
        let echoed = try #require(try await handle.listen([UInt8].self))
        #expect(echoed == payload.reversed())
        _ = try await handle.result()
    }

    @Test("listen(timeout:) returns nil when nothing arrives")
    func listenTimesOut() async throws {
        let handle = try await Silent().start()
        #expect(try await handle.listen(String.self, timeout: .milliseconds(100)) == nil)
        #expect(try await handle.listen(String.self, timeout: .zero) == nil)
        await handle.kill()
        try await handle.wait()
    }

    @Test("a stop wakes a child's listen whether it is polling its socket or asleep")
    func stopWakesListen() async throws {
        // The stop comes at once (the listen is still polling) or later (it sleeps).
        for delay in [0, 0, 0, 50, 200, 1_000, 5_000, 20_000] {
            let handle = try await StopListener().start()
            #expect(try await handle.listen(String.self, timeout: .seconds(10)) == "listening")
            if delay > 0 { try await Task.sleep(for: .microseconds(delay)) }
            await handle.stop()
            #expect(try await handle.result() == 1, "stop after \(delay) µs")
        }
    }

    @Test("a stop that arrives before the child listens still ends its listen (regression: it waited for good)")
    func stopBeforeListen() async throws {
        let handle = try await LateListener().start()
        #expect(try await handle.listen(String.self, timeout: .seconds(10)) == "listening")
        await handle.stop()
        #expect(try await handle.result() == true)
    }

    @Test("a listen time-out shorter than the polling budget still returns nil, and a later message still arrives")
    func shortListenTimeout() async throws {
        let handle = try await Doubler().start()
        for _ in 0..<20 { #expect(try await handle.listen(Int.self, timeout: .microseconds(5)) == nil) }
        try await handle.tell(21)
        #expect(try await handle.listen(Int.self, timeout: .seconds(10)) == 42)
        try await handle.tell(-1)
        try await handle.wait()
    }

    @Test("listen for another type than the one sent is refused, and the message stays queued")
    func listenTypeMismatch() async throws {
        let handle = try await MixedTeller().start()
        _ = try await handle.result()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.listen(String.self) })
        #expect(error.code == .messageTypeMismatch)
        #expect(error.message.contains("Int") && error.message.contains("String"))
        #expect(try await handle.listen(Int.self) == 42)
        #expect(try await handle.listen(String.self) == "forty-two")
        // Nothing left, and the process has ended: a clear error, not a hang.
        let ended = try #require(await expectError(ProcessingError.self) { try await handle.listen(Int.self) })
        #expect(ended.code == .channelClosed)
    }

    @Test("a listen that is waiting when the mismatching message arrives fails, and the message stays")
    func waitingListenMismatch() async throws {
        let handle = try await MixedTeller().start()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.listen([Double].self) })
        #expect(error.code == .messageTypeMismatch)
        #expect(try await handle.listen(Int.self) == 42)
    }

    @Test("tell to a process that has ended fails clearly")
    func tellAfterEnd() async throws {
        let handle = try await Counter().start()
        _ = try await handle.result()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.tell(1) })
        #expect(error.code == .invalidState)
    }

    @Test("a cancelled listen returns CancellationError")
    func cancelledListen() async throws {
        let handle = try await Silent().start()
        let task = Task { try await handle.listen(Int.self) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        await handle.kill()
        try await handle.wait()
    }

    // MARK: Faults: waits that must end, bounds that must hold

    @Test("tell.timeout and stop() return while the child reads nothing, and the stop still reaches it")
    func tellToStoppedChild() async throws {
        let handle = try await StoppablePID().start()
        let pid = try #require(try await handle.listen(Int.self, timeout: .seconds(30)))
        #expect(kill(pid_t(pid), SIGSTOP) == 0)
        defer { kill(pid_t(pid), SIGCONT) }
        // 16 MiB the stopped child does not read: its socket fills and the tell waits.
        let blob = [UInt8](repeating: 7, count: 16 << 20)
        let large = try await outcome { try await handle.tell.timeout(.milliseconds(300))(blob) }
        #expect(large != nil, "tell.timeout did not return while the child was stopped")
        if case .success? = large { Issue.record("16 MiB went into a stopped child's socket") }
        // Behind the part of the large frame that is already out (a frame cannot be cut).
        let small = try await outcome { try await handle.tell.timeout(.milliseconds(200))("hello") }
        #expect(small != nil, "a tell queued behind it did not return")
        if case .failure(let error)? = small { #expect(error is ResultTimeoutError, "\(error)") }
        let stopped = try await outcome { await handle.stop() }
        #expect(stopped != nil, "stop() did not return while the child was stopped")
        kill(pid_t(pid), SIGCONT)
        let report = try await outcome { try await handle.result() }
        #expect(report.flatMap { try? $0.get() } == true, "the stop did not reach the child once it ran again")
        await handle.kill()
    }

    @Test("a parent that does not listen holds a bounded mailbox: the child's tells wait, and none is lost")
    func boundedMailbox() async throws {
        let report = try await MailboxBoundProbe().start().result()
        #expect(report.toldBeforeListening < report.count, "all \(report.count) MiB were taken into the mailbox unasked")
        #expect(report.queuedBytes <= report.capacity + (1 << 20) + 64, "\(report.queuedBytes) bytes queued")
        #expect(report.receivedInOrder == report.count)
        #expect(report.result == report.count)
    }

    @Test("a mailbox whose every message is over its capacity, listened to as they come, never stays paused")
    func pausedAndResumedOften() async throws {
        #expect(try await FlowControlProbe().start().result() == 300)
    }

    @Test("a start state over the size limit is refused before anything spawns")
    func startStateOverTheLimit() async throws {
        #expect(try await StartLimitProbe().start().result() == "messageTooLarge")
    }

    @Test("a message over the size limit is refused before it is sent, both ways, and the channel stays usable")
    func messageOverTheLimit() async throws {
        #expect(try await MessageLimitProbe().start().result() == [
            "refused: messageTooLarge, naming the limit", "then: 42", "the child was refused: messageTooLarge",
        ])
    }

    @Test("a listen's time-out is gone once the listen returns: nothing keeps the mailbox alive")
    func listenTimerReleased() async throws {
        weak var mailbox: Mailbox?
        do {
            let handle = try await Doubler().start()
            mailbox = handle.core.mailbox
            for value in 0..<100 {
                try await handle.tell(value)
                #expect(try await handle.listen(Int.self, timeout: .seconds(3600)) == value * 2)
            }
            try await handle.tell(-1)
            try await handle.wait()
        }
        // The handle's last holders (the child's teardown on the reactor thread) let go just
        // after `wait()`: seconds at most, not the hour of the time-outs.
        for _ in 0..<1_000 where mailbox != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(mailbox == nil, "an answered listen's hour-long time-out still holds its mailbox")
    }

    @Test("a listen for another type does not strand a listen for the type that arrives")
    func listenersOfTwoTypes() async throws {
        let handle = try await TypedEcho().start()
        // Each listen is waiting before the next step (not a fixed sleep: on a loaded machine a
        // task may not have begun by then, and a listen that begins after the Int came is refused).
        let mailbox = handle.core.mailbox
        let forString = Task { try await handle.listen(String.self, timeout: .seconds(20)) }
        for _ in 0..<1_000 where mailbox.waitingListens < 1 { try await Task.sleep(for: .milliseconds(10)) }
        let forInt = Task { try await handle.listen(Int.self, timeout: .seconds(20)) }
        for _ in 0..<1_000 where mailbox.waitingListens < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(mailbox.waitingListens == 2)
        try await handle.tell(7)            // echoed as an Int
        #expect(try await forInt.value == 7)
        try await handle.tell(-1)           // echoed as a String, then it stops
        #expect(try await forString.value == "done")
        try await handle.wait()
    }
}

/// A parent of its own (so that its limit binds no other test): with a 1 MiB message limit,
/// tells a grandchild 2 MiB, then 21; then starts a grandchild that tries to tell 2 MiB back.
struct MessageLimitProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [String] {
        ProcessingLimits.maximumMessageSize = 1 << 20
        var report: [String] = []
        let doubler = try await Doubler().start()
        do {
            try await doubler.tell([UInt8](repeating: 1, count: 2 << 20))
            report.append("sent 2 MiB")
        } catch let error as ProcessingError {
            report.append("refused: \(error.code)" + (error.message.contains("maximumMessageSize") ? ", naming the limit" : ""))
        }
        try await doubler.tell(21)
        report.append("then: \(try await doubler.listen(Int.self, timeout: .seconds(30)) ?? -1)")
        try await doubler.tell(-1)
        _ = try await doubler.wait()
        do {
            _ = try await LargeTeller().start().result()
            report.append("the child sent 2 MiB")
        } catch let error as RunError {
            report.append("the child was refused: \((error.underlying?.value as? ProcessingError)?.code.rawValue ?? "\(error)")")
        }
        return report
    }
}

/// A parent of its own with a mailbox capacity of 1 byte: every message pauses the channel,
/// and the next listen resumes it. Returns how many of 300 arrived.
struct FlowControlProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> Int {
        ProcessingLimits.mailboxCapacity = 1
        let teller = try await KilobyteTeller(count: 300).start()
        var received = 0
        while received < 300, try await teller.listen([UInt8].self, timeout: .seconds(20)) != nil { received += 1 }
        _ = try await teller.wait()
        return received
    }
}

/// Tells `count` messages of 1 KiB.
struct KilobyteTeller: Skprocess {
    var count: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for index in 0..<count { try await tell([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 1024)) }
    }
}

/// A parent of its own with a 64 KiB message limit, starting a process whose state is 100 KB.
struct StartLimitProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> String {
        ProcessingLimits.maximumMessageSize = 64 << 10
        do {
            _ = try await LargeEcho(ballast: [UInt8](repeating: 1, count: 100_000)).start()
            return "started"
        } catch let error as ProcessingError {
            return error.code.rawValue
        }
    }
}

/// Tries to tell 2 MiB.
struct LargeTeller: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { try await tell([UInt8](repeating: 2, count: 2 << 20)) }
}

/// Tells its pid first, then runs until stopped; its result says whether onFinish ran.
struct StoppablePID: Skprocess {
    var finished = false
    mutating func prerun() async throws {
        if currentRun == 0 { try await tell(Int(getpid())) }
    }
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(5)) }
    mutating func onFinish() async throws { finished = true }
    func result() async throws -> Bool { finished }
}

/// A parent of its own, with a 4 MiB mailbox capacity (so that the setting binds no other
/// test): a grandchild tells 40 × 1 MiB while it does not listen; then it listens to all.
struct MailboxBoundProbe: Skprocess {
    struct Report: Codable, Sendable {
        var count = 40
        var capacity = 4 << 20
        var toldBeforeListening = 0
        var queuedBytes = 0
        var receivedInOrder = 0
        var result = 0
    }

    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> Report {
        var report = Report()
        ProcessingLimits.mailboxCapacity = report.capacity
        let told = try await Share(0)
        let handle = try await MegabyteTeller(count: report.count, told: told).start()
        // Until all are told (unbounded), or the count has not moved for half a second (the
        // child waits in tell).
        var stableSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(30)
        while report.toldBeforeListening < report.count, ContinuousClock.now - stableSince < .milliseconds(500),
              ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            let now = try await told.read()
            if now != report.toldBeforeListening || now == 0 { (report.toldBeforeListening, stableSince) = (now, ContinuousClock.now) }
        }
        report.queuedBytes = handle.core.mailbox.queuedBytes
        for index in 0..<report.count {
            guard let message = try await handle.listen([UInt8].self, timeout: .seconds(30)),
                  message.count == 1 << 20, message.first == UInt8(truncatingIfNeeded: index) else { break }
            report.receivedInOrder += 1
        }
        report.result = try await handle.result()
        return report
    }
}

/// Tells `count` messages of 1 MiB, counting each in a share once its tell returned.
struct MegabyteTeller: Skprocess {
    var count: Int
    var told: Share<Int>
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for index in 0..<count {
            try await tell([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 1 << 20))
            try await told.update { $0 += 1 }
        }
    }
    func result() async throws -> Int { try await told.read() }
}

/// Echoes an Int as an Int; a negative one ends it with the String "done".
struct TypedEcho: Skprocess {
    mutating func run() async throws {
        guard let value = try await listen(Int.self) else { return }
        if value < 0 {
            try await tell("done")
            stop()
        } else {
            try await tell(value)
        }
    }
}

/// Receives bytes and sends them back reversed.
struct LargeEcho: Skprocess {
    var ballast: [UInt8] = []
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let bytes = try await listen([UInt8].self)!
        try await tell(Array(bytes.reversed()))
    }
}
