import Distributed
import Foundation
import Synchronization
import Testing
@testable import Processing

// Every ```swift block of README.md, as it is there, with as little around it as makes it run:
// its types in the `Readme` namespace (so that their names clash with no other test's), its
// statements in a function that returns what the README's comments promise. The last test
// checks that each block's lines appear here in order, so the README cannot drift from code
// that runs.

/// The README's types.
enum Readme {}

// MARK: A process is a type

extension Readme {
struct Counter: Skprocess {
    var counter = 0
    var processConfig = ProcessConfig(runs: 10)

    mutating func run() async throws { counter += 1 }
    func result() async throws -> Int { counter }
}

static func aProcessIsAType() async throws -> Int {
let handle = try await Counter().start()   // a child process runs it
let total = try await handle.result()       // 10
return total
}
}

// MARK: Talking to a running process

extension Readme {
struct CommandLoop: Skprocess {
    var command: String?
    var printed = 0

    mutating func prerun() async throws {
        command = try await listen(String.self, timeout: .seconds(5))
    }
    mutating func run() async throws {
        switch command {
        case "stop": stop()            // finish this run, then onFinish and result
        case "print": printed += 1
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

static func talking() async throws -> Int {
let loop = try await CommandLoop().start()
for _ in 0..<3 {
    try await loop.tell("print")
    _ = try await loop.listen(String.self, timeout: .seconds(5))   // "command received"
}
try await loop.tell("stop")
let printed = try await loop.result()   // 3
return printed
}
}

// MARK: Retries, time-outs and scoped lifetimes

func fetch(page: Int) async throws -> Int { page * 10 }   // your network call

extension Readme {
struct FlakyFetcher: Skprocess {
    var pages: [Int] = []
    var processConfig = ProcessConfig(
        runs: 5,
        joinIn: .seconds(60),                     // then stop gracefully
        joinGrace: .seconds(5),                   // ... or be killed 5 s later
        lives: 3,                                 // two retries
        timeouts: .init(run: .seconds(2)))        // a run that takes longer is killed
    mutating func run() async throws { pages.append(try await fetch(page: currentRun)) }
    func result() async throws -> [Int] { pages }
}

static func retries() async throws -> [Int] {
let pages = try await FlakyFetcher().start().result()   // [0, 10, 20, 30, 40]
return pages
}
}

// MARK: Modifiers

/// (At file scope, with the tests' `Counter`, which is the README's.)
func readmeModifiers() async throws -> ([Int], ProcessHandle<Counter>) {
let counter = try await Counter().start()
let r  = try await counter.result()                          // async, the default
let r2 = try await counter.result.timeout(.seconds(10))()    // ResultTimeoutError when late
let f  = counter.result.background()()                       // a Future, running now
let v  = try await f.value                                   // ... or f.wait() from sync code
let ended = try await counter.wait.timeout(.seconds(1)).background()().value   // composed
return ([r, r2, v, ended ? 1 : 0], counter)
}

func total(of counter: ProcessHandle<Counter>) throws -> Int {   // synchronous code
    try counter.result.sync()()                                  // blocks this thread
}

// MARK: Pool

extension Readme {
struct Square: PoolWork {                        // Codable work, found by name in workers
    func callAsFunction(_ x: Int) async throws -> Int { x * x }
}

static func pool() async throws -> [[Int]] {
var seen: [[Int]] = []
try await withPool(workers: 2) { pool in                  // nil: one worker per CPU
    let squares = try await pool.map(1...1000, Square())  // in input order
    let doubled = try await pool.map(1...1000) { $0 * 2 } // a non-capturing closure
    let sums = try await pool.star().map([(1, 2), (3, 4)]) { (a: Int, b: Int) in a + b }
    let counts = try await pool.map([Counter(), Counter()])   // Skprocess values: [10, 10]
    for try await y in try pool.unorderedIMap([9, 1, 5], Square()) { print(y) }  // fastest first
    let careful = try await pool.map
        .itemTimeout(.seconds(5))       // an item past 5 s fails; its worker is replaced
        .retries(2)                     // a crashed worker's items run again, one at a time
        .progress { print($0) }         // "250/1000", ... after each batch
        .timeout(.seconds(60))(1...1000, Square())
    seen = [Array(squares.prefix(3)), Array(doubled.prefix(3)), sums, counts, Array(careful.suffix(1))]
}
return seen
}
}

// MARK: Share

extension Readme {
struct Stats: Codable, Sendable { var counter = 0; var log: [String] = [] }

struct IncrementProcess: Skprocess {
    var share: Share<Stats>                          // crosses with the process
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws {}
    mutating func postrun() async throws { try await share.update { $0.counter += 1 } }
}

static func share() async throws -> Int {
let total = try await withShare(Stats()) { share in   // stopped when the scope ends
    var workers: [ProcessHandle<IncrementProcess>] = []
    for _ in 0..<10 { workers.append(try await IncrementProcess(share: share).start()) }
    for worker in workers { try await worker.wait() }
    return try await share.counter                    // 100
}
return total
}

static func shareModifiers() async throws -> [String] {
let stats = try await Share(Stats())
try await stats.update.timeout(.seconds(1))() { $0.log.append("at most a second") }  // or ResultTimeoutError
let snapshot = try await stats.read()
return snapshot.log
}
}

// MARK: Relays

extension Readme {
struct Numbers: RelayActor {                        // a first stage: nothing sends to it
    typealias Output = Int                          // what send(_:) takes
    mutating func loop() async throws {             // its lifetime; returning ends the stream
        for i in 0..<10_000 { try await send(i) }   // waits while the next stage is full
    }
}
struct Squarer: RelayActor {                        // a middle stage: receives and sends
    typealias Output = Int
    mutating func recv(_ x: Int) async throws { try await send(x * x) }
}
struct Total: RelayActor {                          // a last stage: sends nothing
    var total = 0
    mutating func recv(_ x: Int) async throws { total += x }
    mutating func shutdown() async throws { log("total \(total)") }   // once, after the last message
}

static func relays() async throws -> Int {
let relay = Relay(maxsize: 64)                      // at most 64 in flight per connection
try relay.connect(Numbers(), [Squarer(), Squarer()], Total())   // 1-1, 1-n, n-1 and n-m
try await relay.start { control in                  // runs in the main process meanwhile
    log("stages: \(control.stages)")                 // [["Numbers"], ["Squarer#0", "Squarer#1"], ["Total"]]
}

let squares = Relay()
try squares.connect([Squarer(), Squarer()])         // fed by the parent, read by the parent
var sum = 0
for try await x in try squares.output(as: Int.self, feeding: AsyncStream { c in
    for i in 1...100 { c.yield(i) }
    c.finish()
}) { sum += x }                                     // 338350
return sum
}
}

// MARK: Message processes

extension Readme {
distributed actor Detector: ProcessActor {                // seed 004's MessageProcess
    var frames = 0
    distributed func detect(_ frame: [UInt8]) -> Int {    // its c__detect: runs in the child
        frames += 1
        return frame.filter { $0 > 128 }.count
    }
    func shutdown() async throws { log("saw \(frames) frames") }   // postRun__, after stop
}

distributed actor Camera: ProcessActorWithParameters {
    struct Parameters: Codable, Sendable { var events: EventGroup }
    let events: EventGroup
    init(actorSystem: ProcessActorSystem, parameters: Parameters) {
        self.actorSystem = actorSystem
        events = parameters.events
    }
    distributed func capture(signalling index: Int) throws { try events.set(index) }
}

static func messageProcesses() async throws -> Int {
let system = ProcessActorSystem(callTimeout: .seconds(10))
let detector = try await system.spawn(Detector.self)       // a child process hosts it
let bright = try await detector.detect([0, 200, 255])       // 2: a call, awaited like any
try await system.stop(detector)                             // its calls finish, shutdown() runs

let events = try EventGroup(count: 10)                      // made before use, shared by index
let camera = try await system.spawn(Camera.self, parameters: .init(events: events))
try await events.withSyncIndex(setBy: camera) { index in    // reserve, wait, release
    try await camera.capture(signalling: index)
}

try await ProcessGroup.run { group in                       // seed 004's MainContext
    let workers = group.add(ProcessActorSystem())          // ended with the group
    let helper = try await workers.spawn(Detector.self)
    _ = try await helper.detect([255])
}                                                           // members end, newest first
await system.shutdown()
return bright
}
}

// MARK: Other hosts

extension Readme {
/// Compiled, not run here (it needs hosts a README reader has): HostsTests runs the same calls
/// against hosts in network namespaces.
static func otherHosts(system: ProcessActorSystem) async throws {
let pool = try Pool(workers: [.local(2), .ssh("me@host-a", count: 4), .ssh("me@host-b", count: 4)])
let squares = try await pool.map(1...1000, Square())        // in order, from all three
let handle = try await Counter().start(on: .ssh("me@host-a"))
let remote = try await system.spawn(Detector.self, on: .ssh("me@host-b"))
    _ = (squares, handle, remote)
}
}

// MARK: Spare workers

extension Readme {
/// Run in a child (`SparesExample`): spares are the whole process's.
static func spares() async throws -> Int {
SpareWorkers.keep(2)                          // two idle workers, each replaced when taken
try await SpareWorkers.warm(8)                // before a burst: wait until eight are ready
let quick = try await Counter().start()       // takes a spare: no spawn on the way
let counted = try await quick.result()        // 10
await SpareWorkers.release()                  // end the idle ones, keep none
return counted
}

struct SparesExample: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> Int { try await Readme.spares() }
}
}

// MARK: Pipe pairs

extension Readme {
struct Doubler: Skprocess {
    var pipe: ProcessPipe.Point                     // its descriptor crosses with the process
    var processConfig = ProcessConfig(runs: 1)      // one run: the loop below
    mutating func run() async throws {
        while let x = try await pipe.recv(Int?.self) { try await pipe.send(x * 2) }   // nil ends it
    }
}

static func pipe() async throws -> Int {
let (anchor, point) = try ProcessPipe.pair()          // oneWay: true for anchor → point only
let doubler = try await Doubler(pipe: point).start()  // the point moves to the child
try await anchor.send(Optional(21))
let answer = try await anchor.recv(Int.self)           // 42
try await anchor.send(Int?.none)                       // the loop ends, and so does the process
try await doubler.wait()
return answer
}
}

// MARK: autoreconnect

extension Readme {
struct Report: Skprocess {
    // Read in the child: passwords live in the program (or its environment), not in a frame.
    static let autoreconnect = Autoreconnect([
        "VaultClient": ["*": "app-secret", "audit": "audit-secret"],   // type → property → password
    ])
    var main: VaultClient                    // gets "*"
    var audit: VaultClient                   // gets its own, by property name
    var journal: OpenFile                    // reopened at the offset it had; no password
    var processConfig = ProcessConfig(runs: 1)
    var heard: [String?] = []
    mutating func run() async throws {       // all three live here
        heard = [try await main.ping("report"), try await audit.ping("report")]
        heard.append(String(decoding: try journal.read(), as: UTF8.self))
    }
    func result() async throws -> [String?] { heard }
}
}

// MARK: Logging in the main process

extension Readme {
struct Indexer: Skprocess {
    var processConfig = ProcessConfig(runs: 3)
    mutating func run() async throws {
        log("indexed batch \(currentRun)")           // Indexer[4242] info: indexed batch 0
        if currentRun == 2 { log("the index is large", level: .warning) }
    }
}

/// A stand-in for the user's own logger.
final class Recorder: Sendable {
    let lines = Synchronization.Mutex<[String]>([])
    func record(_ level: LogLevel, _ line: String) { lines.withLock { $0.append("\(level) \(line)") } }
}

/// Run in a child (`LoggingExample`): the handler is the whole process's.
static func logging() async throws -> [String] {
let myLogger = Recorder()
ProcessLog.minimumLevel = .info                      // children keep the level they start with
ProcessLog.setHandler { entry in                     // default: one line each on stderr
    myLogger.record(entry.level, "\(entry.process)[\(entry.pid)]: \(entry.message)")
}
try await Indexer().start().wait()
await ProcessLog.flush()                             // every entry so far is handled
ProcessLog.setHandler(nil)                           // back to stderr
return myLogger.lines.withLock { $0 }.map { $0.replacing(/\[\d+\]/, with: "") }
}

struct LoggingExample: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> [String] { try await Readme.logging() }
}
}

// MARK: What children print

extension Readme {
struct Greeter: Skprocess {
    var processConfig = ProcessConfig(runs: 1, stdout: .capture, stderr: .discard)
    mutating func run() async throws { print("hello") }
}

static func childOutput() async throws -> String {
let greeter = try await Greeter().start()
try await greeter.wait()
let printed = greeter.capturedOutput.stdout          // "hello\n"
let quietPool = Pool(workers: 2, stdout: .discard)   // and Pool.capturedOutput
_ = quietPool
return printed
}
}

// MARK: Lifecycle events

extension Readme {
static func events() async throws -> [String] {
var printed: [String] = []
func print(_ event: ProcessEvent) { printed.append(event.description.replacing(/\[\d+\]/, with: "")) }
let crawler = try ProcessHandle(Counter())
let events = crawler.events                   // listening from here: before start, to see the spawn
try await crawler.start()
for await event in events { print(event) }    // Counter[4242] spawned, ... Counter exited
return printed
}
}

// MARK: -

@Suite("The README's examples run, and are the README's", .timeLimit(.minutes(2)))
struct ReadmeExamplesTests {
    @Test("a process is a type; talking to it; retries")
    func processes() async throws {
        #expect(try await Readme.aProcessIsAType() == 10)
        #expect(try await Readme.talking() == 3)
        #expect(try await Readme.retries() == [0, 10, 20, 30, 40])
    }

    @Test("modifiers")
    func modifiers() async throws {
        let (values, counter) = try await readmeModifiers()
        #expect(values == [10, 10, 10, 1])
        #expect(try await onPlainThread { try total(of: counter) } == 10)
    }

    @Test("the pool")
    func pool() async throws {
        #expect(try await Readme.pool() == [[1, 4, 9], [2, 4, 6], [3, 7], [10, 10], [1_000_000]])
    }

    @Test("a share, its modifiers, a pipe")
    func shareAndPipe() async throws {
        #expect(try await Readme.share() == 100)
        #expect(try await Readme.shareModifiers() == ["at most a second"])
        #expect(try await Readme.pipe() == 42)
        #expect(try await Readme.relays() == 338350)
        #expect(try await Readme.messageProcesses() == 2)
        #expect(try await Readme.SparesExample().start().result() == 10)
    }

    @Test("logging, and what children print")
    func loggingAndOutput() async throws {
        #expect(try await Readme.LoggingExample().start().result() == [
            "info Indexer: indexed batch 0", "info Indexer: indexed batch 1", "info Indexer: indexed batch 2",
            "warning Indexer: the index is large",
        ])
        #expect(try await Readme.childOutput() == "hello\n")
        #expect(try await Readme.events() == ["Counter spawned", "Counter ready", "Counter exited"])
    }

    @Test("autoreconnect")
    func autoreconnect() async throws {
        let passwords = ["app": "app-secret", "auditor": "audit-secret"]
        let server = try VaultServer(passwords: passwords)
        defer { server.stop() }
        let path = NSTemporaryDirectory() + "processing-readme-\(UUID().uuidString)"
        try Data("header\njournal".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let journal = try OpenFile(path: path)
        _ = try journal.read(upTo: 7)
        let report = Readme.Report(main: try await VaultClient(port: server.port, user: "app", password: passwords["app"]!),
                                   audit: try await VaultClient(port: server.port, user: "auditor", password: passwords["auditor"]!),
                                   journal: journal)
        #expect(try await report.start().result() == ["PONG report as app", "PONG report as auditor", "journal"])
    }

    @Test("every swift block of README.md is in this file, line for line, in order")
    func readmeMatches() throws {
        let tests = URL(fileURLWithPath: #filePath)
        let root = tests.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let here = try String(contentsOf: tests, encoding: .utf8)
        func lines(_ text: some StringProtocol) -> [String] {
            text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("import ") }
        }
        let corpus = lines(here)
        let blocks = readme.components(separatedBy: "```swift\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        #expect(blocks.count >= 9)
        for block in blocks {
            var position = corpus.startIndex
            for line in lines(block) {
                guard let found = corpus[position...].firstIndex(of: line) else {
                    Issue.record("README line not found here (after the block's earlier lines): \(line)")
                    break
                }
                position = found + 1
            }
        }
    }
}
