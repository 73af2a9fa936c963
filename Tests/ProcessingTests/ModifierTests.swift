import Foundation
import Synchronization
import Testing
@testable import Processing

/// Runs `body` on a new thread (not the cooperative pool) and returns what it returns.
func onPlainThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Tells a greeting (after a "go" message, if asked to wait), then runs until stopped.
struct Greeter: Skprocess {
    /// Whether it waits for a "go" message before it greets.
    var waitsForGo = false
    var processConfig = ProcessConfig(runs: nil)
    mutating func prerun() async throws {
        if currentRun == 0 {
            if waitsForGo { _ = try await listen(String.self) }
            try await tell("hello")
        }
    }
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(5)) }
}

@Suite("Modifiers: timeout, background and sync", .timeLimit(.minutes(1)))
struct ModifierTests {
    @Test("result: timeout, background, sync and the plain call")
    func resultForms() async throws {
        let counter = try await Counter().start()
        #expect(try await counter.result.timeout(.seconds(30))() == 10)
        #expect(try await counter.result.background()().value == 10)
        let fromThread = try await onPlainThread { try counter.result.sync()() }
        #expect(fromThread == 10)
        let future = counter.result.background()()
        #expect(try await onPlainThread { try future.wait() } == 10)
        #expect(future.isDone)

        let sleeper = try await Sleeper().start()
        let error = await expectError(ResultTimeoutError.self) { try await sleeper.result.timeout(.milliseconds(50))() }
        #expect(error?.operation == "result")
        #expect(error?.timeout == .milliseconds(50))
        #expect(sleeper.isAlive)  // a timed-out call leaves the process running
        await sleeper.kill()
    }

    @Test("wait: timeout, background, sync")
    func waitForms() async throws {
        let sleeper = try await Sleeper().start()
        await #expect(throws: ResultTimeoutError.self) { try await sleeper.wait.timeout(.milliseconds(50))() }
        #expect(try await sleeper.wait.background()(timeout: .milliseconds(20)).value == false)
        #expect(try await onPlainThread { try sleeper.wait.sync()(timeout: .milliseconds(20)) } == false)
        let ended = sleeper.wait.background()()
        await sleeper.stop()
        #expect(try await onPlainThread { try ended.wait() })
        #expect(try await onPlainThread { try sleeper.wait.sync()() })
    }

    @Test("listen: timeout, background, sync")
    func listenForms() async throws {
        let greeter = try await Greeter(waitsForGo: true).start()
        await #expect(throws: ResultTimeoutError.self) { try await greeter.listen.timeout(.milliseconds(20))(String.self) }
        try await greeter.tell("go")
        let greeting = greeter.listen.timeout(.seconds(20)).background()(String.self)
        #expect(try await greeting.value == "hello")
        await greeter.kill()

        let second = try await Greeter().start()
        let fromThread = try await onPlainThread { try second.listen.sync()(String.self, timeout: .seconds(10)) }
        #expect(fromThread == "hello")
        #expect(try await onPlainThread { try second.listen.sync()(Int.self, timeout: .milliseconds(20)) } == nil)
        await second.kill()
    }

    @Test("tell: background and sync, then the process echoes")
    func tellForms() async throws {
        let doubler = try await Doubler().start()
        try await doubler.tell.background()(21).value
        #expect(try await doubler.listen(Int.self) == 42)
        try await onPlainThread { try doubler.tell.sync()(5) }
        #expect(try await doubler.listen(Int.self) == 10)
        await doubler.kill()
    }

    @Test("modifiers compose: a time-out, then background")
    func composed() async throws {
        let sleeper = try await Sleeper().start()
        let future = sleeper.result.timeout(.milliseconds(50)).background()()
        await #expect(throws: ResultTimeoutError.self) { try await future.value }
        await #expect(throws: ResultTimeoutError.self) { try await onPlainThread { try future.wait() } }
        let shorter = sleeper.result.timeout(.seconds(30)).timeout(.milliseconds(30))
        await #expect(throws: ResultTimeoutError.self) { try await shorter() }
        await sleeper.kill()
    }

    @Test("sync() and Future.wait() refuse to block a cooperative-pool thread, with a clear error")
    func syncRefusedInAsyncCode() async throws {
        let counter = try await Counter().start()
        let error = await expectError(ProcessingError.self) { try counter.result.sync()() }
        #expect(error?.code == .blockingInAsyncContext)
        #expect(error?.message.contains("try await") == true)
        let future = counter.result.background()()
        #expect(throws: ProcessingError.self) { try future.wait() }
        #expect(try await future.value == 10)
    }

    @Test("stop, kill, a pool's close and terminate from synchronous code; a close's time-out bounds its wait")
    func cleanUpFromSynchronousCode() async throws {
        let stopped = try await Sleeper().start()
        try await onPlainThread { try stopped.stop.sync()() }
        #expect(try await stopped.result().finished, "a stop from a plain thread did not end the process gracefully")
        let killed = try await Sleeper().start()
        try await onPlainThread { try killed.kill.sync()() }
        let error = await expectError(ProcessCrashError.self) { _ = try await killed.result() }
        #expect(error?.cause == .killed)
        #expect(throws: ProcessingError.self) { try killed.kill.sync()() }  // not on a pool thread

        let pool = Pool(workers: 1)
        #expect(try await pool.map([1, 2], Square()) == [1, 4])
        try await onPlainThread { try pool.close.sync()() }
        await #expect(throws: ProcessingError.self) { _ = try await pool.map([3], Square()) }

        let busy = Pool(workers: 1)
        let events = busy.events
        let mapDone = DoneFlag()
        let map = Task {
            defer { mapDone.done.store(true, ordering: .releasing) }
            return try await busy.map([60_000], Nap())
        }
        for await event in events { if case .ready = event.kind { break } }
        await busy.close.timeout(.milliseconds(50))()      // returns while the map still runs
        // The same from synchronous code: a time-out ends the wait, it is not an error.
        try await onPlainThread { try busy.close.timeout(.milliseconds(20)).sync()() }
        let finished = mapDone.done.load(ordering: .acquiring)
        #expect(!finished, "close waited for the map past its time-out")
        try await onPlainThread { try busy.terminate.sync()() }
        _ = await map.result
    }
}

/// A flag one task sets and another reads.
final class DoneFlag: Sendable {
    let done = Synchronization.Atomic(false)
}
