import Foundation
import Testing
@testable import Processing

/// A middle process: starts a grandchild, tells the parent both pids, then waits to be killed.
struct MiddleParent: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let grandchild = try await PidTeller().start()
        let grandchildPID = try await grandchild.listen(Int.self, timeout: .seconds(60))
        try await tell([Int(getpid()), grandchildPID ?? -1])
        try await Task.sleep(for: .seconds(600))
    }
}

/// Closes its own reactor's epoll descriptor (as a loop closing every descriptor would), then
/// wakes the reactor.
struct ReactorVandal: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        close(Reactor.shared.epfd)
        Reactor.shared.execute {}
        try await Task.sleep(for: .seconds(30))
    }
}

/// Whether a process exists and is not a zombie.
func isRunning(_ pid: Int) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

@Suite("The worker runtime", .timeLimit(.minutes(2)))
struct WorkerRuntimeTests {
    @Test("a child exits when its parent is SIGKILLed (no orphan)")
    func orphansDie() async throws {
        let middle = try await MiddleParent().start()
        let pids = try #require(try await middle.listen([Int].self, timeout: .seconds(60)))
        let grandchild = pids[1]
        #expect(grandchild > 0 && isRunning(grandchild))
        #expect(kill(pid_t(pids[0]), SIGKILL) == 0)
        let error = try #require(await expectError(ProcessCrashError.self) { try await middle.result() })
        #expect(error.cause == .signal(SIGKILL))
        // PR_SET_PDEATHSIG kills the grandchild at once; poll, bounded, for it to be gone.
        var gone = false
        for _ in 0..<1000 where !gone {
            gone = !isRunning(grandchild)
            if !gone { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(gone)
    }

    @Test("the worker marker without a control channel exits with a clear message")
    func strayMarker() async throws {
        let (status, stderr) = try runThisBinary(workerMarker: "3:0")
        #expect(status == WorkerExitCode.noControlChannel.status)
        #expect(stderr.contains("no control channel"))
    }

    @Test("a malformed worker marker exits with a clear message")
    func malformedMarker() async throws {
        let (status, stderr) = try runThisBinary(workerMarker: "yes")
        #expect(status == WorkerExitCode.badMarker.status)
        #expect(stderr.contains("not a worker marker"))
    }

    @Test("a reactor whose epoll descriptor was closed from outside says so and ends, instead of spinning")
    func reactorDescriptorClosed() async throws {
        let error = try #require(await expectError(ProcessCrashError.self) { try await ReactorVandal().start().result() })
        #expect(error.crashMessage?.contains("the reactor can no longer wait") == true, "\(error)")
    }

    @Test("waiting for a descriptor epoll refuses (a regular file) throws instead of waiting for ever")
    func readinessRefused() async throws {
        let path = NSTemporaryDirectory() + "processing-regular-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data([1]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let waited = try await outcome(within: .seconds(10)) { try await Reactor.shared.waitUntilReady(fd, writable: false) }
        guard case .failure(let error as ProcessingError)? = waited else {
            Issue.record("the wait did not fail: \(String(describing: waited))")
            return
        }
        #expect(error.code == .invalidState && error.message.contains("epoll refused"))
    }

    /// Runs this test binary with the worker marker set (and no control channel) by hand.
    private func runThisBinary(workerMarker: String) throws -> (status: Int32, stderr: String) {
        let stderr = Pipe()
        let null = try FileHandle(forUpdating: URL(fileURLWithPath: "/dev/null"))
        let process = try TestCommand(Syscall.executablePath(), environment: ["__SWIFT_PROCESSING_WORKER": workerMarker],
                                      stdin: null.fileDescriptor, stdout: null.fileDescriptor,
                                      stderr: stderr.fileHandleForWriting.fileDescriptor)
        try null.close()
        try stderr.fileHandleForWriting.close()
        let output = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
