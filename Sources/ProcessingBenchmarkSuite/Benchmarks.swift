// The benchmarks' workloads and measurements (Run.swift says which run in which mode). One
// JSON line per figure: {"bench": ..., "metric": ..., "value": ..., "unit": ...}
import Distributed
import Foundation
import Processing

/// Does nothing, once: the cost of a process is all spawn and round trip.
struct Trivial: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
}

/// Answers every Int with the same Int until it hears -1.
struct Echo: Skprocess {
    mutating func run() async throws {
        guard let value = try await listen(Int.self) else { return }
        if value < 0 { stop() } else { try await tell(value) }
    }
}

/// Receives `count` byte blobs, then reports how many bytes arrived.
struct Sink: Skprocess {
    var count: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        var total = 0
        for _ in 0..<count { total += try await listen(Data.self)!.count }
        try await tell(total)
    }
}

/// Sends `count` blobs of `size` bytes to the parent.
struct Source: Skprocess {
    var count: Int
    var size: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let blob = Data(repeating: 7, count: size)
        try await tell(0)
        for _ in 0..<count { try await tell(blob) }
    }
}

/// Hangs in its first run, past its time-out.
struct Hang: Skprocess {
    var limit: Duration
    var processConfig: ProcessConfig { ProcessConfig(runs: 1, timeouts: .init(run: limit)) }
    mutating func run() async throws { try await Task.sleep(for: .seconds(3600)) }
}

/// Throws in every run, so that each of its lives is a new child.
struct AlwaysFails: Skprocess {
    var lives: Int
    var processConfig: ProcessConfig { ProcessConfig(runs: 1, lives: lives) }
    mutating func run() async throws { throw CancellationError() }
}

/// `runs` empty runs, with or without a state checkpoint after each (lives > 1 sends one).
struct TinyRuns: Skprocess {
    var runs: Int
    var lives: Int
    var payload = [Int](repeating: 1, count: 16)
    var processConfig: ProcessConfig { ProcessConfig(runs: runs, lives: lives) }
    mutating func run() async throws { payload[0] &+= 1 }
}

/// The smallest work: doubles an Int.
struct Twice: PoolWork {
    func callAsFunction(_ x: Int) async throws -> Int { x * 2 }
}

/// CPU-bound work: `iterations` rounds of an LCG, returned so it cannot be optimised away.
struct Spin: PoolWork {
    func callAsFunction(_ iterations: Int) async throws -> UInt64 { spin(iterations) }
}

@inline(never)
func spin(_ iterations: Int) -> UInt64 {
    var x: UInt64 = 1
    for _ in 0..<iterations { x = x &* 6364136223846793005 &+ 1442695040888963407 }
    return x
}

/// Sleeps the given milliseconds.
struct Sleep: PoolWork {
    func callAsFunction(_ milliseconds: Int) async throws -> Int {
        try await Task.sleep(for: .milliseconds(milliseconds))
        return milliseconds
    }
}

/// The shared state of `share_counter`: the counter, and a barrier so that every process
/// starts counting at the same time.
struct BenchCounter: Codable, Sendable {
    var counter = 0
    var ready = 0
}

/// Waits at the barrier until all `processes` are there, increments the shared counter
/// `count` times, and reports when it started and finished (CLOCK_MONOTONIC nanoseconds:
/// one clock for every process).
struct ShareIncrements: Skprocess {
    var share: Share<BenchCounter>
    var count: Int
    var processes: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        try await share.update { $0.ready += 1 }
        while try await share.ready < processes {}
        let start = monotonicNanoseconds()
        for _ in 0..<count { try await share.update { $0.counter += 1 } }
        try await tell([start, monotonicNanoseconds()])
    }
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func report(_ bench: String, _ metric: String, _ value: Double, _ unit: String) {
    let rounded = (value * 1000).rounded() / 1000
    print("{\"bench\": \"\(bench)\", \"metric\": \"\(metric)\", \"value\": \(rounded), \"unit\": \"\(unit)\"}")
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

let clock = ContinuousClock()

// Each benchmark is a global (nonisolated) function, called from `BenchmarkSuite.run` (not from
// top-level code, which runs on the main actor: measuring from there would add a main-thread
// hop to every await).

/// spawn_roundtrip: start → result of a trivial process (ms each).
func spawnRoundTrips(_ count: Int) async throws -> [Double] {
    _ = try await Trivial().start().result()  // warm-up
    var times: [Double] = []
    for _ in 0..<count {
        let elapsed = try await clock.measure { _ = try await Trivial().start().result() }
        times.append(seconds(elapsed) * 1e3)
    }
    return times
}

/// spawn_roundtrip with a warm spare: before each timed start, one spare is made ready
/// (untimed), as a program that keeps spares would have one between its starts (ms each).
func spareRoundTrips(_ count: Int) async throws -> [Double] {
    SpareWorkers.keep(1)
    defer { SpareWorkers.keep(0) }
    try await SpareWorkers.warm(1)
    _ = try await Trivial().start().result()  // warm-up
    var times: [Double] = []
    for _ in 0..<count {
        try await SpareWorkers.warm(1)
        let elapsed = try await clock.measure { _ = try await Trivial().start().result() }
        times.append(seconds(elapsed) * 1e3)
    }
    await SpareWorkers.release()
    return times
}

/// map_tiny's cold figure: 100 items from a fresh 2-worker pool (ms, median of `count`),
/// with 2 spares made ready (untimed) before each pool when `spares` is set.
func coldMapTiny(_ count: Int, spares: Bool) async throws -> Double {
    var cold: [Double] = []
    for _ in 0..<count {
        if spares { try await SpareWorkers.warm(2) }
        let fresh = Pool(workers: 2)
        cold.append(seconds(try await clock.measure { _ = try await fresh.map(0..<100, Twice()) }) * 1e3)
        await fresh.close()
    }
    await SpareWorkers.release()
    return median(cold)
}

/// spawn_burst: `count` trivial processes started at once, time until every result (ms,
/// median of `rounds`), with `spares` spares made ready (untimed) before each burst.
func spawnBurst(_ count: Int, spares: Int, rounds: Int = 3) async throws -> Double {
    var times: [Double] = []
    for _ in 0..<rounds {
        if spares > 0 { try await SpareWorkers.warm(spares) }
        SpareWorkers.keep(spares)
        let elapsed = try await clock.measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<count { group.addTask { _ = try await Trivial().start().result() } }
                try await group.waitForAll()
            }
        }
        times.append(seconds(elapsed) * 1e3)
        await SpareWorkers.release()
    }
    return median(times)
}

/// What an idle, warm spare costs in memory (KiB, the median over `count` spares): its resident
/// set (RSS), its proportional share (PSS: each shared page divided among the processes that
/// map it, this program among them) and what is its own (USS: its private pages).
func spareMemory(count: Int = 4) async throws -> (rss: Double, pss: Double, uss: Double) {
    SpareWorkers.keep(count)
    try await SpareWorkers.warm(count)
    // Every child of this process now is an idle spare (nothing else runs here meanwhile).
    let me = getpid()
    let children = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
        guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == me ? pid : nil
    }
    var rss: [Double] = [], pss: [Double] = [], uss: [Double] = []
    for pid in children {
        guard let rollup = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { continue }
        var fields: [String: Double] = [:]
        for line in rollup.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let value = Double(parts[1]) { fields[String(parts[0].dropLast())] = value }
        }
        rss.append(fields["Rss"] ?? .nan)
        pss.append(fields["Pss"] ?? .nan)
        uss.append((fields["Private_Clean"] ?? .nan) + (fields["Private_Dirty"] ?? .nan))
    }
    await SpareWorkers.release()
    guard !rss.isEmpty else { return (.nan, .nan, .nan) }
    return (median(rss), median(pss), median(uss))
}

/// The spare-worker figures (`ProcessingBenchmarks spares`), cold and warm interleaved in
/// rounds so that the machine's drift hits both alike.
func reportSpares(rounds: Int = 5) async throws {
    var cold: [Double] = [], warm: [Double] = [], mapCold: [Double] = [], mapWarm: [Double] = []
    for _ in 0..<rounds {
        cold.append(median(try await spawnRoundTrips(20)))
        warm.append(median(try await spareRoundTrips(40)))
        mapCold.append(try await coldMapTiny(5, spares: false))
        mapWarm.append(try await coldMapTiny(5, spares: true))
    }
    report("spawn_roundtrip", "median_cold", median(cold), "ms")
    report("spawn_roundtrip", "median_warm_spare", median(warm), "ms")
    report("spawn_roundtrip", "cold_to_warm_ratio", median(cold) / median(warm), "x")
    report("map_tiny", "cold_100_items", median(mapCold), "ms")
    report("map_tiny", "cold_100_items_spares_warmed", median(mapWarm), "ms")
    report("spawn_burst", "100_processes", try await spawnBurst(100, spares: 0), "ms")
    report("spawn_burst", "100_processes_16_spares", try await spawnBurst(100, spares: 16), "ms")
    report("spawn_burst", "100_processes_100_spares", try await spawnBurst(100, spares: 100), "ms")
    let memory = try await spareMemory()
    report("spare_memory", "rss", memory.rss, "KiB")
    report("spare_memory", "pss", memory.pss, "KiB")
    report("spare_memory", "uss", memory.uss, "KiB")
}

/// message_roundtrip: tell/listen ping-pong (µs each).
func messageRoundTrips(_ count: Int) async throws -> [Double] {
    let echo = try await Echo().start()
    for value in 0..<100 { try await echo.tell(value); _ = try await echo.listen(Int.self) }  // warm-up
    var times: [Double] = []
    for value in 0..<count {
        let elapsed = try await clock.measure {
            try await echo.tell(value)
            _ = try await echo.listen(Int.self)
        }
        times.append(seconds(elapsed) * 1e6)
    }
    try await echo.tell(-1)
    try await echo.wait()
    return times
}

/// The machine's own floor for a round trip, measured in the same run: two threads doing
/// blocking reads and writes on a socketpair (the kernel's cost plus two wake-ups).
func socketPairRoundTrips(_ count: Int) -> [Double] {
    var fds: [Int32] = [0, 0]
    socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
    let (near, far) = (fds[0], fds[1])
    let echo = Thread {
        var byte: UInt8 = 0
        while read(far, &byte, 1) == 1 { _ = write(far, &byte, 1) }
        close(far)
    }
    echo.start()
    var times: [Double] = []
    var byte: UInt8 = 1
    for index in 0..<(count + 100) {
        let start = clock.now
        _ = write(near, &byte, 1)
        _ = read(near, &byte, 1)
        if index >= 100 { times.append(seconds(clock.now - start) * 1e6) }
    }
    close(near)
    return times
}

/// message_throughput: `count` × `size` bytes one way (MB/s), parent → child, then child → parent.
func messageThroughput(count: Int, size: Int) async throws -> (toChild: Double, toParent: Double) {
    let blob = Data(repeating: 1, count: size)
    let megabytes = Double(count * size) / 1e6
    let sink = try await Sink(count: count).start()
    let toChild = try await clock.measure {
        for _ in 0..<count { try await sink.tell(blob) }
        _ = try await sink.listen(Int.self)
    }
    _ = try await sink.result()

    let source = try await Source(count: count, size: size).start()
    _ = try await source.listen(Int.self)  // the child is up and about to send
    let toParent = try await clock.measure {
        for _ in 0..<count { _ = try await source.listen(Data.self) }
    }
    _ = try await source.result()
    return (megabytes / seconds(toChild), megabytes / seconds(toParent))
}

/// section_timeout: how long after a section's limit `result()` throws (ms; spawn included).
func timeoutOvershoots(_ count: Int, limit: Duration) async throws -> [Double] {
    var times: [Double] = []
    for _ in 0..<count {
        let start = clock.now
        let handle = try await Hang(limit: limit).start()
        do { _ = try await handle.result() } catch is ProcessTimeoutError {}
        times.append(seconds(clock.now - start - limit) * 1e3)
    }
    return times
}

/// cancel_latency: from cancelling a task that awaits `result()` to the task ending (µs).
func cancelLatencies(_ count: Int) async throws -> [Double] {
    let handle = try await Hang(limit: .seconds(3600)).start()
    var times: [Double] = []
    for _ in 0..<count {
        let waiter = Task { _ = try await handle.result() }
        try await Task.sleep(for: .milliseconds(5))
        let start = clock.now
        waiter.cancel()
        _ = await waiter.result
        times.append(seconds(clock.now - start) * 1e6)
    }
    await handle.kill()
    try await handle.wait()
    return times
}

/// lives_retry: ms per life of a process that fails in every one (each life a new child).
func retryCost(lives: Int) async throws -> Double {
    let elapsed = await clock.measure {
        _ = try? await AlwaysFails(lives: lives).start().result()
    }
    return seconds(elapsed) * 1e3 / Double(lives)
}

/// checkpoint_overhead: µs per empty run (wall clock, spawn included) without (lives 1)
/// and with (lives 2) a state checkpoint after each run.
func wallPerRun(runs: Int, lives: Int) async throws -> Double {
    _ = try await TinyRuns(runs: 10, lives: lives).start().result()
    let elapsed = try await clock.measure { _ = try await TinyRuns(runs: runs, lives: lives).start().result() }
    return seconds(elapsed) * 1e6 / Double(runs)
}

/// map_tiny: x*2 over `count` ints on 2 warm workers (items/s, best of 3), and 100 items from
/// a cold pool (ms, median of 5).
func mapTiny(count: Int) async throws -> (itemsPerSecond: Double, coldMilliseconds: Double) {
    let pool = Pool(workers: 2)
    let items = Array(0..<count)
    _ = try await pool.map(items, Twice())   // warm-up: workers started, batch size learned
    var best = Double.infinity
    for _ in 0..<3 {
        best = min(best, seconds(try await clock.measure { _ = try await pool.map(items, Twice()) }))
    }
    await pool.close()
    var cold: [Double] = []
    for _ in 0..<5 {
        let fresh = Pool(workers: 2)
        cold.append(seconds(try await clock.measure { _ = try await fresh.map(0..<100, Twice()) }) * 1e3)
        await fresh.close()
    }
    return (Double(count) / best, median(cold))
}

/// map_tiny with a closure as the work instead of a `PoolWork` value (items/s, best of 3).
func mapTinyClosure(count: Int) async throws -> Double {
    let pool = Pool(workers: 2)
    let items = Array(0..<count)
    _ = try await pool.map(items) { $0 * 2 }
    var best = Double.infinity
    for _ in 0..<3 {
        best = min(best, seconds(try await clock.measure { _ = try await pool.map(items) { $0 * 2 } }))
    }
    await pool.close()
    return Double(count) / best
}

func tripled(_ x: Int) -> Int { x * 3 }

func doubledInGenericContext<T: Numeric & Codable & Sendable>(_ pool: Pool, _ items: [T]) async throws -> [T] {
    try await pool.map(items) { $0 * 2 }
}

/// closures: which kinds of closure travel to workers in this build (1 ran correctly, 0 was
/// refused with `closureNotTransferable`). Literals must run and captures must be refused;
/// a wrong answer, or another error, exits with status 1.
func checkClosures() async throws {
    let pool = Pool(workers: 2)
    func outcome(_ name: String, mustRun: Bool = false, mustRefuse: Bool = false,
                 _ body: () async throws -> Bool) async {
        do {
            guard try await body() else {
                print("closures: \(name) ran but gave a wrong answer")
                exit(1)
            }
            if mustRefuse { print("closures: \(name) should have been refused"); exit(1) }
            report("closures", name, 1, "ran")
        } catch let error as ProcessingError where error.code == .closureNotTransferable && !mustRun {
            report("closures", name, 0, "ran")
        } catch {
            print("closures: \(name) failed: \(error)")
            exit(1)
        }
    }
    await outcome("literal", mustRun: true) { try await pool.map(0..<100) { $0 * 2 } == (0..<100).map { $0 * 2 } }
    await outcome("star_literal", mustRun: true) {
        try await pool.star().map([(1, 2), (3, 4)]) { (a: Int, b: Int) in a * b } == [2, 12]
    }
    await outcome("function_reference") { try await pool.map(0..<10, tripled) == (0..<10).map { $0 * 3 } }
    await outcome("generic_context") { try await doubledInGenericContext(pool, [1.5, 2.5]) == [3.0, 5.0] }
    let factor = CommandLine.arguments.count + 1
    await outcome("capturing", mustRefuse: true) { try await pool.map(0..<3) { $0 * factor } == [0, factor, 2 * factor] }
    await pool.close()
}

/// How many `spin` iterations take about 100 ms of CPU here.
func spinIterationsFor100Milliseconds() -> Int {
    var iterations = 1_000_000
    while true {
        let elapsed = seconds(clock.measure { _ = spin(iterations) })
        if elapsed > 0.02 { return Int(Double(iterations) * 0.1 / elapsed) }
        iterations *= 4
    }
}

/// map_cpu: 16 tasks of about 100 ms of CPU each on 2 workers, against the same run serially.
func mapCPU() async throws -> (serial: Double, parallel: Double) {
    let iterations = spinIterationsFor100Milliseconds()
    let tasks = Array(repeating: iterations, count: 16)
    let serial = seconds(clock.measure { for task in tasks { _ = spin(task) } })
    let pool = Pool(workers: 2)
    _ = try await pool.map([1], Spin())   // workers started
    _ = try await pool.map([1], Spin())
    let parallel = seconds(try await clock.measure { _ = try await pool.map.chunkSize(1)(tasks, Spin()) })
    await pool.close()
    return (serial, parallel)
}

// MARK: Relays

/// relay_tiny's source: sends 0..<count.
struct RelaySource: RelayActor {
    typealias Output = Int
    var count: Int
    var memory: String
    mutating func loop() async throws {
        for i in 0..<count { try await send(i) }
    }
    mutating func shutdown() async throws { try recordPeakMemory("source", in: memory) }
}

/// relay_tiny's workers: x * 2.
struct RelayTwice: RelayActor {
    typealias Output = Int
    var memory: String
    mutating func recv(_ x: Int) async throws { try await send(x * 2) }
    mutating func shutdown() async throws { try recordPeakMemory("worker", in: memory) }
}

/// relay_tiny's workers with lives: the same, restartable (their source keeps what it sent
/// until credited, they credit every batch, and wait for their outputs to be written).
struct RelayTwiceWithLives: RelayActor {
    typealias Output = Int
    var lives = 2
    var memory: String
    mutating func recv(_ x: Int) async throws { try await send(x * 2) }
    mutating func shutdown() async throws { try recordPeakMemory("worker", in: memory) }
}

/// relay_tiny's sink: adds up, and writes the total and its peak memory to `path`.
struct RelayTotal: RelayActor {
    var path: String
    var memory: String
    var total = 0
    mutating func recv(_ x: Int) async throws { total &+= x }
    mutating func shutdown() async throws {
        try "\(total)".write(toFile: path, atomically: true, encoding: .utf8)
        try recordPeakMemory("sink", in: memory)
    }
}

/// relay_cpu's source: 16 tasks of `iterations` spins.
struct SpinTasks: RelayActor {
    typealias Output = Int
    var iterations: Int
    mutating func loop() async throws {
        for _ in 0..<16 { try await send(iterations) }
    }
}

/// relay_cpu's workers: spin.
struct SpinStage: RelayActor {
    typealias Output = UInt64
    mutating func recv(_ iterations: Int) async throws { try await send(spin(iterations)) }
}

/// relay_cpu's sink.
struct SpinSink: RelayActor {
    var count = 0
    mutating func recv(_ x: UInt64) async throws { count += 1 }
}

/// Records this process's peak resident memory (VmHWM) in a file of its own in `directory`.
/// (The directory comes in the stage's state: a top-level value of this file is never
/// initialised in a child, which does not run this file's code.)
func recordPeakMemory(_ role: String, in relayMemoryDirectory: String) throws {
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
    try FileManager.default.createDirectory(atPath: relayMemoryDirectory, withIntermediateDirectories: true)
    try "\(kilobytes)".write(toFile: relayMemoryDirectory + "/\(role)-\(getpid())", atomically: true, encoding: .utf8)
}

/// relay_tiny: source → 2 workers (x * 2) → sink over `count` ints, messages per second from
/// start to the sink's total, spawns included; and each role's peak resident memory in MiB.
func relayTiny(count: Int, lives: Bool = false) async throws -> (rate: Double, seconds: Double, peakMiB: [String: Double]) {
    let relayMemoryDirectory = NSTemporaryDirectory() + "processing-bench-relay-\(getpid())"
    try? FileManager.default.removeItem(atPath: relayMemoryDirectory)
    let path = NSTemporaryDirectory() + "processing-bench-relay-total-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let relay = Relay()
    if lives {
        try relay.connect(RelaySource(count: count, memory: relayMemoryDirectory),
                          [RelayTwiceWithLives(memory: relayMemoryDirectory), RelayTwiceWithLives(memory: relayMemoryDirectory)],
                          RelayTotal(path: path, memory: relayMemoryDirectory))
    } else {
        try relay.connect(RelaySource(count: count, memory: relayMemoryDirectory),
                          [RelayTwice(memory: relayMemoryDirectory), RelayTwice(memory: relayMemoryDirectory)],
                          RelayTotal(path: path, memory: relayMemoryDirectory))
    }
    let elapsed = seconds(try await clock.measure { try await relay.start() })
    let total = Int(try String(contentsOfFile: path, encoding: .utf8)) ?? -1
    guard total == count * (count - 1) else {
        throw ProcessingError(.unexpectedReply, "relay_tiny summed \(total), not \(count * (count - 1))")
    }
    var peaks: [String: Double] = [:]
    for file in (try? FileManager.default.contentsOfDirectory(atPath: relayMemoryDirectory)) ?? [] {
        let role = String(file.split(separator: "-")[0])
        let kilobytes = Double((try? String(contentsOfFile: relayMemoryDirectory + "/" + file, encoding: .utf8)).flatMap { Int($0) } ?? 0)
        peaks[role] = max(peaks[role] ?? 0, kilobytes / 1024)
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    peaks["parent"] = Double(usage.ru_maxrss) / 1024
    try? FileManager.default.removeItem(atPath: relayMemoryDirectory)
    return (Double(count) / elapsed, elapsed, peaks)
}

/// relay_cpu: 16 tasks of about 100 ms of CPU through source → 2 workers → sink, cold (spawns
/// included), against the same tasks run serially.
func relayCPU() async throws -> (serial: Double, relay: Double) {
    let iterations = spinIterationsFor100Milliseconds()
    // An array, as map_cpu does: sixteen calls with one constant argument would be folded into one.
    let tasks = Array(repeating: iterations, count: 16)
    let serial = seconds(clock.measure { for task in tasks { _ = spin(task) } })
    let relay = Relay()
    try relay.connect(SpinTasks(iterations: iterations), [SpinStage(), SpinStage()], SpinSink())
    let elapsed = seconds(try await clock.measure { try await relay.start() })
    return (serial, elapsed)
}

func reportRelays() async throws {
    // What a relay costs with nothing to carry (4 spawns, the start and the end), against its
    // yardstick, 4 trivial processes started at once, interleaved.
    var empty: [Double] = []
    var fourTrivial: [Double] = []
    for _ in 0..<7 {
        empty.append(try await relayTiny(count: 0).seconds)
        fourTrivial.append(seconds(try await clock.measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 { group.addTask { _ = try await Trivial().start().result() } }
                try await group.waitForAll()
            }
        }))
    }
    report("relay_tiny", "empty_relay_median", median(empty) * 1e3, "ms")
    report("relay_tiny", "four_trivial_processes_median", median(fourTrivial) * 1e3, "ms")
    for count in [20_000, 1_000_000] {
        let tiny = try await relayTiny(count: count)
        let label = count == 20_000 ? "20k" : "1m"
        report("relay_tiny", "messages_per_second_\(label)", tiny.rate, "messages/s")
        for (role, mebibytes) in tiny.peakMiB.sorted(by: { $0.key < $1.key }) {
            report("relay_tiny", "peak_rss_\(role)_\(label)", mebibytes, "MiB")
        }
    }
    report("relay_tiny", "messages_per_second_1m_workers_with_lives", try await relayTiny(count: 1_000_000, lives: true).rate, "messages/s")
    let cpu = try await relayCPU()
    report("relay_cpu", "serial", cpu.serial * 1e3, "ms")
    report("relay_cpu", "two_workers_cold", cpu.relay * 1e3, "ms")
    report("relay_cpu", "speedup", cpu.serial / cpu.relay, "x")
}


/// unordered_first: sleeps of 1000, 900, ..., 100 ms on 2 workers; ms to the first result.
func unorderedFirst() async throws -> Double {
    let pool = Pool(workers: 2)
    _ = try await pool.map([0, 0], Sleep())
    let start = clock.now
    var first = 0.0
    for try await _ in try pool.unorderedIMap.chunkSize(1)(stride(from: 1000, through: 100, by: -100).map { $0 }, Sleep()) {
        first = seconds(clock.now - start) * 1e3
        break
    }
    await pool.close()
    return first
}

/// Answers every Int on its pipe with the same Int until it reads -1; or, given `sink`
/// blobs to take, reads them and answers their total size.
struct PipeEcho: Skprocess {
    var pipe: ProcessPipe.Point
    var sink = 0
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        if sink > 0 {
            var total = 0
            for _ in 0..<sink { total += try await pipe.recv(Data.self).count }
            try await pipe.send(total)
            return
        }
        while true {
            let x = try await pipe.recv(Int.self)
            if x < 0 { return }
            try await pipe.send(x)
        }
    }
}

/// pipe_roundtrip: µs per anchor → point → anchor round trip (median of `count`), and MB/s
/// one way for `blobs` × `size` bytes.
func pipeFigures(count: Int, blobs: Int, size: Int) async throws -> (roundTrip: Double, megabytesPerSecond: Double) {
    let (anchor, point) = try ProcessPipe.pair()
    let echo = try await PipeEcho(pipe: point).start()
    for x in 0..<50 { try await anchor.send(x); _ = try await anchor.recv(Int.self) }
    var times: [Double] = []
    for x in 0..<count {
        let start = clock.now
        try await anchor.send(x)
        _ = try await anchor.recv(Int.self)
        times.append(seconds(clock.now - start) * 1e6)
    }
    try await anchor.send(-1)
    try await echo.wait()
    let (bulkAnchor, bulkPoint) = try ProcessPipe.pair()
    let sink = try await PipeEcho(pipe: bulkPoint, sink: blobs).start()
    let blob = Data(repeating: 7, count: size)
    let elapsed = try await clock.measure {
        for _ in 0..<blobs { try await bulkAnchor.send(blob) }
        _ = try await bulkAnchor.recv(Int.self)
    }
    try await sink.wait()
    return (median(times), Double(blobs * size) / seconds(elapsed) / 1e6)
}

/// share_counter: `processes` processes × `increments` updates `{ $0.counter += 1 }` of one
/// share, all counting at once (they wait at a barrier in the share). Increments/s over the
/// window from the first process's first update to the last one's last (median of `rounds`,
/// a new share and new processes each), and the final count (one that is not
/// processes × increments, if any).
func shareCounter(processes: Int, increments: Int, rounds: Int) async throws -> (rate: Double, finalCount: Int) {
    var rates: [Double] = []
    var finalCount = processes * increments
    for _ in 0..<rounds {
        let share = try await Share(BenchCounter())
        var handles: [ProcessHandle<ShareIncrements>] = []
        for _ in 0..<processes {
            handles.append(try await ShareIncrements(share: share, count: increments, processes: processes).start())
        }
        var starts: [UInt64] = []
        var ends: [UInt64] = []
        for handle in handles {
            let times = try await handle.listen([UInt64].self)!
            starts.append(times[0])
            ends.append(times[1])
            _ = try await handle.result()
        }
        rates.append(Double(processes * increments) / (Double(ends.max()! - starts.min()!) / 1e9))
        let count = try await share.counter
        if count != processes * increments { finalCount = count }
    }
    return (median(rates), finalCount)
}

/// share_counter's yardstick: the same increments from one task of this process (no other
/// process, no contention, the decoded state cached): the cost of an update by itself.
func shareCounterOneProcess(increments: Int) async throws -> Double {
    let share = try await Share(BenchCounter())
    for _ in 0..<100 { try await share.update { $0.counter += 1 } }
    let elapsed = try await clock.measure {
        for _ in 0..<increments { try await share.update { $0.counter += 1 } }
    }
    return Double(increments) / seconds(elapsed)
}

/// A state held by reference: a share decodes it on every read (it caches value types only).
final class ByteBox: Codable, Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

/// share_counter's large-state figures (µs, mean of `count`): an update of a 1 MiB state from
/// one process (the decoded state cached: an encode and a copy into the slot), and a read
/// that decodes it (what a process pays first after another process changed it).
func shareLargeState(count: Int) async throws -> (update: Double, decodingRead: Double) {
    let share = try await Share([UInt8](repeating: 1, count: 1 << 20))
    try await share.update { $0[0] &+= 1 }
    let updating = try await clock.measure {
        for index in 0..<count { try await share.update { $0[index] &+= 1 } }
    }
    let boxed = try await Share(ByteBox([UInt8](repeating: 1, count: 1 << 20)))
    _ = try await boxed.read()
    let reading = try await clock.measure {
        for _ in 0..<count { _ = try await boxed.read() }
    }
    return (seconds(updating) * 1e6 / Double(count), seconds(reading) * 1e6 / Double(count))
}

func reportShareCounter() async throws {
    let shared = try await shareCounter(processes: 4, increments: 1_000, rounds: 5)
    report("share_counter", "increments_per_second", shared.rate, "increments/s")
    report("share_counter", "final_count", Double(shared.finalCount), "count")
    report("share_counter", "one_process_increments_per_second", try await shareCounterOneProcess(increments: 100_000), "increments/s")
    let large = try await shareLargeState(count: 200)
    report("share_counter", "update_1mib_state", large.update, "us")
    report("share_counter", "decoding_read_1mib_state", large.decodingRead, "us")
}

/// The actor of `actor_call`: answers an Int with the same Int.
distributed actor BenchEcho: ProcessActor {
    distributed func echo(_ x: Int) -> Int { x }
}

/// actor_call: µs per distributed call round trip (median of `count`), with the tell/listen
/// round trip measured beside it, interleaved, as its yardstick; and actor_calls_in_flight:
/// calls/s with `callers` tasks calling one actor process at once.
func reportActorCalls(count: Int = 1000, callers: Int = 16, callsPerCaller: Int = 5000) async throws {
    let system = ProcessActorSystem()
    let echo = try await system.spawn(BenchEcho.self)
    for i in 0..<200 { _ = try await echo.echo(i) }
    var calls: [Double] = []
    var messages: [Double] = []
    for _ in 0..<5 {
        for i in 0..<(count / 5) {
            let start = clock.now
            _ = try await echo.echo(i)
            calls.append(seconds(clock.now - start) * 1e6)
        }
        messages += try await messageRoundTrips(count / 5)
    }
    report("actor_call", "median", median(calls), "us")
    report("actor_call", "tell_listen_median", median(messages), "us")
    report("actor_call", "ratio_to_tell_listen", median(calls) / median(messages), "x")
    let elapsed = try await clock.measure {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<callers {
                group.addTask { for i in 0..<callsPerCaller { _ = try await echo.echo(i) } }
            }
            try await group.waitForAll()
        }
    }
    report("actor_calls_in_flight", "calls_per_second_\(callers)_callers", Double(callers * callsPerCaller) / seconds(elapsed), "calls/s")
    try await system.stop(echo)
}

// MARK: Remote hosts

/// The hosts of `remote`: `ProcessingBenchmarks remote SSH_CONFIG HOST HOST` (scripts/bench-hosts
/// makes them in network namespaces and runs this).
func benchHosts() -> (options: [String], names: [String]) {
    let arguments = Array(CommandLine.arguments.dropFirst(2))
    guard arguments.count >= 3 else {
        FileHandle.standardError.write(Data("usage: ProcessingBenchmarks remote SSH_CONFIG HOST HOST\n".utf8))
        exit(2)
    }
    return (["-F", arguments[0]], Array(arguments[1...2]))
}

/// remote_map_cpu: 16 × ~100 ms of CPU over 2 local workers, and over 1 worker on each of
/// 2 hosts (the same 2 cores, so the figures compare overheads). The first remote map also
/// gives the time to its first result from a cold pool: ssh connections, the build's look-up
/// on each host, the workers' starts.
func reportRemoteMapCPU(rounds: Int = 5) async throws {
    let (options, names) = benchHosts()
    let iterations = spinIterationsFor100Milliseconds()
    let tasks = Array(repeating: iterations, count: 16)
    let firstClock = clock.now
    let remote = try Pool(workers: names.map { .ssh($0, count: 1, options: options) })
    var first: Double?
    _ = try await remote.unorderedMap.chunkSize(1)(tasks.prefix(2), Spin()).first { _ in
        first = seconds(clock.now - firstClock) * 1e3
        return true
    }
    report("remote_map_cpu", "cold_first_result", first ?? .nan, "ms")
    let local = Pool(workers: 2)
    _ = try await local.map([1, 1], Spin())
    var localTimes: [Double] = []
    var remoteTimes: [Double] = []
    for _ in 0..<rounds {  // interleaved
        localTimes.append(seconds(try await clock.measure { _ = try await local.map.chunkSize(1)(tasks, Spin()) }) * 1e3)
        remoteTimes.append(seconds(try await clock.measure { _ = try await remote.map.chunkSize(1)(tasks, Spin()) }) * 1e3)
    }
    report("remote_map_cpu", "local_two_workers", median(localTimes), "ms")
    report("remote_map_cpu", "two_hosts_one_worker_each", median(remoteTimes), "ms")
    report("remote_map_cpu", "overhead_per_batch", median(remoteTimes) - median(localTimes), "ms")
    report("remote_map_cpu", "ratio_to_local", median(remoteTimes) / median(localTimes), "x")
    await local.close()
    await remote.close()
}

/// remote_roundtrip: a tell/listen round trip with a process on a host over ssh (median of
/// `count`), against ssh's own: one byte through `ssh HOST cat` and back, in the same run,
/// interleaved; and the local tell/listen beside them.
func reportRemoteRoundTrip(count: Int = 1000) async throws {
    let (options, names) = benchHosts()
    let echo = try await Echo().start(on: .ssh(names[0], options: options))
    let raw = Foundation.Process()
    raw.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
    raw.arguments = options + ["-T", "-o", "BatchMode=yes", names[0], "cat"]
    let toSSH = Pipe()
    let fromSSH = Pipe()
    (raw.standardInput, raw.standardOutput) = (toSSH, fromSSH)
    try raw.run()
    let writer = toSSH.fileHandleForWriting.fileDescriptor
    let reader = fromSSH.fileHandleForReading.fileDescriptor
    func rawRoundTrip() -> Double {
        var byte: UInt8 = 7
        let start = clock.now
        _ = write(writer, &byte, 1)
        _ = read(reader, &byte, 1)  // the benchmark's own thread: a blocking read is fine here
        return seconds(clock.now - start) * 1e6
    }
    for value in 0..<100 {
        try await echo.tell(value)
        _ = try await echo.listen(Int.self)
        _ = rawRoundTrip()
    }
    var viaProcessing: [Double] = []
    var viaSSH: [Double] = []
    for round in 0..<10 {
        for value in 0..<(count / 10) {
            let start = clock.now
            try await echo.tell(round * count + value)
            _ = try await echo.listen(Int.self)
            viaProcessing.append(seconds(clock.now - start) * 1e6)
            viaSSH.append(rawRoundTrip())
        }
    }
    try await echo.tell(-1)
    try await echo.wait()
    try toSSH.fileHandleForWriting.close()
    raw.waitUntilExit()
    let local = median(try await messageRoundTrips(count))
    report("remote_roundtrip", "tell_listen_over_ssh", median(viaProcessing), "us")
    report("remote_roundtrip", "ssh_cat_byte", median(viaSSH), "us")
    report("remote_roundtrip", "ratio_to_ssh", median(viaProcessing) / median(viaSSH), "x")
    report("remote_roundtrip", "tell_listen_local", local, "us")
}
