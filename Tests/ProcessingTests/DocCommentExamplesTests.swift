import Distributed
import Foundation
import Testing
@testable import Processing

// Every ```swift block of the doc comments in Sources/Processing, as it is there, inside just
// enough to compile: each in a namespace of its own (their names clash), statements in a
// function, with stand-ins for what a block only names (`pool`, `items`, `myLogger`). The
// functions are compiled, not run (some block a thread, some need a server); the README's
// examples are the ones that run (ReadmeExamplesTests). The test at the end checks that each
// block's lines appear here, in order, so a doc comment cannot drift from code that compiles.
enum DocExamples {
    static let pool = Pool(workers: 1)
    static let items = [1, 2, 3]

    struct Square: PoolWork {
        func callAsFunction(_ x: Int) async throws -> Int { x * x }
    }

    struct Counter: Skprocess {
        var counter = 0
        var processConfig = ProcessConfig(runs: 10)
        mutating func run() async throws { counter += 1 }
        func result() async throws -> Int { counter }
    }
}

// MARK: Events/ProcessEvents.swift

extension DocExamples {
enum Events {
    struct Crawler: Skprocess {
        var processConfig = ProcessConfig(runs: 1)
        mutating func run() async throws {}
    }
    static func example() async throws {
let handle = try ProcessHandle(Crawler())
let events = handle.events                      // listening from here on
try await handle.start()
for await event in events { print(event) }      // Crawler[4242] spawned, ... exited
    }
}
}

// MARK: Logging/ProcessLog.swift

extension DocExamples {
enum Logging {
struct Worker: Skprocess {
    mutating func run() async throws {
        log("ready")                          // Worker[4242] info: ready
        log("disk nearly full", level: .warning)
    }
}

    final class Logger: Sendable {
        func log(level: LogLevel, _ line: String) {}
    }
    static let myLogger = Logger()

    static func handler() {
ProcessLog.minimumLevel = .debug
ProcessLog.setHandler { entry in
    myLogger.log(level: entry.level, "\(entry.process)[\(entry.pid)]: \(entry.message)")
}
    }
}
}

// MARK: Messaging/ProcessPipe.swift

extension DocExamples {
enum Pipes {
    enum Command: Codable, Sendable { case compute(Int) }
    struct PipeWorker: Skprocess {
        var pipe: ProcessPipe.Point
        var processConfig = ProcessConfig(runs: 1)
        mutating func run() async throws {
            if case .compute(let x) = try await pipe.recv(Command.self) { try await pipe.send(x * 2) }
        }
    }
    static func example() async throws {
let (anchor, point) = try ProcessPipe.pair()
let worker = try await PipeWorker(pipe: point).start()   // the point moves to the child
try await anchor.send(Command.compute(42))
let answer = try await anchor.recv(Int.self)
        _ = (worker, answer)
    }
}
}

// MARK: Relay/RelayActor.swift and Relay/Relay.swift

extension DocExamples {
enum Relays {
struct Numbers: RelayActor {                      // a first stage: nothing sends to it
    typealias Output = Int
    mutating func loop() async throws {           // its lifetime; returning ends the stream
        for i in 0..<10_000 { try await send(i) } // waits while the next stage is full
    }
}
struct Square: RelayActor {                       // a middle stage: receives and sends
    typealias Output = Int
    mutating func recv(_ x: Int) async throws { try await send(x * x) }
}
struct Sum: RelayActor {                          // a last stage: sends nothing
    var total = 0
    mutating func recv(_ x: Int) async throws { total += x }
    mutating func shutdown() async throws { log("total \(total)") }
}
    static func example() async throws {
let relay = Relay(maxsize: 64)
try relay.connect(Numbers(), [Square(), Square()], Sum())   // 1-1, 1-n, n-1 and n-m
try await relay.start { control in
    // runs in the main process while the relay runs
}
    }
}
}

// MARK: Modifiers/Modifiable.swift

extension DocExamples {
enum Modifiers {
    static func example(handle: ProcessHandle<Counter>) async throws {
let r  = try await handle.result()                          // async, the default
let r2 = try await handle.result.timeout(.seconds(10))()    // ResultTimeoutError after 10 s
let f  = handle.result.background()()                       // a Future, running now
let r3 = try handle.result.sync()()                         // blocks a non-async caller
let f2 = handle.result.timeout(.seconds(5)).background()()  // both
        _ = (r, r2, f, r3, f2)
    }
}
}

// MARK: Pool

extension DocExamples {
enum Pools {
    struct CountLines: PoolWork {
        func callAsFunction(_ path: String) async throws -> Int { 0 }
    }
    struct Image: Codable, Sendable {}
    struct Upscale: Skprocess {
        var image: Image
        var processConfig = ProcessConfig(runs: 1)
        mutating func run() async throws {}
        func result() async throws -> Int { 0 }
    }
    struct Scale: PoolWork {
    var factor: Int
    func callAsFunction(_ x: Int) async throws -> Int { x * factor }
}
    static let files = ["a.txt"]
    static let images = [Image()]

    static func trace() async throws {
let squares = try await pool.map.trace(to: "squares.json")(1...10_000, Square())
        _ = squares
    }

    static func poolType() async throws {
let pool = Pool(workers: 4)                                   // nil: one per active CPU
let squares = try await pool.map(1...1000, Square())           // Square: a PoolWork
for try await count in try pool.imap(files, CountLines()) { print(count) }
await pool.close()
        _ = squares
    }

    static func mapOperation() async throws {
let squares = try await pool.map(1...100, Square())
let doubled = try await pool.map(1...100) { $0 * 2 }
let results = try await pool.map(images.map { Upscale(image: $0) })   // each runs its lifecycle
let soon    = pool.map.timeout(.seconds(30)).background()(1...100, Square())
        _ = (squares, doubled, results, soon)
    }

    static func blockingResults() throws {
for outcome in try pool.imap.sync()(items, Square()) {
    print(try outcome.get())
}
    }

    static func star() async throws {
let sums = try await pool.star().map([(1, 2), (3, 4)]) { (a: Int, b: Int) in a + b }
        _ = sums
    }

    static func streams() async throws {
for try await y in try pool.imap(items, Square()) { print(y) }              // input order
for try await y in try pool.unorderedIMap(items, { $0 * 2 }) { print(y) }   // fastest first
for try await y in try pool.imap.timeout(.seconds(60))(items, Square()) { print(y) }
for outcome in try pool.imap.sync()(items, Square()) { print(try outcome.get()) }  // blocking
    }

    static func work() async throws {
let scaled = try await pool.map(1...100, Scale(factor: 3))
        _ = scaled
    }

    static func progressBar() async throws {
let squares = try await pool.map.progressBar("squares")(1...10_000, Square())
        _ = squares
    }
}
}

// MARK: Process

extension DocExamples {
enum Processes {
    struct Configured: Skprocess {
var processConfig = ProcessConfig(runs: 10, lives: 3)
        mutating func run() async throws {}
    }

struct Counter: Skprocess {
    var counter = 0
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws { counter += 1 }
    func result() async throws -> Int { counter }
}
    static func start() async throws {
let handle = try await Counter().start()
let total = try await handle.result()   // 10
        _ = total
    }

    static func scoped() async throws {
let total = try await withProcess(Counter()) { counter in
    try await counter.result()
}
        _ = total
    }
}
}

// MARK: Reconnect

extension DocExamples {
enum Reconnecting {
    final class Database: Reconnector {
        var isConnected: Bool { false }
        func reconnect(password: String?) async throws {}
    }

struct Report: Skprocess {
    static let autoreconnect = Autoreconnect([
        "MyApp.Database": ["*": "secret", "analytics": "other secret"],
    ])
    var main: Database
    var analytics: Database
    mutating func run() async throws {       // both live again here
        print(main.isConnected, analytics.isConnected)
    }
}

    enum VaultError: Error { case refused }

final class Vault: Reconnector {
    let connection: TCPConnection
    let user: String
    var isConnected: Bool { connection.isConnected }
    func reconnect(password: String?) async throws {
        try await connection.reconnect(password: nil)
        try await connection.send("LOGIN \(user) \(password ?? "")\n")
        guard try await connection.receiveLine() == "OK" else { throw VaultError.refused }
    }
}

    static func examples() async throws {
let credentials: ReconnectCredentials = [
    "MyApp.Database": ["*": "secret", "analytics": "other secret"],
]
let log = try OpenFile(path: "/tmp/run.log", mode: .append, create: true)
try log.write("started\n")
let connection = try await TCPConnection(host: "127.0.0.1", port: 6379)
try await connection.send("PING\n")
let reply = try await connection.receiveLine()
        _ = (credentials, reply)
    }
}
}

// MARK: Runtime/ProcessingLimits.swift

extension DocExamples {
    static func limits() {
ProcessingLimits.maximumMessageSize = 64 << 20   // refuse messages over 64 MiB
ProcessingLimits.mailboxCapacity = 256 << 20     // let a handle queue up to 256 MiB unread
    }
}

// MARK: Share

extension DocExamples {
enum Sharing {
struct Stats: Codable, Sendable { var counter = 0; var log: [String] = [] }

struct Worker: Skprocess {
    var share: Share<Stats>
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws {
        try await share.update { $0.counter += 1; $0.log.append("run \(currentRun)") }
    }
}

    static func share() async throws {
let share = try await Share(Stats())
for _ in 0..<10 { _ = try await Worker(share: share).start() }   // wait for them, then:
let total = try await share.counter                                 // 100
        _ = total
    }

    static func scoped() async throws {
let total = try await withShare(Stats()) { share in
    _ = try await withProcess(Worker(share: share)) { try await $0.wait() }
    return try await share.counter
}
        _ = total
    }
}
}

// MARK: The DocC articles (Sources/Processing/Processing.docc)

extension DocExamples {
enum Articles {
    static func overview() async throws {
let total = try await Counter().start().result()   // 10, computed in a child process
        _ = total
    }

struct CommandLoop: Skprocess {
    var command: String?
    mutating func prerun() async throws { command = try await listen(String.self) }
    mutating func run() async throws { if command == "stop" { stop() } }
    mutating func postrun() async throws { try await tell("done: \(command ?? "")") }
}

    static func processes() async throws {
let loop = try await CommandLoop().start()
try await loop.tell("work")
let answer = try await loop.listen(String.self)     // "done: work"
try await loop.tell("stop")
try await loop.wait()
        _ = answer
    }

    struct MyError: Error, Codable {}

    static func ownError(handle: ProcessHandle<Counter>) async throws {
do {
    _ = try await handle.result()
} catch let error as RunError {
    if let mine = error.underlying?.value as? MyError { print(mine) }   // your own, decoded
    print("failed in run \(error.currentRun)")                  // after every life was used
}
    }

    static func pools() async throws {
try await withPool(workers: 2) { pool in
    let squares = try await pool.map(1...1000, Square())      // in input order
    for try await y in try pool.unorderedIMap([9, 1, 5], Square()) { print(y) }
    _ = squares
}
    }

struct Stats: Codable, Sendable { var counter = 0 }

    static func sharing() async throws {
let share = try await Share(Stats())
try await share.update { $0.counter += 1 }
let counter = try await share.counter
        _ = counter
    }

    struct PipeDoubler: Skprocess {
        var pipe: ProcessPipe.Point
        var processConfig = ProcessConfig(runs: 1)
        mutating func run() async throws {
            while let x = try await pipe.recv(Int?.self) { try await pipe.send(x * 2) }
        }
    }

    static func pipes() async throws {
let (anchor, point) = try ProcessPipe.pair()
let doubler = try await PipeDoubler(pipe: point).start()   // the point moves to the child
try await anchor.send(Optional(21))
let doubled = try await anchor.recv(Int.self)              // 42
        _ = (doubler, doubled)
    }

struct JournalReader: Skprocess {
    static let autoreconnect = Autoreconnect()
    var journal: OpenFile                                 // crosses as path + offset
    mutating func run() async throws {
        let rest = try journal.read()                     // reopened at the same offset
        print(rest.count)
    }
}

    final class Logger: Sendable {
        func record(_ level: LogLevel, _ line: String) {}
    }
    static let myLogger = Logger()

    static func logging() async throws {
ProcessLog.setHandler { entry in
    myLogger.record(entry.level, "\(entry.process)[\(entry.pid)]: \(entry.message)")
}
let handle = try ProcessHandle(Counter())
let events = handle.events
try await handle.start()
for await event in events { print(event) }
    }
}
}

// MARK: Actors/ProcessActor.swift, Actors/ProcessActorSystem.swift

struct Box: Codable, Sendable {}
func findBoxes(_ frame: [UInt8]) -> [Box] { [] }

extension DocExamples {
enum ActorDeclaration {
    static let system = ProcessActorSystem()
distributed actor Detector: ProcessActor {
    distributed func detect(_ frame: [UInt8]) -> [Box] { findBoxes(frame) }   // runs in the child
}
    static func example() async throws {
let detector = try await system.spawn(Detector.self)
        _ = detector
    }
}

enum ActorSystemExample {
    static let frame: [UInt8] = []
distributed actor Detector: ProcessActor {
    distributed func detect(_ frame: [UInt8]) async throws -> [Box] { findBoxes(frame) }   // runs in the child
}
    static func example() async throws {
let system = ProcessActorSystem()
let detector = try await system.spawn(Detector.self)   // a child process hosts it
let boxes = try await detector.detect(frame)
try await system.stop(detector)
        _ = boxes
    }
}
}

// MARK: Group/ProcessGroup.swift

extension DocExamples {
enum GroupExample {
    static let frame: [UInt8] = []
    distributed actor Detector: ProcessActor {
        distributed func detect(_ frame: [UInt8]) -> [Box] { findBoxes(frame) }
    }
    static func example() async throws {
try await ProcessGroup.run { group in
    let system = group.add(ProcessActorSystem())
    let detector = try await system.spawn(Detector.self)
    let pool = group.add(Pool(workers: 4))
    let sizes = try await pool.map(items, Square())
    print(try await detector.detect(frame), sizes)
    await group.waitUntilStopping()   // until Ctrl-C
}
    }
}
}

// MARK: Sync/EventGroup.swift, Sync/SyncIndex.swift

extension DocExamples {
enum EventsExample {
    distributed actor Worker: ProcessActorWithParameters {
        struct Parameters: Codable, Sendable { var events: EventGroup }
        let events: EventGroup
        init(actorSystem: ProcessActorSystem, parameters: Parameters) {
            self.actorSystem = actorSystem
            events = parameters.events
        }
        distributed func startJob(signalling index: Int) throws { try events.set(index) }
        distributed func ping(signalling index: Int) throws { try events.set(index) }
    }
    static let system = ProcessActorSystem()
    static func example() async throws {
let events = try EventGroup(count: 10)
let worker = try await system.spawn(Worker.self, parameters: .init(events: events))
let index = try events.reserve()
try await worker.startJob(signalling: index)        // the worker calls events.set(index)
try await events.wait(index, setBy: worker)
events.release(index)
    }
    static func syncIndex(events: EventGroup, worker: Worker) async throws {
let sync = try SyncIndex(events)
try await worker.ping(signalling: sync.index)
try await sync.wait(setBy: worker)   // then released
    }
}
}

// MARK: Processing.docc/MessageProcesses.md

extension DocExamples {
enum MessageProcessesArticle {
distributed actor Detector: ProcessActor {
    var frames = 0
    func startup() async throws { log("model loaded") }          // preRun__
    distributed func detect(_ frame: [UInt8]) -> Int {          // c__detect, in the child
        frames += 1
        return frame.filter { $0 > 128 }.count
    }
    func shutdown() async throws { log("saw \(frames) frames") } // postRun__
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
    static func example() async throws {
let system = ProcessActorSystem()
let detector = try await system.spawn(Detector.self)
let bright = try await detector.detect([0, 200, 255])           // 2
try await system.stop(detector)
        _ = bright
    }
    static func events(system: ProcessActorSystem, camera: Camera, events: EventGroup) async throws {
let index = try events.reserve()                        // from any process; shared bitmap
try await camera.capture(signalling: index)             // the child calls events.set(index)
try await events.wait(index, setBy: camera)
events.release(index)
    }
    static func group() async throws {
try await ProcessGroup.run { group in
    let system = group.add(ProcessActorSystem())
    let detector = try await system.spawn(Detector.self)
    let pool = group.add(Pool(workers: 4))
    // ... work ...
    await group.waitUntilStopping()                      // until Ctrl-C
        _ = (detector, pool)
}
    }
}
}

// MARK: Processing.docc/RemoteHosts.md

extension DocExamples {
enum RemoteHostsArticle {
    struct Square: PoolWork {
        func callAsFunction(_ x: Int) async throws -> Int { x * x }
    }
    distributed actor Detector: ProcessActor {
        typealias ActorSystem = ProcessActorSystem
        distributed func detect(_ pixels: [Int]) -> Int { pixels.count }
    }
    static func overview(system: ProcessActorSystem) async throws {
let pool = try Pool(workers: [.local(2), .ssh("me@host-a", count: 4), .ssh("me@host-b", count: 4)])
let squares = try await pool.map(1...1000, Square())
let handle = try await Counter().start(on: .ssh("me@host-a"))
let detector = try await system.spawn(Detector.self, on: .ssh("me@host-b"))
        _ = (squares, handle, detector)
    }
}
}

// MARK: Hosts/WorkerHost.swift

extension DocExamples {
enum Hosts {
    distributed actor Detector: ProcessActor {
        typealias ActorSystem = ProcessActorSystem
        distributed func detect(_ pixels: [Int]) -> Int { pixels.filter { $0 > 128 }.count }
    }
    static func placement(system: ProcessActorSystem) async throws {
let handle = try await Counter().start(on: .ssh("me@build-box"))
let pool = try Pool(workers: [.local(2), .ssh("host-a", count: 4)])
let detector = try await system.spawn(Detector.self, on: .ssh("host-b"))
        _ = (handle, pool, detector)
    }
}
}

// MARK: Process/SpareWorkers.swift

extension DocExamples {
enum Spares {
    static func warmUp() async throws {
SpareWorkers.keep(2)          // two idle workers from now on, spawned in the background
try await SpareWorkers.warm(8) // before a burst: wait until eight are ready
await SpareWorkers.release()   // end them all (and keep none)
    }
}
}

// MARK: Processing.docc/Spares.md

extension DocExamples {
/// Compiled, not run here: spares are the whole test process's (SpareWorkerTests runs them in
/// probe processes).
enum SpareWorkersArticle {
    static func overview() async throws {
SpareWorkers.keep(2)             // two idle workers from now on, each replaced when taken
try await SpareWorkers.warm(8)   // before a burst: wait until eight are ready
let total = try await Counter().start().result()   // takes a spare: no spawn on the way
await SpareWorkers.release()     // end the idle ones, and keep none
        _ = total
    }
}
}

// MARK: -

@Suite("Doc comment examples")
struct DocCommentExamplesTests {
    static let testFile = URL(fileURLWithPath: #filePath)
    static let root = testFile.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Non-empty lines, trimmed.
    static func lines(_ text: some StringProtocol) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Records an issue unless every line of `block` appears in this file, in order.
    static func expectHere(_ block: some StringProtocol, from source: String, in corpus: [String]) {
        var position = corpus.startIndex
        for expected in lines(block) where !expected.hasPrefix("import ") {
            guard let index = corpus[position...].firstIndex(of: expected) else {
                Issue.record("\(source): a line not found here (after the block's earlier lines): \(expected)")
                return
            }
            position = index + 1
        }
    }

    @Test("every swift block of the doc comments in Sources/Processing is in this file, line for line, in order")
    func docCommentsMatch() throws {
        let corpus = Self.lines(try String(contentsOf: Self.testFile, encoding: .utf8))
        let sources = Self.root.appendingPathComponent("Sources/Processing")
        let files = FileManager.default.enumerator(atPath: sources.path)?.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") } ?? []
        var blocks = 0
        for file in files.sorted() {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            var block: [String]?
            for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                guard line.hasPrefix("///") else { continue }
                let content = String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces)
                if content == "```swift" {
                    block = []
                } else if content == "```", let found = block {
                    blocks += 1
                    Self.expectHere(found.joined(separator: "\n"), from: file, in: corpus)
                    block = nil
                } else {
                    block?.append(content)
                }
            }
        }
        #expect(blocks >= 24)
    }

    @Test("every swift block of the DocC articles is in this file, line for line, in order")
    func articlesMatch() throws {
        let corpus = Self.lines(try String(contentsOf: Self.testFile, encoding: .utf8))
        let catalog = Self.root.appendingPathComponent("Sources/Processing/Processing.docc")
        let articles = try FileManager.default.contentsOfDirectory(atPath: catalog.path).filter { $0.hasSuffix(".md") }
        var blocks = 0
        for article in articles.sorted() {
            let text = try String(contentsOf: catalog.appendingPathComponent(article), encoding: .utf8)
            for block in text.components(separatedBy: "```swift\n").dropFirst().map({ $0.components(separatedBy: "```")[0] }) {
                blocks += 1
                Self.expectHere(block, from: article, in: corpus)
            }
        }
        #expect(blocks >= 9)
    }
}
