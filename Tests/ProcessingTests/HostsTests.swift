import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// The hosts these tests use: network namespaces on this machine, each with its own sshd
/// (`scripts/test-hosts`), made once around the suite and removed after it.
enum TestHosts {
    /// The script that makes them.
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/test-hosts").path
    /// Their keys and configuration: one directory per test run.
    static let directory = "/tmp/processing-test-hosts-\(getpid())"
    static var sshConfig: String { "\(directory)/ssh_config" }
    static let count = 4

    /// Why hosts cannot be made here, or nil if they can.
    static let whyNot: String? = {
        var missing: [String] = []
        if getuid() != 0 { missing.append("root") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") { missing.append("/usr/sbin/sshd (Debian's openssh-server)") }
        if !["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].contains(where: FileManager.default.isExecutableFile) {
            missing.append("ip (Debian's iproute2)")
        }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh") { missing.append("ssh (Debian's openssh-client)") }
        return missing.isEmpty ? nil : "no test hosts can be made here: this needs \(missing.joined(separator: ", "))"
    }()

    /// Whether CI demands the hosts (`.ci/run` sets it): then their absence fails, not skips.
    static var required: Bool { ProcessInfo.processInfo.environment["PROCESSING_REQUIRE_TEST_HOSTS"] == "1" }

    /// Host number `index` (1-based), reached with the test configuration.
    static func host(_ index: Int, binary: RemoteBinary = .automatic, heartbeat: Duration = .seconds(5)) -> WorkerHost {
        .ssh("host-\(index)", options: ["-F", sshConfig], binary: binary, heartbeat: heartbeat)
    }

    /// Runs the script (`up`, `kill`, `restart`, `pids`, `down`) on a thread of its own, so
    /// that no cooperative-pool thread waits for it; its stdout.
    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try runBlocking(arguments) }) }.start()
        }
    }

    /// `run`, blocking the caller (for a `defer`, where nothing can be awaited).
    @discardableResult
    static func runBlocking(_ arguments: [String]) throws -> String {
        let output = Pipe()
        let null = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/null"))
        let process = try TestCommand("/bin/bash", [script] + arguments, stdin: null.fileDescriptor,
                                      stdout: output.fileHandleForWriting.fileDescriptor,
                                      stderr: FileHandle.standardError.fileDescriptor)
        try null.close()
        try output.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ProcessingError(.invalidState, "scripts/test-hosts \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The processes left in host `index`'s namespace, but its sshd.
    static func leftovers(on index: Int) async throws -> [String] {
        try await run(["pids", directory, "\(index)"]).split(separator: "\n").map(String.init)
    }

    /// Waits until host `index`'s namespace holds nothing but its sshd: what is left, if anything.
    static func waitUntilEmpty(_ index: Int, within limit: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + limit
        var left = try await leftovers(on: index)
        while !left.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            left = try await leftovers(on: index)
        }
        return left
    }
}

/// Makes the hosts before the suite and removes them after it.
struct TestHostsScope: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await TestHosts.run(["up", TestHosts.directory, "\(TestHosts.count)"])
        defer {
            _ = try? TestHosts.runBlocking(["down", TestHosts.directory])
            try? FileManager.default.removeItem(atPath: TestHosts.directory)
        }
        try await function()
    }
}

extension Trait where Self == TestHostsScope {
    static var testHosts: TestHostsScope { TestHostsScope() }
}

// MARK: What runs there

/// Which network namespace a process is in: distinct per test host.
func networkNamespace() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "?"
}

/// A process that counts its runs and says where it ran.
struct RemoteCounter: Skprocess {
    var runs = 0
    var processConfig = ProcessConfig(runs: 5)
    mutating func run() async throws { runs += 1 }
    func result() async throws -> String { "\(runs) \(networkNamespace())" }
}

/// A process that answers what it is told, doubled, until told 0.
struct RemoteEcho: Skprocess {
    mutating func run() async throws {
        while let value = try await listen(Int.self), value != 0 {
            try await tell(value * 2)
        }
        stop()
    }
}

/// A process that crashes in its first life (the hosts share this machine's files: a marker
/// file tells the second life from the first) and returns in its second.
struct RemoteCrashOnce: Skprocess {
    var marker: String
    var processConfig = ProcessConfig(lives: 2)
    mutating func run() async throws {
        if !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: Data())
            fatalError("first life")
        }
        stop()
    }
    func result() async throws -> String { networkNamespace() }
}

/// A process that dies by a signal.
struct RemoteFatal: Skprocess {
    mutating func run() async throws {
        fatalError("remote boom")
    }
}

/// A process that holds a Share (which cannot cross hosts).
struct RemoteShareHolder: Skprocess {
    var share: Share<Int>
    mutating func run() async throws { stop() }
}

/// Squares, saying in which namespace.
struct RemoteSquare: PoolWork {
    func callAsFunction(_ input: Int) async throws -> [String] { ["\(input * input)", networkNamespace()] }
}

/// Squares slowly (so that a map is still running when a test breaks a host), leaving a
/// file named after its namespace in `markers` (the hosts share this machine's files), so
/// that the test knows where items ran.
struct SlowRemoteSquare: PoolWork {
    var markers: String
    func callAsFunction(_ input: Int) async throws -> Int {
        let namespace = networkNamespace().filter { $0.isNumber }
        _ = FileManager.default.createFile(atPath: "\(markers)/\(namespace)", contents: Data())
        try await Task.sleep(for: .milliseconds(30))
        return input * input
    }
}

/// Pool work holding a Share.
struct ShareWork: PoolWork {
    var share: Share<Int>
    func callAsFunction(_ input: Int) async throws -> Int { input }
}

@Suite("Remote hosts over ssh (network namespaces with their own sshd)", .serialized,
       .enabled(if: TestHosts.whyNot == nil, "\(TestHosts.whyNot ?? "")"), .testHosts, .timeLimit(.minutes(3)))
struct HostsTests {
    @Test("a process on a remote host: its runs, its tell and listen, a crash with its message")
    func remoteProcess() async throws {
        let handle = try await RemoteCounter().start(on: TestHosts.host(1))
        let answer = try await handle.result()
        #expect(answer.hasPrefix("5 "))
        #expect(!answer.hasSuffix(networkNamespace()), "it ran here: \(answer)")

        let echo = try await RemoteEcho().start(on: TestHosts.host(2))
        for value in 1...50 {
            try await echo.tell(value)
            #expect(try await echo.listen(Int.self, timeout: .seconds(30)) == value * 2)
        }
        try await echo.tell(0)
        _ = try await echo.result()

        let marker = "\(TestHosts.directory)/crash-once-\(UUID())"
        let retried = try await RemoteCrashOnce(marker: marker).start(on: TestHosts.host(2))
        #expect(try await retried.result() != networkNamespace())
        #expect(retried.currentRun == 1)

        let fatal = try await RemoteFatal().start(on: TestHosts.host(1))
        await #expect {
            try await fatal.result()
        } throws: { error in
            guard let crash = error as? ProcessCrashError else { return false }
            return crash.description.contains("remote boom") && crash.signal != nil
        }
    }

    @Test("a map over two hosts and local workers gives every result, in order, from all three")
    func mapOverHosts() async throws {
        let pool = try Pool(workers: [.local(1), .on(TestHosts.host(1), count: 2), .on(TestHosts.host(2), count: 2)])
        let results = try await pool.map.chunkSize(1)(Array(1...120), RemoteSquare())
        #expect(results.map { $0[0] } == (1...120).map { "\($0 * $0)" })
        let namespaces = Set(results.map { $0[1] })
        #expect(namespaces.count == 3, "results came from \(namespaces)")
        await pool.close()
        for index in [1, 2] { #expect(try await TestHosts.waitUntilEmpty(index).isEmpty) }
    }

    @Test("a host whose sshd is killed mid-map: its items are retried on the others, and the map ends")
    func hostKilledMidMap() async throws {
        defer { _ = try? TestHosts.runBlocking(["restart", TestHosts.directory, "3"]) }
        let pool = try Pool(workers: [.local(1), .on(TestHosts.host(3), count: 2)])
        let seen = Atomic(0)
        let markers = "\(TestHosts.directory)/markers-\(UUID())"
        try FileManager.default.createDirectory(atPath: markers, withIntermediateDirectories: true)
        let here = networkNamespace().filter { $0.isNumber }
        // The kill comes once host-3's workers run items (not before they started).
        let killer = Task {
            while try FileManager.default.contentsOfDirectory(atPath: markers).filter({ $0 != here }).isEmpty {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await TestHosts.run(["kill", TestHosts.directory, "3"])
            return seen.load(ordering: .relaxed)
        }
        let results = try await pool.map.chunkSize(1).retries(3).progress { _ in
            seen.add(1, ordering: .relaxed)
        }(Array(1...80), SlowRemoteSquare(markers: markers))
        killer.cancel()
        let killedAt = try await killer.value
        #expect(killedAt < 80, "the map ended before the kill")
        #expect(results == (1...80).map { $0 * $0 })
        await pool.close()
        #expect(try await TestHosts.waitUntilEmpty(3).isEmpty)
    }

    @Test("a remote binary of another build is refused, naming the host and both build ids")
    func buildMismatch() async throws {
        let other = FixtureProgram.path
        let host = TestHosts.host(1, binary: .at(other))
        await #expect {
            _ = try await RemoteCounter().start(on: host)
        } throws: { error in
            guard let error = error as? ProcessingError, error.code == .buildMismatch else { return false }
            return error.message.contains("host-1") && error.message.contains(other)
                && error.message.contains(Syscall.ownBuildID)
        }
    }

    @Test("a Share cannot go to another host: refused before anything is sent, naming the host")
    func refusedShare() async throws {
        let share = try await Share(0)
        #expect {
            _ = try ProcessHandle(RemoteShareHolder(share: share), on: TestHosts.host(1))
        } throws: { error in
            guard let error = error as? ProcessingError, error.code == .cannotCrossHosts else { return false }
            return error.message.contains("host-1") && error.message.contains("Share")
        }
        let pool = try Pool(workers: [.local(1), .on(TestHosts.host(1), count: 1)])
        await #expect(throws: ProcessingError.self) {
            _ = try await pool.map([1, 2, 3], ShareWork(share: share))
        }
        await pool.close()
        // The local pool is untouched by the rule.
        #expect(try await Pool(workers: 1).map([1, 2], ShareWork(share: share)) == [1, 2])
    }

    @Test("a binary copied into the host's cache runs there")
    func copiedBinary() async throws {
        let cache = "\(TestHosts.directory)/cache"
        let handle = try await RemoteCounter().start(on: TestHosts.host(2, binary: .copied(into: cache)))
        #expect(try await handle.result().hasPrefix("5 "))
        let copy = "\(cache)/\(Syscall.ownBuildID)/\(URL(fileURLWithPath: Syscall.executablePath()).lastPathComponent)"
        #expect(FileManager.default.isExecutableFile(atPath: copy))
    }

    @Test("an unreachable host fails the start with ssh's own words")
    func unreachableHost() async throws {
        let host = WorkerHost.ssh("host-1", options: ["-F", TestHosts.sshConfig, "-p", "9"])
        await #expect {
            _ = try await RemoteCounter().start(on: host)
        } throws: { error in
            guard let error = error as? ProcessingError, error.code == .hostUnavailable else { return false }
            return error.message.contains("host-1") && error.message.contains("refused")
        }
    }

    @Test("an actor process on a remote host: calls, generic calls, a thrown error, its stop, nothing left")
    func remoteActor() async throws {
        let system = ProcessActorSystem()
        let calculator = try await system.spawn(Calculator.self, on: TestHosts.host(2))
        #expect(try await calculator.add(5) == 5)
        #expect(try await calculator.add(7) == 12)
        #expect(try await calculator.echo("over ssh") == "over ssh")
        await #expect(throws: ActorParseFailure.self) { _ = try await calculator.fail(line: 3) }
        let callers = (0..<8).map { index in Task { try await calculator.square(index) } }
        for (index, caller) in callers.enumerated() { #expect(try await caller.value == index * index) }
        try await system.stop(calculator)
        await #expect(throws: (any Error).self) { _ = try await calculator.add(1) }
        #expect(try await TestHosts.waitUntilEmpty(2).isEmpty)
    }

    @Test("a host cut off from the network is noticed by the heartbeat: its process crashes, nothing hangs")
    func partitionedHost() async throws {
        let handle = try await RemoteEcho().start(on: TestHosts.host(4, heartbeat: .seconds(1)))
        try await handle.tell(21)
        #expect(try await handle.listen(Int.self, timeout: .seconds(30)) == 42)
        try await TestHosts.run(["partition", TestHosts.directory, "4"])
        defer { _ = try? TestHosts.runBlocking(["heal", TestHosts.directory, "4"]) }
        #expect(try await handle.wait(timeout: .seconds(60)), "the partition went unnoticed")
        let crash = try #require(handle.error as? ProcessCrashError)
        #expect(crash.description.contains("connection to host-4 ended"), "\(crash)")
        try await TestHosts.run(["heal", TestHosts.directory, "4"])
        // The host's sshd gives the session up too (ClientAliveInterval), and the worker goes.
        #expect(try await TestHosts.waitUntilEmpty(4, within: .seconds(30)).isEmpty)
    }

    @Test("the parent SIGKILLed mid-map leaves no worker on any host")
    func parentKilled() async throws {
        let program = try FixtureProgram("remote-map", environment: ["PROCESSING_TEST_SSH_CONFIG": TestHosts.sshConfig])
        #expect(try await program.value("mapping") == "yes", "\(program.stderr)")
        // Workers run on both hosts now.
        for index in [1, 2] {
            let deadline = ContinuousClock.now + .seconds(30)
            while try await TestHosts.leftovers(on: index).isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await !TestHosts.leftovers(on: index).isEmpty, "no worker started on host-\(index)")
        }
        kill(program.pid, SIGKILL)
        for index in [1, 2] {
            let left = try await TestHosts.waitUntilEmpty(index)
            #expect(left.isEmpty, "left on host-\(index): \(left)")
        }
    }
}

@Suite("Test hosts")
struct TestHostsAvailability {
    @Test("where CI requires the test hosts, they can be made")
    func requiredHostsExist() {
        #expect(!TestHosts.required || TestHosts.whyNot == nil, "\(TestHosts.whyNot ?? "")")
    }
}
