import Foundation
import Testing
@testable import Processing

/// Reads what is in `pipe` now and until `text` has appeared in it or `timeout` passes.
func drain(_ pipe: Pipe, until text: String, timeout: Duration = .seconds(30)) async throws -> String {
    let fd = pipe.fileHandleForReading.fileDescriptor
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    var collected: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count > 0 {
            collected.append(contentsOf: buffer[..<count])
            if String(decoding: collected.suffix(64 * 1024), as: UTF8.self).contains(text) { break }
        } else {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
    return String(decoding: collected, as: UTF8.self)
}

/// The library inside a program that is not kind to it: its stdio, descriptors, signals and
/// binary on disk are what a daemon, a shell pipeline or a redeploy leave it. Each test runs
/// the fixture program (Tests/Fixture) as a separate process.
@Suite("A program's own stdio, descriptors, signals and binary", .timeLimit(.minutes(2)))
struct HostProgramTests {
    @Test("a full stderr stalls no process, drops are reported once, and a broken one raises no SIGPIPE")
    func fullAndBrokenStderr() async throws {
        let program = try FixtureProgram("stderr-full", readsStderr: false)
        // A child writes 1 MB to stderr, which nobody reads: the others go on.
        #expect(try await program.value("counter", timeout: .seconds(30)) == "10")
        #expect(try await program.value("killed", timeout: .seconds(30)) == "true")
        #expect(try await program.value("stage", timeout: .seconds(30)) == "full")
        // Once stderr can take bytes again, the drop is reported, once.
        let drained = try await drain(program.errors, until: "child stderr were dropped")
        #expect(drained.components(separatedBy: "child stderr were dropped").count == 2)
        try program.errors.fileHandleForReading.close()
        program.send("go")
        #expect(try await program.value("counter after close", timeout: .seconds(30)) == "10")
        let exit = try await program.exit()
        #expect(exit?.signaled == false)
        #expect(exit?.status == 0)
    }

    @Test("work reading a main.swift variable fails its items clearly: no missing result, no crash of the program")
    func mainSwiftGlobal() async throws {
        let program = try FixtureProgram("main-global")
        let mapValue = try await program.value("map error")
        let map = try #require(mapValue, "map returned: \(program.stdout)")
        #expect(map.contains("main.swift"))
        let imapValue = try await program.value("imap error")
        let imap = try #require(imapValue, "imap returned: \(program.stdout)")
        #expect(imap.contains("main.swift"))
        #expect(try await program.exit()?.status == 0)
    }

    @Test("workers run the program's own image, even after its file was replaced on disk")
    func replacedBinary() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("processing-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("app").path
        try FileManager.default.copyItem(atPath: FixtureProgram.path, toPath: copy)
        let program = try FixtureProgram("replaced-binary", executable: copy)
        #expect(try await program.value("stage") == "ready")
        // A redeploy: another executable takes the file's name.
        let replacement = directory.appendingPathComponent("new").path
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: replacement)
        #expect(rename(replacement, copy) == 0)
        program.send("go")
        #expect(try await program.value("counter") == "10")
        #expect(try await program.value("map") == "[2, 4, 6]")
        #expect(try await program.exit()?.status == 0)
    }

    @Test("a child's own children end with it: when it returns, crashes, or its parent dies")
    func descendantsEnd() async throws {
        let program = try FixtureProgram("orphans")
        for ending in ["return", "crash"] {
            let value = try await program.value(ending)
            let pid = try #require(value.flatMap { Int($0) })
            #expect(pid > 0)
            #expect(try await isGone(pid), "the grandchild left by a child that \(ending)ed still runs")
        }
        let waitingValue = try await program.value("wait")
        let waiting = try #require(waitingValue.flatMap { Int($0) })
        #expect(try await program.value("stage") == "ready")
        #expect(isRunning(waiting))
        kill(program.pid, SIGKILL)
        #expect(try await isGone(waiting), "the grandchild outlived the program's death")
    }

    @Test("a child's own children end by the time its result is in, even if the program exits at once")
    func descendantsEndOnResult() async throws {
        for _ in 0..<3 {
            let program = try FixtureProgram("orphan-at-exit")
            let pid = try #require(try await program.value("quiet").flatMap { Int($0) })
            #expect(pid > 0)
            #expect(try await program.exit()?.status == 0)
            #expect(try await isGone(pid, within: .seconds(2)), "the grandchild outlived the program that exited on its parent's result")
            if isRunning(pid) { kill(pid_t(pid), SIGKILL) }
        }
    }

    @Test("with stdout closed (a daemon), no descriptor of the library's takes fds 0-2")
    func closedStdout() async throws {
        let program = try FixtureProgram("closed-stdout")
        #expect(try await program.value("counter") == "10")
        #expect(try await program.value("echoed") == "20")
        // The closed number holds /dev/null (as daemon(3) leaves it), so that nothing else takes it,
        // unless Dispatch's own timerfd took it first: Dispatch arms its worker-monitor timer when
        // its first worker thread starts and opens the timerfd later on its manager thread, which
        // races a close(1) made at the program's start (measured: 17 of 30 runs). That descriptor
        // is not the library's, and a print into it fails instead of reaching a child.
        let first = try await program.value("fd 1")
        #expect(first == "/dev/null" || first == "anon_inode:[timerfd]", "fd 1 holds \(first ?? "nothing")")
        for fd in [0, 2] {
            let target = try await program.value("fd \(fd)") ?? ""
            #expect(!target.contains("socket") && !target.contains("anon_inode") && !target.contains("pidfd"))
        }
        #expect(try await program.exit()?.status == 0)
    }

    @Test("running out of descriptors fails a start clearly (the call, the errno, ulimit -n) and leaks none")
    func descriptorExhaustion() async throws {
        let program = try FixtureProgram("emfile")
        // Each limit leaves the table full for a moment. Dispatch's worker monitor kills the
        // program (SIGILL) if it cannot open /proc/<tid>/stat then, so the library keeps that
        // moment short: no child is spawned that the pidfd's slot could not be had for (CI
        // once died here while such a child was killed and reaped with the table full).
        let stage = try await program.value("stage")
        #expect(stage == "done", "stdout:\n\(program.stdout)\nstderr:\n\(program.stderr)")
        let lines = program.stdout.split(separator: "\n").filter { $0.hasPrefix("limit +") }
        #expect(lines.count == 10)
        for line in lines {
            #expect(line.hasSuffix("zombies: 0 | leaked fds: 0"), "\(line)")
            #expect(line.contains("result 10") || (line.contains("ProcessingError") && line.contains("ulimit -n")), "\(line)")
            // The errno travels as a value too, not only in the message.
            #expect(!line.contains("ProcessingError") || line.contains("errno=\(EMFILE)"), "\(line)")
        }
        #expect(lines.contains { $0.contains("ProcessingError") })
        #expect(try await program.exit()?.status == 0)
    }

    @Test("with SIGCHLD ignored, a crash says what is known and why the status is not")
    func ignoredSIGCHLD() async throws {
        let program = try FixtureProgram("sigchld-ignored")
        #expect(try await program.value("counter") == "10")
        let crashValue = try await program.value("crash")
        let crash = try #require(crashValue)
        #expect(crash.contains("SIGCHLD"), "\(crash)")
        #expect(!crash.contains("status -1"), "\(crash)")
        #expect(crash.contains("the child gives up"), "\(crash)")
        #expect(try await program.exit()?.status == 0)
    }

    @Test("updates waiting for a share held by a stopped child occupy no cooperative thread, and cancel")
    func shareHeldByStoppedChild() async throws {
        let program = try FixtureProgram("share-stalled")
        #expect(try await program.value("sleep on the pool", timeout: .seconds(30)) == "returned")
        #expect(try await program.value("timeout") == "ResultTimeoutError")
        #expect(try await program.value("read timeout") == "ResultTimeoutError")
        let waiting = ProcessInfo.processInfo.activeProcessorCount + 2
        #expect(try await program.value("cancelled", timeout: .seconds(30)) == "\(waiting) of \(waiting)")
        #expect(try await program.value("after", timeout: .seconds(30)) == "1001")
        #expect(try await program.exit()?.status == 0)
    }
}
