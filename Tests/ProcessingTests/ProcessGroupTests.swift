import Distributed
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// A member that records when the group ends it, to check the order.
struct RecordingMember: ProcessGroupMember {
    let name: String
    let log: SharedLog

    func endGracefully(within gracePeriod: Duration) async { log.value.withLock { $0.append("graceful \(name)") } }
    func endNow() async { log.value.withLock { $0.append("kill \(name)") } }
}

/// What the recording members saw, shared by reference.
final class SharedLog: Sendable {
    let value = Synchronization.Mutex<[String]>([])
}

/// Runs until stopped.
struct GroupSleeper: Skprocess {
    mutating func run() async throws { try await Task.sleep(for: .milliseconds(10)) }
}

@Suite("Process groups", .timeLimit(.minutes(2)))
struct ProcessGroupTests {
    @Test("the body's end ends every member, in reverse order of adding, and returns its value")
    func scopeExit() async throws {
        let log = SharedLog()
        let (value, handle, system, actor) = try await ProcessGroup.run(handlesSignals: false) { group in
            group.add(RecordingMember(name: "first", log: log))
            let handle = try await group.start(GroupSleeper())
            let system = group.add(ProcessActorSystem())
            let actor = try await system.spawn(Calculator.self)
            _ = try await actor.add(1)
            group.add(RecordingMember(name: "last", log: log))
            return (42, handle, system, actor)
        }
        #expect(value == 42)
        #expect(log.value.withLock { $0 } == ["graceful last", "graceful first"])
        #expect(!handle.isAlive)
        #expect(!system.isAlive(actor))
        // The process ended gracefully: it ran its result.
        #expect(handle.error == nil)
    }

    @Test("a body that throws: members end, the error is rethrown")
    func bodyThrows() async throws {
        let captured = Synchronization.Mutex<ProcessHandle<GroupSleeper>?>(nil)
        await #expect(throws: ActorParseFailure(line: 5)) {
            try await ProcessGroup.run(handlesSignals: false) { group in
                let handle = try await group.start(GroupSleeper())
                captured.withLock { $0 = handle }
                throw ActorParseFailure(line: 5)
            }
        }
        #expect(captured.withLock { $0 }?.isAlive == false)
    }

    @Test("stop() ends the members, then cancels a body that does not return within the grace period")
    func stopCall() async throws {
        let log = SharedLog()
        let sawStop = try await ProcessGroup.run(gracePeriod: .milliseconds(200), handlesSignals: false) { group in
            group.add(RecordingMember(name: "only", log: log))
            Task { group.stop() }
            await group.waitUntilStopping()
            #expect(group.isStopping)
            do {
                try await Task.sleep(for: .seconds(60))
                return false
            } catch {
                return true   // cancelled once the members ended
            }
        }
        #expect(sawStop)
        #expect(log.value.withLock { $0 } == ["graceful only"])
    }

    @Test("cancelling the task that runs a group kills its members, also while the body waits for the stop")
    func cancelled() async throws {
        let captured = Synchronization.Mutex<ProcessHandle<GroupSleeper>?>(nil)
        let running = Task {
            try await ProcessGroup.run(handlesSignals: false) { group in
                captured.withLock { $0 = nil }
                let handle = try await group.start(GroupSleeper())
                captured.withLock { $0 = handle }
                await group.waitUntilStopping()
            }
        }
        while captured.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
        running.cancel()
        _ = await running.result
        #expect(captured.withLock { $0 }?.isAlive == false)
    }

    @Test("a relay in a group is stopped gracefully: its stages drain and shut down")
    func relayMember() async throws {
        let path = NSTemporaryDirectory() + "group-relay-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let progress = try await Share(RelayProgress())
        try await ProcessGroup.run(handlesSignals: false) { group in
            let relay = Relay(maxsize: 16)
            try relay.connect(RelayEndless(progress: progress), RelayFileSum(path: path))
            try await relay.start { control in
                group.add(control)
                // Once the stream flows (a stop before the stages run is another case).
                while try await progress.read().sent < 100 { try await Task.sleep(for: .milliseconds(5)) }
                group.stop()
                await group.waitUntilStopping()
            }
        }
        // Written by the sink's shutdown(), which runs only in a graceful end.
        let report = try String(contentsOfFile: path, encoding: .utf8).split(separator: " ")
        #expect(report.last == "1")
    }

    @Test("a program's first SIGINT stops its group gracefully, and it exits by SIGINT leaving nothing")
    func sigint() async throws {
        let program = try FixtureProgram("group-sigint")
        let pids = try #require(try await program.value("pids")).split(separator: ",").compactMap { Int($0) }
        #expect(pids.count == 2)
        _ = try await program.value("ready")
        kill(program.pid, SIGINT)
        let exit = try #require(try await program.exit())
        #expect(exit.signaled && exit.status == SIGINT, "stdout: \(program.stdout)\nstderr: \(program.stderr)")
        #expect(program.stdout.contains("worker-finished: yes"))
        #expect(program.stdout.contains("actor-shutdown: yes"))
        #expect(program.stdout.contains("body-saw-stop: yes"))
        #expect(!program.stdout.contains("after-run"))
        for pid in pids { #expect(try await isGone(pid)) }
    }

    @Test("a second SIGINT kills members that do not end gracefully, and the program exits")
    func secondSigint() async throws {
        let program = try FixtureProgram("group-sigint-twice")
        let pids = try #require(try await program.value("pids")).split(separator: ",").compactMap { Int($0) }
        _ = try await program.value("ready")
        kill(program.pid, SIGINT)
        let deadline = ContinuousClock.now + .seconds(20)
        while !program.stderr.contains("stopping gracefully"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(program.pid, SIGINT)
        let exit = try #require(try await program.exit(timeout: .seconds(20)))
        #expect(exit.signaled && exit.status == SIGINT, "stdout: \(program.stdout)\nstderr: \(program.stderr)")
        #expect(!program.stdout.contains("worker-finished"))
        #expect(program.stderr.contains("killing every member"))
        for pid in pids { #expect(try await isGone(pid)) }
    }
}
