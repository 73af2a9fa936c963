// A tour of Processing on the seeds' own examples. Run it with `swift run Tour`.
//
// Each process below is a Codable type; its lifecycle hooks run in a child process (this
// program's binary, re-executed), and the parent talks to it through its handle.
import Distributed
import Foundation
import Processing

// MARK: 1. A counter that runs 10 times (seed 000's first example)

struct Counter: Skprocess {
    var counter = 0
    var processConfig = ProcessConfig(runs: 10)

    mutating func run() async throws { counter += 1 }
    func result() async throws -> Int { counter }
}

// MARK: 2. A command loop: the parent tells, the child answers (seed 001)

struct CommandLoop: Skprocess {
    var command: String?
    var printed = 0

    mutating func prerun() async throws {
        command = try await listen(String.self, timeout: .seconds(5))
    }

    mutating func run() async throws {
        switch command {
        case "stop": stop()
        case "print": printed += 1; print("  child: hello (\(printed))")
        default: throw UnknownCommand(command: command)
        }
    }

    mutating func postrun() async throws {
        command = nil
        try await tell("command received")
    }

    func result() async throws -> Int { printed }
}

struct UnknownCommand: Error, Codable { var command: String? }

// MARK: 3. A process that stops itself

struct Countdown: Skprocess {
    var from = 5
    var seen: [Int] = []

    mutating func run() async throws {
        seen.append(from - currentRun)
        if from - currentRun == 1 { stop() }  // finishes this run, then onFinish and result
    }

    func result() async throws -> [Int] { seen }
}

// MARK: 4. A crash does not take the parent with it

struct Crasher: Skprocess {
    mutating func run() async throws { fatalError("the child gives up") }
}

// MARK: 5. A process that retries by itself (lives), resuming where it failed

struct FlakyFetcher: Skprocess {
    var attemptsFile = FileManager.default.temporaryDirectory.appendingPathComponent("tour-\(UUID())").path
    var pages: [Int] = []
    var processConfig = ProcessConfig(runs: 5, lives: 3)

    mutating func run() async throws {
        // Page 2 fails the first two times it is fetched. A retry is a new child that resumes
        // from the last completed run, so only a file remembers earlier attempts.
        if currentRun == 2 {
            let attempts = ((try? String(contentsOfFile: attemptsFile, encoding: .utf8)) ?? "") + "x"
            try attempts.write(toFile: attemptsFile, atomically: true, encoding: .utf8)
            if attempts.count <= 2 { throw FetchFailed(page: 2) }
        }
        pages.append(currentRun)
    }

    func result() async throws -> [Int] { pages }
}

struct FetchFailed: Error, Codable { var page: Int }

// MARK: 6. A section that hangs is cut off by the parent (timeouts)

struct Stuck: Skprocess {
    var processConfig = ProcessConfig(runs: 3, timeouts: .init(run: .milliseconds(200)))
    mutating func run() async throws {
        if currentRun == 1 { try await Task.sleep(for: .seconds(3600)) }
    }
}

// MARK: 8. A Pool: many items over reusable worker processes

struct Square: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int { x * x }
}

// MARK: 9. A Share: one state for every process (seed 000's counter)

struct Stats: Codable, Sendable {
    var counter = 0
    var log: [String] = []
}

struct IncrementProcess: Skprocess {
    var share: Share<Stats>
    var processConfig = ProcessConfig(runs: 10)

    mutating func run() async throws {}
    mutating func postrun() async throws {
        try await share.update { $0.counter += 1 }   // atomic across every process
    }
}

print("1. Counter with runs = 10")
let counter = try await Counter().start()
print("   result:", try await counter.result())

print("2. Command loop")
let loop = try await CommandLoop().start()
for _ in 0..<3 {
    try await loop.tell("print")
    let answer = try await loop.listen(String.self, timeout: .seconds(5))
    print("  parent heard:", answer ?? "nothing")
}
try await loop.tell("stop")
print("   printed:", try await loop.result())

print("3. A process that stops itself")
print("   seen:", try await Countdown().start().result())

print("4. A crashing child")
do {
    _ = try await Crasher().start().result()
} catch let error as ProcessCrashError {
    print("   caught:", error.cause)
}

print("5. lives = 3: two failures, then success")
let fetcher = FlakyFetcher()
let pages = try await withProcess(fetcher) { try await $0.result() }
try? FileManager.default.removeItem(atPath: fetcher.attemptsFile)
print("   pages:", pages, "(each fetched once: retries resume after the last completed run)")

print("6. timeouts.run = 200 ms on a run that hangs")
let stuck = try await Stuck().start()
do {
    try await stuck.result()
} catch let error as ProcessTimeoutError {
    print("   caught:", error)
}

print("7. Timers and modifiers")
let timed = try await Counter().start()
let total = try await timed.result.timeout(.seconds(10))()        // ResultTimeoutError if late
print("   result within 10 s:", total, "| runs timed:", timed.timers.run.count,
      "| mean full run:", timed.timers.fullRun.mean)
let background = try await Countdown().start().result.background()()  // a Future
print("   a background result:", try await background.value)

print("8. A Pool of 2 workers")
let (squares, firstDone) = try await withPool(workers: 2) { pool in
    let squares = try await pool.map(1...10, Square())
    var firstDone: Int?
    for try await y in try pool.unorderedIMap([9, 1, 5], Square()) { firstDone = firstDone ?? y }
    return (squares, firstDone)
}
print("   squares:", squares, "| first of the unordered map:", firstDone ?? 0)

print("9. Closures, star(), processes, and the pool's modifiers")
try await withPool(workers: 2) { pool in
    let doubled = try await pool.map(1...5) { $0 * 2 }                 // a non-capturing closure
    let sums = try await pool.star().map([(1, 2), (3, 4)]) { (a: Int, b: Int) in a + b }
    let counts = try await pool.map([Counter(), Counter()])           // each runs its lifecycle
    print("   doubled:", doubled, "| sums:", sums, "| counters:", counts)
    let factor = doubled.count
    do {
        _ = try await pool.map(1...5) { $0 * factor }                 // captures: refused
    } catch let error as ProcessingError {
        print("   a capturing closure:", error.code)
    }
    _ = try await pool.map.chunkSize(25).itemTimeout(.seconds(5)).retries(1)
        .progress { print("   progress:", $0) }(1...100, Square())        // 25/100 ... 100/100
}

print("10. A Share: 10 processes × 10 runs, one counter")
let (shared, sharedLog) = try await withShare(Stats()) { share in     // stopped when the scope ends
    var workers: [ProcessHandle<IncrementProcess>] = []
    for _ in 0..<10 { workers.append(try await IncrementProcess(share: share).start()) }
    for worker in workers { try await worker.wait() }
    try await share.update { $0.log.append("10 processes done") }
    return (try await share.counter, try await share.log)
}
print("   counter:", shared, "| log:", sharedLog)

// MARK: 11. A pipe pair: a direct channel to one process

struct PipeDoubler: Skprocess {
    var pipe: ProcessPipe.Point                                  // its descriptor crosses with it
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        while let x = try await pipe.recv(Int?.self) { try await pipe.send(x * 2) }
    }
}

print("11. A pipe pair")
let (anchor, point) = try ProcessPipe.pair()
let doubler = try await PipeDoubler(pipe: point).start()        // the point moves to the child
var doubledOverPipe: [Int] = []
for x in [1, 2, 3] {
    try await anchor.send(Optional(x))
    doubledOverPipe.append(try await anchor.recv(Int.self))
}
try await anchor.send(Int?.none)
try await doubler.wait()
print("   doubled over the pipe:", doubledOverPipe)

// MARK: 12. autoreconnect: a live resource crosses as its parameters and reconnects

struct JournalReader: Skprocess {
    // Reconnect every Reconnector before the first hook. Passwords, when a resource needs
    // one, go here by type and property name (["MyApp.Database": ["*": "…", "audit": "…"]]):
    // this static is read in the child, so no password ever crosses the process boundary.
    static let autoreconnect = Autoreconnect()
    var journal: OpenFile                                         // crosses as path + offset
    var processConfig = ProcessConfig(runs: 1)
    var entries: [String] = []
    mutating func run() async throws {
        let rest = String(decoding: try journal.read(), as: UTF8.self)   // reopened, same offset
        entries = rest.split(separator: "\n").map(String.init)
    }
    func result() async throws -> [String] { entries }
}

print("12. autoreconnect")
let journalPath = FileManager.default.temporaryDirectory.appendingPathComponent("tour-journal-\(getpid()).txt").path
try Data("header\nfirst entry\nsecond entry\n".utf8).write(to: URL(fileURLWithPath: journalPath))
let journal = try OpenFile(path: journalPath)
_ = try journal.read(upTo: 7)                                    // the parent reads the header
let entriesRead = try await JournalReader(journal: journal).start().result()
try? FileManager.default.removeItem(atPath: journalPath)
print("   the child read on from offset 7:", entriesRead)

// MARK: 13. Logging in the main process (seed 001's shared logger, the Swift way)

struct Reporter: Skprocess {
    var id: Int
    var processConfig = ProcessConfig(runs: 3)
    mutating func run() async throws {
        log("reporter \(id): run \(currentRun) done")             // reaches the main process
        if currentRun == 2 { log("reporter \(id): finishing", level: .notice) }
    }
}

print("13. Logging from 4 processes, in order per process")
ProcessLog.setHandler { entry in                                // default: a line on stderr
    print("   \(entry.process)[\(entry.pid)] \(entry.level): \(entry.message)")
}
try await withThrowingTaskGroup(of: Void.self) { group in
    for id in 1...4 { group.addTask { try await Reporter(id: id).start().wait() } }
    try await group.waitForAll()
}
log("all reporters done")                                       // the main process's own entry
await ProcessLog.flush()
ProcessLog.setHandler(nil)

// MARK: 14. A timeline of a map: what each worker did, and when

struct SlowSquare: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(x % 7 == 0 ? 20 : 2))   // some items are slow
        return x * x
    }
}

print("14. A timeline of a 2-worker map")
let timeline = FileManager.default.temporaryDirectory.appendingPathComponent("tour-map-\(getpid()).json").path
let slowSquares = try await withPool(workers: 2) { pool in
    try await pool.map.chunkSize(8).trace(to: timeline)(0..<200, SlowSquare())
}
print("   \(slowSquares.count) squares; timeline written to \(timeline)")
print("   (open it in https://ui.perfetto.dev or chrome://tracing; an SVG of it is beside it)")

// MARK: 15. A relay: a pipeline of processes with backpressure (seed 003)

struct Numbers: RelayActor {                        // a first stage: its loop() is its life
    typealias Output = Int
    mutating func loop() async throws {
        for i in 0..<100_000 { try await send(i) }  // waits while both squarers are full
    }
}

struct Squarer: RelayActor {                        // two of these share the work
    typealias Output = Int
    mutating func recv(_ x: Int) async throws { try await send(x * x) }
}

struct Summer: RelayActor {                         // the last stage: sends nothing
    var total = 0
    mutating func startup() async throws { log("ready") }
    mutating func recv(_ x: Int) async throws { total &+= x }
    mutating func shutdown() async throws { log("total \(total)") }   // logged in the main process
}

print("15. A relay: Numbers → 2 × Squarer → Summer, 100,000 messages")
let relay = Relay(maxsize: 256)
try relay.connect(Numbers(), [Squarer(), Squarer()], Summer())
let relayClock = ContinuousClock.now
try await relay.start { control in
    print("   stages: \(control.stages)")
}
await ProcessLog.flush()
print("   done in \(ContinuousClock.now - relayClock), spawns included")

// MARK: 16. A message process: a distributed actor in a child process (seed 004)

distributed actor MyProcess: ProcessActor {          // valkka's MessageProcess, done with Swift's own tool
    var seen: [String] = []
    func startup() async throws { log("backend up") }                    // preRun__
    distributed func myStuff(parameter: String) async throws -> Int {    // c__myStuff: runs in the child
        seen.append(parameter)
        try await actorSystem.sendOut("got \(parameter)")                 // send_out__, read with getPipe()
        return seen.count
    }
    func shutdown() async throws { log("backend saw \(seen)") }          // postRun__
}

print("16. A message process: myStuff in the parent runs c__myStuff in the child")
try await ProcessGroup.run { group in                // MainContext: ends what it owns, Ctrl-C included
    let system = group.add(ProcessActorSystem())
    let backend = try await system.spawn(MyProcess.self, name: "my-process")
    let pipe = try system.messages(from: backend, as: String.self)
    for parameter in ["gotcha!", "again"] {
        let count = try await backend.myStuff(parameter: parameter)
        print("   myStuff(\(parameter)) → \(count)")
    }
    try await system.stop(backend)                    // pending calls finish, then shutdown()
    for try await message in pipe { print("   from the backend: \(message)") }
}
await ProcessLog.flush()

// MARK: 17. Other hosts: one pool over this machine and two hosts, through ssh

struct WhereItRan: PoolWork {                        // runs wherever its worker runs
    func callAsFunction(_ x: Int) async throws -> String {
        try await Task.sleep(for: .milliseconds(20))  // an item's work
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "?"
        return "\(ProcessInfo.processInfo.hostName) (\(namespace))"
    }
}

print("17. Other hosts: one pool over this machine and two hosts, through ssh")
let tourHosts = (ProcessInfo.processInfo.environment["PROCESSING_TOUR_HOSTS"] ?? "").split(separator: " ").map(String.init)
if tourHosts.count < 2 {
    print("   skipped: set PROCESSING_TOUR_HOSTS=\"me@host-a me@host-b\" (hosts that ssh reaches with a key;")
    print("   PROCESSING_TOUR_SSH_OPTIONS for ssh's options, scripts/test-hosts makes such hosts here)")
} else {
    let sshOptions = (ProcessInfo.processInfo.environment["PROCESSING_TOUR_SSH_OPTIONS"] ?? "").split(separator: " ").map(String.init)
    let remotePool = try Pool(workers: [.local(2)] + tourHosts.prefix(2).map { .ssh($0, count: 2, options: sshOptions) })
    let placesClock = ContinuousClock.now
    let places = try await remotePool.map(1...200, WhereItRan())   // the host's build is found or copied first
    for (place, count) in Dictionary(grouping: places, by: { $0 }).mapValues(\.count).sorted(by: { $0.key < $1.key }) {
        print("   \(count) items on \(place)")
    }
    print("   done in \(ContinuousClock.now - placesClock), ssh connections included")
    await remotePool.close()
}

// MARK: 18. Spare workers: a start without a spawn

struct Ping: Skprocess {                             // as small as a process gets
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> String { "pong" }
}

print("18. Spare workers: a start without a spawn")
func startToResult(_ times: Int) async throws -> Duration {
    var total = Duration.zero
    for _ in 0..<times {
        let start = ContinuousClock.now
        _ = try await Ping().start().result()
        total += ContinuousClock.now - start
        try await SpareWorkers.warm()                // between starts, wait for a ready spare
    }
    return total / times
}
let coldStart = try await startToResult(10)          // each start spawns a worker
SpareWorkers.keep(1)                                 // one idle worker, replaced when taken
try await SpareWorkers.warm()
let warmStart = try await startToResult(10)          // each start takes the spare
await SpareWorkers.release()                         // end the idle one, keep none
let milliseconds = { (duration: Duration) in String(format: "%.1f ms", duration / .milliseconds(1)) }
print("   start → result: \(milliseconds(coldStart)) spawning a worker, \(milliseconds(warmStart)) on a spare")
