// The benchmarks: `swift run -c release ProcessingBenchmarks`. One JSON line per figure:
// {"bench": ..., "metric": ..., "value": ..., "unit": ...}
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

// Each benchmark is a global (nonisolated) function: top-level code runs on the main actor,
// and measuring from there would add a main-thread hop to every await.

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

if CommandLine.arguments.dropFirst().first == "smoke" {
    // CI: proves a statically linked worker starts and talks (this executable is linked
    // with -static-stdlib in every configuration), without timing anything that matters.
    report("smoke", "spawn_roundtrip", median(try await spawnRoundTrips(2)), "ms")
    report("smoke", "message_roundtrip", median(try await messageRoundTrips(10)), "us")
    exit(0)
}
report("spawn_roundtrip", "median", median(try await spawnRoundTrips(20)), "ms")
let roundTrip = median(try await messageRoundTrips(1000))
let floor = median(socketPairRoundTrips(1000))
report("message_roundtrip", "median", roundTrip, "us")
report("message_roundtrip", "socketpair_threads_median", floor, "us")
report("message_roundtrip", "ratio_to_socketpair", roundTrip / floor, "x")
let throughput = try await messageThroughput(count: 200, size: 1 << 20)
report("message_throughput", "parent_to_child", throughput.toChild, "MB/s")
report("message_throughput", "child_to_parent", throughput.toParent, "MB/s")
report("section_timeout", "overshoot_median", median(try await timeoutOvershoots(5, limit: .milliseconds(100))), "ms")
report("cancel_latency", "median", median(try await cancelLatencies(20)), "us")
report("lives_retry", "per_life", try await retryCost(lives: 10), "ms")
let plainRun = try await wallPerRun(runs: 20_000, lives: 1)
let checkpointedRun = try await wallPerRun(runs: 20_000, lives: 2)
report("checkpoint_overhead", "per_run_lives_1", plainRun, "us")
report("checkpoint_overhead", "per_run_lives_2", checkpointedRun, "us")
