// A program that uses Processing the way an app does, for the tests to run as a separate
// process: `ProcessingFixture <scenario>`. Each scenario abuses the program's own situation
// (its stdio, its descriptors, its signals, its binary on disk) and reports what it saw as
// `key: value` lines on stdout (on stderr where stdout is closed); the tests read them.
import Distributed
import Foundation
import Processing
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// A top-level variable of main.swift: set by top-level code, which a worker never runs.
let greeting = "hello from main.swift"

// MARK: - Processes

struct Counter: Skprocess {
    var counter = 0
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws { counter += 1 }
    func result() async throws -> Int { counter }
}

/// Writes `bytes` bytes to its stderr, then returns how many it wrote.
struct Noisy: Skprocess {
    var bytes: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let chunk = [UInt8](repeating: UInt8(ascii: "n"), count: 16 * 1024)
        var left = bytes
        while left > 0 {
            let count = min(left, chunk.count)
            let written = chunk.withUnsafeBytes { write(2, $0.baseAddress, count) }
            guard written > 0 else { break }
            left -= written
        }
    }
    func result() async throws -> Int { bytes }
}

/// Runs until killed.
struct Sleeper: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { try await Task.sleep(for: .seconds(3600)) }
}

/// Echoes every Int it is told, forever.
struct Echo: Skprocess {
    mutating func run() async throws {
        guard let value = try await listen(Int.self) else { return stop() }
        try await tell(value)
    }
}

/// Starts `/bin/sleep 60` as its own child, tells its pid, then returns, crashes or waits.
/// `quiet`: the sleep's output goes to /dev/null, not to this child's own pipes.
struct SpawnsSleep: Skprocess {
    var then: String
    var quiet = false
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        var pid: pid_t = 0
        let words: [String] = quiet ? ["/bin/sh", "-c", "exec /bin/sleep 60 >/dev/null 2>&1"] : ["/bin/sleep", "60"]
        let arguments: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        guard posix_spawn(&pid, words[0], nil, nil, arguments, environ) == 0 else { fatalError("posix_spawn failed") }
        try await tell(Int(pid))
        switch then {
        case "crash": fatalError("the child crashes, leaving its own child behind")
        case "wait": try await Task.sleep(for: .seconds(3600))
        default: break
        }
    }
}

struct Crasher: Skprocess {
    mutating func run() async throws { fatalError("the child gives up") }
}

/// Tells its pid, then stops itself (SIGSTOP) while it holds the share's lock.
struct ShareStopper: Skprocess {
    var share: Share<Int>
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        try await tell(Int(getpid()))
        try await share.update { value in
            raise(SIGSTOP)
            value += 1000
        }
    }
}

// MARK: - Reporting

/// Where reports go: stdout, unless a scenario closed it.
nonisolated(unsafe) var reportFD: Int32 = 1

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(reportFD, $0.baseAddress, $0.count) }
}

func descriptorTarget(_ fd: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    let count = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    return count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "closed"
}

func openDescriptorCount() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count - 1
}

/// "fd -> what it is" for each open descriptor (for a report of leaked ones).
func descriptorTargets() -> Set<String> {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return Set(names.compactMap { name in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)")).map { "\(name) -> \($0)" }
    })
}

/// The open descriptors but Dispatch's timerfds: libdispatch opens one per clock, and one for
/// its worker monitor from its manager thread, lazily, at moments of its own (seen once under
/// load, well after the baseline); the library opens none.
func descriptorsButDispatchTimers() -> Int {
    descriptorTargets().filter { !$0.hasSuffix("anon_inode:[timerfd]") }.count
}

/// The state letter and parent of process `pid`, from /proc (a zombie's too), or nil.
func processStat(_ pid: Int) -> (state: Character, parent: Int)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 1, let state = fields[0].first, let parent = Int(fields[1]) else { return nil }
    return (state, parent)
}

/// The states of this process's children (zombies included).
func childStates() -> [Character] {
    let me = Int(getpid())
    return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
        Int(entry).flatMap(processStat).flatMap { $0.parent == me ? $0.state : nil }
    }
}

/// This process's children that have exited and not been reaped.
func zombieChildren() -> Int { childStates().filter { $0 == "Z" }.count }

/// Waits (up to 2 s) until this process has no child: a process ends on its result, and its
/// child is reaped a moment later.
func awaitChildrenReaped() async throws {
    for _ in 0..<200 where !childStates().isEmpty {
        try await Task.sleep(for: .milliseconds(10))
    }
}

func processState(_ pid: Int) -> Character? { processStat(pid)?.state }

// MARK: - Scenarios

func stderrFull() async throws {
    // Our stderr is a pipe the test does not read: forwarding a child's stderr must not stall
    // the rest, nor, once the pipe breaks, kill this process with SIGPIPE.
    let noisy = try await Noisy(bytes: 1_000_000).start()
    let counted = try await Counter().start().result()
    say("counter: \(counted)")
    let sleeper = try await Sleeper().start()
    await sleeper.kill()
    _ = try await sleeper.wait()
    say("killed: \(!sleeper.isAlive)")
    say("noisy: \(try await noisy.result())")
    say("stage: full")
    _ = readLine()  // the test drains our stderr, then closes it
    say("noisy after close: \(try await Noisy(bytes: 200_000).start().result())")
    say("counter after close: \(try await Counter().start().result())")
    say("stage: done")
}

func mainGlobal() async throws {
    await withPool(workers: 2) { pool in
        do {
            let greetings = try await pool.map([1, 2, 3]) { _ in greeting }
            say("map: \(greetings.count) results")
        } catch {
            say("map error: \(String(describing: error).replacingOccurrences(of: "\n", with: " "))")
        }
        do {
            var count = 0
            for try await _ in try pool.imap([1, 2, 3], { _ in greeting }) { count += 1 }
            say("imap: \(count) results")
        } catch {
            say("imap error: \(String(describing: error).replacingOccurrences(of: "\n", with: " "))")
        }
    }
    say("stage: done")
}

func replacedBinary() async throws {
    say("stage: ready")
    _ = readLine()  // the test replaces this program's file on disk meanwhile
    say("counter: \(try await Counter().start().result())")
    let doubled = try await withPool(workers: 2) { pool in try await pool.map([1, 2, 3]) { $0 * 2 } }
    say("map: \(doubled)")
    say("stage: done")
}

func orphans() async throws {
    for then in ["return", "crash"] {
        let handle = try await SpawnsSleep(then: then).start()
        let pid = try await handle.listen(Int.self, timeout: .seconds(30)) ?? -1
        _ = try? await handle.result()
        say("\(then): \(pid)")
    }
    let waiting = try await SpawnsSleep(then: "wait").start()
    say("wait: \(try await waiting.listen(Int.self, timeout: .seconds(30)) ?? -1)")
    say("stage: ready")
    try await Task.sleep(for: .seconds(3600))  // the test kills this process now
}

/// A child's own child that does not hold the child's output: the process ends on its result
/// (before the child's exit), and this program exits at once. The grandchild must not outlive it.
func orphanAtExit() async throws {
    let handle = try await SpawnsSleep(then: "return", quiet: true).start()
    let pid = try await handle.listen(Int.self, timeout: .seconds(30)) ?? -1
    _ = try? await handle.result()
    say("quiet: \(pid)")
    exit(0)
}

func closedStdout() async throws {
    // A daemon's close(1) before the library opens anything: no descriptor of the library's
    // may take that number, or the program's own prints land in a child's channel.
    close(1)
    reportFD = 2
    let counted = try await Counter().start().result()
    let echo = try await Echo().start()
    var echoed = 0
    for value in 0..<20 {
        try await echo.tell(value)
        print("this goes nowhere \(value)")
        fflush(nil)
        if try await echo.listen(Int.self, timeout: .seconds(10)) == value { echoed += 1 }
    }
    await echo.kill()
    say("counter: \(counted)")
    say("echoed: \(echoed)")
    for fd: Int32 in 0...2 { say("fd \(fd): \(descriptorTarget(fd))") }
    say("stage: done")
}

func tooManyDescriptors() async throws {
    _ = try await Counter().start().result()  // the library's own long-lived descriptors exist now
    try await awaitChildrenReaped()
    // Dispatch opens a clock's timerfd at its first sleep: that one happens now, not later.
    try await Task.sleep(for: .milliseconds(1))
    let baseline = openDescriptorCount()
    let baselineTargets = descriptorTargets()
    let baselineButTimers = descriptorsButDispatchTimers()
    var original = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &original)
    for extra in 0..<10 {
        var tight = original
        tight.rlim_cur = rlim_t(baseline + extra)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &tight)
        var outcome: String
        do {
            outcome = "result \(try await Counter().start().result())"
        } catch {
            outcome = "\(type(of: error)): \(String(describing: error).replacingOccurrences(of: "\n", with: " "))"
            if let error = error as? ProcessingError { outcome += " errno=\(error.errno.map(String.init) ?? "none")" }
        }
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &original)
        try await awaitChildrenReaped()
        // The reactor closes a reaped child's descriptors just after the reap: a moment later.
        for _ in 0..<200 where descriptorsButDispatchTimers() > baselineButTimers {
            try await Task.sleep(for: .milliseconds(10))
        }
        let leaked = descriptorsButDispatchTimers() - baselineButTimers
        let what = leaked == 0 ? "" : " (\(descriptorTargets().subtracting(baselineTargets).sorted().joined(separator: ", ")))"
        say("limit +\(extra): \(outcome) | zombies: \(zombieChildren()) | leaked fds: \(leaked)\(what)")
    }
    say("stage: done")
}

func sigchldIgnored() async throws {
    signal(SIGCHLD, SIG_IGN)
    say("counter: \(try await Counter().start().result())")
    do {
        _ = try await Crasher().start().result()
        say("crash: no error")
    } catch {
        say("crash: \(String(describing: error).replacingOccurrences(of: "\n", with: " "))")
    }
    say("stage: done")
}

func shareStalled() async throws {
    let share = try await Share(0)
    let stopper = try await ShareStopper(share: share).start()
    let pid = try await stopper.listen(Int.self, timeout: .seconds(30)) ?? -1
    while processState(pid) != "T" { usleep(1000) }  // it holds the lock, stopped
    // More updaters than the cooperative pool has threads: none may occupy one while it waits.
    let waiting = ProcessInfo.processInfo.activeProcessorCount + 2
    let updaters = (0..<waiting).map { _ in Task.detached { try await share.update { $0 += 1 } } }
    try await Task.detached { try await Task.sleep(for: .milliseconds(20)) }.value
    say("sleep on the pool: returned")
    do {
        try await share.update.timeout(.milliseconds(50))() { $0 += 1 }
        say("timeout: none")
    } catch {
        say("timeout: \(type(of: error))")
    }
    do {
        _ = try await share.read.timeout(.milliseconds(50))()
        say("read timeout: none")
    } catch {
        say("read timeout: \(type(of: error))")
    }
    for updater in updaters { updater.cancel() }
    var cancelled = 0
    for updater in updaters {
        if case .failure(let error) = await updater.result, error is CancellationError { cancelled += 1 }
    }
    say("cancelled: \(cancelled) of \(waiting)")
    kill(pid_t(pid), SIGCONT)
    _ = try await stopper.wait()
    say("after: \(try await share.update { value -> Int in value += 1; return value })")
    say("stage: done")
}

/// Logs at three levels; the default minimum level keeps two.
struct Chatty: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        log("hello from a child")
        log("careful", level: .warning)
        log("not shown", level: .debug)
    }
}

/// The default log handler: lines on stderr, from a child and from the main process.
func logDefault() async throws {
    log("hello from main")
    try await Chatty().start().wait()
    await ProcessLog.flush()
    say("stage: done")
}

/// Prints `lines` numbered lines, one line to stderr, and a last line without a newline.
struct Printer: Skprocess {
    var tag: String
    var lines: Int
    var processConfig: ProcessConfig
    mutating func run() async throws {
        for index in 0..<lines { print("\(tag) line \(index)") }
        FileHandle.standardError.write(Data("\(tag) to stderr\n".utf8))
        print("\(tag) unended", terminator: "")
    }
}

/// Each output mode, and two children forwarding at once.
func outputModes() async throws {
    func printer(_ tag: String, _ mode: ChildOutput, lines: Int = 3) -> Printer {
        Printer(tag: tag, lines: lines, processConfig: ProcessConfig(runs: 1, stdout: mode, stderr: mode))
    }
    print("parent before")
    try await printer("O", .forward, lines: 1).start().wait()
    print("parent after")
    async let first = printer("A", .forward, lines: 2000).start().wait()
    async let second = printer("B", .forward, lines: 2000).start().wait()
    _ = try await (first, second)
    try await printer("I", .inherit).start().wait()
    say("")  // the inherited child's last line had no newline
    try await printer("D", .discard).start().wait()
    say("stage: done")
}

/// Squares an item after a short nap, so that a map of 100 takes a moment.
struct SlowSquare: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(3))
        return x * x
    }
}

/// A map with a progress bar on stderr (a terminal or a pipe, as the test chose).
func progressBar() async throws {
    let squares = try await withPool(workers: 2) { pool in
        try await pool.map.chunkSize(2).progressBar("squares")(1...100, SlowSquare())
    }
    say("sum: \(squares.reduce(0, +))")
}

// MARK: - Process groups and Ctrl-C

/// A report from a child: to fd 1 itself (`reportFD`, a top-level variable, is not set in a
/// child, which never runs top-level code).
func childSay(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Runs short runs until stopped; says so when its `onFinish` runs (a graceful end).
struct GroupWorker: Skprocess {
    var stubborn = false
    var processConfig: ProcessConfig { ProcessConfig(stdout: .inherit) }
    mutating func run() async throws {
        if currentRun == 0 { try await tell(getpid()) }
        // A stubborn worker's run never ends, so it cannot stop gracefully.
        try await Task.sleep(for: stubborn ? .seconds(3600) : .milliseconds(20))
    }
    mutating func onFinish() async throws { childSay("worker-finished: yes") }
}

/// An actor process whose shutdown says it ran (or, stubborn, never ends).
distributed actor GroupActor: ProcessActorWithParameters {
    struct Parameters: Codable, Sendable { var stubborn: Bool }
    let stubborn: Bool

    init(actorSystem: ProcessActorSystem, parameters: Parameters) {
        self.actorSystem = actorSystem
        stubborn = parameters.stubborn
    }

    distributed func processID() -> Int32 { getpid() }

    func shutdown() async throws {
        if stubborn { try await Task.sleep(for: .seconds(3600)) }
        childSay("actor-shutdown: yes")
    }
}

/// A process group with a worker, an actor process and a pool, run until a signal: the test
/// sends SIGINT (once, or twice when `stubborn` members cannot end gracefully).
func processGroup(stubborn: Bool) async throws {
    try await ProcessGroup.run(gracePeriod: .seconds(30)) { group in
        let worker = try await group.start(GroupWorker(stubborn: stubborn))
        let workerPID = try await worker.listen(Int32.self)!
        let system = group.add(ProcessActorSystem())
        let actor = try await system.spawn(GroupActor.self, parameters: .init(stubborn: stubborn))
        let actorPID = try await actor.processID()
        let pool = group.add(Pool(workers: 2))
        _ = try await pool.map([1, 2, 3], SlowSquare())
        say("pids: \(workerPID),\(actorPID)")
        say("ready: yes")
        await group.waitUntilStopping()
        say("body-saw-stop: yes")
        // A stubborn body ignores the stop (the second SIGINT ends the program anyway).
        if stubborn { try? await Task.sleep(for: .seconds(3600)) }
    }
    say("after-run: this line must not appear, the program ends by the signal")
}

// MARK: -

let scenarios: [String: () async throws -> Void] = [
    "stderr-full": stderrFull,
    "main-global": mainGlobal,
    "replaced-binary": replacedBinary,
    "orphans": orphans,
    "orphan-at-exit": orphanAtExit,
    "closed-stdout": closedStdout,
    "emfile": tooManyDescriptors,
    "sigchld-ignored": sigchldIgnored,
    "share-stalled": shareStalled,
    "log-default": logDefault,
    "output-modes": outputModes,
    "progress-bar": progressBar,
    "group-sigint": { try await processGroup(stubborn: false) },
    "group-sigint-twice": { try await processGroup(stubborn: true) },
    "remote-map": remoteMap,
]

let name = CommandLine.arguments.dropFirst().first ?? ""
guard let scenario = scenarios[name] else {
    say("usage: ProcessingFixture <\(scenarios.keys.sorted().joined(separator: "|"))>")
    exit(2)
}
do {
    try await scenario()
} catch {
    say("error: \(String(describing: error).replacingOccurrences(of: "\n", with: " "))")
    exit(1)
}

// MARK: - Remote hosts

/// A long map on two test hosts (scripts/test-hosts; their ssh configuration in
/// PROCESSING_TEST_SSH_CONFIG), for a test that kills this program while it runs.
func remoteMap() async throws {
    let config = ProcessInfo.processInfo.environment["PROCESSING_TEST_SSH_CONFIG"] ?? ""
    let pool = try Pool(workers: [.ssh("host-1", count: 2, options: ["-F", config]),
                                  .ssh("host-2", count: 2, options: ["-F", config])])
    let reported = Synchronization.Atomic(false)
    _ = try await pool.map.chunkSize(1).progress { progress in
        if progress.completed >= 4, !reported.exchange(true, ordering: .relaxed) { say("mapping: yes") }
    }(Array(1...10_000), SlowSquare())
}
