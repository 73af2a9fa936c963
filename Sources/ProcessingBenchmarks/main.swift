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
