import Foundation
import Testing
@testable import Processing

/// Calls fatalError in its second run.
struct FatalProcess: Skprocess {
    var processConfig = ProcessConfig(runs: 3)
    mutating func run() async throws {
        if currentRun == 1 { fatalError("boom in run \(currentRun)") }
    }
}

/// Tells the parent its pid, then waits to be killed.
struct PidTeller: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        try await tell(Int(getpid()))
        try await Task.sleep(for: .seconds(600))
    }
}

/// Writes raw bytes onto its own control channel, then exits or waits.
struct ChannelVandal: Skprocess {
    var bytes: [UInt8]
    var exitAfterwards: Bool
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let fd = WorkerContext.active!.channel.fd
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if exitAfterwards { Syscall.exitImmediately(.finished) }
        try await Task.sleep(for: .seconds(600))
    }
}

/// Encodes fine, but its state refuses to decode (in the child).
struct UndecodableState: Skprocess {
    init() {}
    init(from decoder: any Decoder) throws {
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "this state never decodes"))
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode("anything")
    }
    mutating func run() async throws {}
}

/// Crashes 40 calls deep, so that the runtime's stack trace is long.
struct DeepCrasher: Skprocess {
    mutating func run() async throws { descend(40) }
    func descend(_ depth: Int) {
        if depth > 0 { descend(depth - 1) }
        if depth == 0 { fatalError("deep boom") }
        print(depth)  // not a tail call
    }
}

/// Runs once with the configuration it is given.
struct Configured: Skprocess {
    var processConfig: ProcessConfig
    mutating func run() async throws {}
}

/// Exits by itself without a result.
struct Quitter: Skprocess {
    mutating func run() async throws { _exit(9) }
}

private struct HiddenProcess: Skprocess {
    mutating func run() async throws {}
}

@Suite("Crashes, kills and bad input", .timeLimit(.minutes(2)))
struct ProcessFailureTests {
    @Test("a fatalError in the child makes result() throw an error naming the signal and the message")
    func fatalErrorCrash() async throws {
        let handle = try await FatalProcess().start()
        let error = try #require(await expectError(ProcessCrashError.self) { try await handle.result() })
        let signal = try #require(error.signal)
        #expect([SIGILL, SIGTRAP, SIGABRT].contains(signal))
        #expect(error.description.contains("SIG"))
        #expect(error.stderrTail.contains("boom in run 1"))
        #expect(!handle.isAlive)
    }

    @Test("SIGKILL from outside makes result() throw an error naming SIGKILL")
    func killedFromOutside() async throws {
        let handle = try await PidTeller().start()
        let pid = try #require(try await handle.listen(Int.self, timeout: .seconds(60)))
        #expect(Glibc.kill(pid_t(pid), SIGKILL) == 0)
        let error = try #require(await expectError(ProcessCrashError.self) { try await handle.result() })
        #expect(error.cause == .signal(SIGKILL))
        #expect(error.description.contains("SIGKILL"))
    }

    @Test("kill() leaves no result, and wait returns")
    func killLeavesNoResult() async throws {
        let handle = try await Sleeper().start()
        #expect(handle.isAlive)
        await handle.kill()
        #expect(try await handle.wait())
        #expect(!handle.isAlive)
        let error = try #require(await expectError(ProcessCrashError.self) { try await handle.result() })
        #expect(error.cause == .killed)
    }

    @Test("wait(timeout:) returns false while the process runs")
    func waitTimesOut() async throws {
        let handle = try await Silent().start()
        #expect(try await handle.wait(timeout: .milliseconds(100)) == false)
        await handle.kill()
        #expect(try await handle.wait(timeout: .seconds(60)))
    }

    @Test("a child that exits without a result is reported with its status")
    func exitWithoutResult() async throws {
        let handle = try await Quitter().start()
        let error = try #require(await expectError(ProcessCrashError.self) { try await handle.result() })
        #expect(error.cause == .exit(9))
    }

    @Test("a private type is refused before anything is spawned, naming the type and the fix")
    func privateType() async throws {
        // Refused when the handle is made, before start() could spawn anything.
        let error = try #require(await expectError(ProcessingError.self) { try ProcessHandle(HiddenProcess()) })
        #expect(error.code == .typeNotLocatable)
        #expect(error.message.contains("HiddenProcess"))
        #expect(error.message.contains("internal or public"))
        let viaStart = try #require(await expectError(ProcessingError.self) { try await HiddenProcess().start() })
        #expect(viaStart.code == .typeNotLocatable)
    }

    @Test("a function-local type is refused too")
    func localType() async throws {
        struct LocalProcess: Skprocess {
            mutating func run() async throws {}
        }
        let error = try #require(await expectError(ProcessingError.self) { try await LocalProcess().start() })
        #expect(error.code == .typeNotLocatable)
        #expect(error.message.contains("LocalProcess"))
    }

    @Test("a state that fails to decode in the child gives a clear error")
    func undecodableState() async throws {
        let handle = try await UndecodableState().start()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.result() })
        #expect(error.code == .decodingFailed)
        #expect(error.message.contains("UndecodableState"))
        #expect(error.message.contains("this state never decodes"))
    }

    @Test("garbage on the channel is reported as a malformed frame", arguments: [
        [0xff, 0xff, 0xff, 0x7f, 0x02, 1, 2, 3] as [UInt8],  // an absurd length
        [0x04, 0x00, 0x00, 0x00, 0x63, 1, 2, 3],             // an unknown kind
        [0x03, 0x00, 0x00, 0x00, 0x02, 0x7f, 0x41],          // a message whose type name overruns
    ])
    func garbageFrame(bytes: [UInt8]) async throws {
        let handle = try await ChannelVandal(bytes: bytes, exitAfterwards: false).start()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.result() })
        #expect(error.code == .malformedFrame)
        #expect(!handle.isAlive)
    }

    @Test("a truncated frame is reported as such")
    func truncatedFrame() async throws {
        let bytes: [UInt8] = [100, 0, 0, 0, 0x02] + Array(repeating: 7, count: 10)
        let handle = try await ChannelVandal(bytes: bytes, exitAfterwards: true).start()
        let error = try #require(await expectError(ProcessingError.self) { try await handle.result() })
        #expect(error.code == .malformedFrame)
        #expect(error.message.contains("truncated"))
    }

    @Test("five bytes announcing a 1 GiB frame cost the parent no 1 GiB, and other processes go on")
    func hugeFrameHeader() async throws {
        let before = residentBytes()
        var vandals: [ProcessHandle<ChannelVandal>] = []
        for _ in 0..<3 {
            vandals.append(try await ChannelVandal(bytes: [0xff, 0xff, 0xff, 0x3f, 0x02], exitAfterwards: false).start())
        }
        let counted = try await outcome(within: .seconds(30)) { try await Counter().start().result() }
        #expect(counted.flatMap { try? $0.get() } == 10)
        let grown = residentBytes() - before
        #expect(grown < 512 << 20, "the parent grew by \(grown >> 20) MiB for three frame headers")
        for vandal in vandals {
            await vandal.kill()
            _ = try await vandal.wait()
        }
    }

    @Test("a crash report keeps the fatal error's message, however deep the stack")
    func crashReportKeepsTheMessage() async throws {
        let error = try #require(await expectError(ProcessCrashError.self) { try await DeepCrasher().start().result() })
        #expect(String(describing: error).contains("Fatal error: deep boom"), "\(error)")
    }

    @Test("a configuration with a negative run count or no lives is refused before anything spawns")
    func invalidConfiguration() async throws {
        for config in [ProcessConfig(runs: -1), ProcessConfig(lives: 0), ProcessConfig(lives: -2),
                       ProcessConfig(joinIn: .zero), ProcessConfig(timeouts: .init(run: .seconds(-1)))] {
            let error = try #require(await expectError(ProcessingError.self) { try await Configured(processConfig: config).start() })
            #expect(error.code == .invalidConfiguration)
            let setting = config.lives < 1 ? "lives" : config.runs != nil ? "runs" : config.joinIn != nil ? "joinIn" : "timeouts.run"
            #expect(error.message.contains(setting) && error.message.contains("Configured"), "\(error)")
        }
    }

    @Test("operations on a handle that was never started say so")
    func notStarted() async throws {
        let handle = try ProcessHandle(Counter())
        let error = try #require(await expectError(ProcessingError.self) { try await handle.wait() })
        #expect(error.code == .invalidState)
        #expect(!handle.isAlive)
        try await handle.start()
        let twice = try #require(await expectError(ProcessingError.self) { try await handle.start() })
        #expect(twice.code == .invalidState)
        #expect(try await handle.result() == 10)
    }
}
