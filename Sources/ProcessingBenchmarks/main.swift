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

// spawn_roundtrip: start → result of a trivial process.
_ = try await Trivial().start().result()  // warm-up
var spawnTimes: [Double] = []
for _ in 0..<20 {
    let elapsed = try await clock.measure { _ = try await Trivial().start().result() }
    spawnTimes.append(seconds(elapsed) * 1e3)
}
report("spawn_roundtrip", "median", median(spawnTimes), "ms")

// message_roundtrip: tell/listen ping-pong.
let echo = try await Echo().start()
for value in 0..<100 { try await echo.tell(value); _ = try await echo.listen(Int.self) }  // warm-up
var roundTrips: [Double] = []
for value in 0..<1000 {
    let elapsed = try await clock.measure {
        try await echo.tell(value)
        _ = try await echo.listen(Int.self)
    }
    roundTrips.append(seconds(elapsed) * 1e6)
}
try await echo.tell(-1)
try await echo.wait()
report("message_roundtrip", "median", median(roundTrips), "us")

// message_throughput: 200 × 1 MiB one way, parent → child and child → parent.
let blob = Data(repeating: 1, count: 1 << 20)
let sink = try await Sink(count: 200).start()
let toChild = try await clock.measure {
    for _ in 0..<200 { try await sink.tell(blob) }
    _ = try await sink.listen(Int.self)
}
_ = try await sink.result()
report("message_throughput", "parent_to_child", 200 * Double(1 << 20) / 1e6 / seconds(toChild), "MB/s")

let source = try await Source(count: 200, size: 1 << 20).start()
let toParent = try await clock.measure {
    for _ in 0..<200 { _ = try await source.listen(Data.self) }
}
_ = try await source.result()
report("message_throughput", "child_to_parent", 200 * Double(1 << 20) / 1e6 / seconds(toParent), "MB/s")
