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
}

/// Receives bytes and sends them back reversed.
struct LargeEcho: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let bytes = try await listen([UInt8].self)!
        try await tell(Array(bytes.reversed()))
    }
}
