import Foundation
import Processing

/// The benchmarks, linked into two programs: `ProcessingBenchmarks` (the Swift runtime and
/// Foundation linked statically) and `ProcessingBenchmarksDynamic` (linked as `swift build`
/// links a program by default), so that the figures that depend on how a worker starts
/// (spawn_roundtrip, spares) can be had for both.
public enum BenchmarkSuite {
    /// Runs the mode named by the first argument (no argument: every benchmark). One JSON
    /// line per figure.
    public static func run(_ arguments: [String]) async throws {
        switch arguments.first ?? "" {
        case "smoke":
            // CI: proves that a worker of this program starts and talks (ProcessingBenchmarks is
            // linked with -static-stdlib in every configuration), without timing anything that
            // matters.
            report("smoke", "spawn_roundtrip", median(try await spawnRoundTrips(2)), "ms")
            report("smoke", "message_roundtrip", median(try await messageRoundTrips(10)), "us")
            try await checkClosures()
            report("smoke", "pipe_roundtrip", try await pipeFigures(count: 10, blobs: 2, size: 1 << 16).roundTrip, "us")
            report("smoke", "share_counter_final_count",
                   Double(try await shareCounter(processes: 2, increments: 100, rounds: 1).finalCount), "count")
        case "spares":
            try await reportSpares()
        case "startup":
            // The cold start figures alone, to compare two builds run by turns (scripts/bench-startup).
            report("spawn_roundtrip", "median", median(try await spawnRoundTrips(40)), "ms")
            report("map_tiny", "cold_100_items", try await coldMapTiny(10, spares: false), "ms")
        case "throughput":
            // The 1 MiB one-way figures alone, three times over.
            for _ in 0..<3 {
                let throughput = try await messageThroughput(count: 200, size: 1 << 20)
                report("message_throughput", "parent_to_child", throughput.toChild, "MB/s")
                report("message_throughput", "child_to_parent", throughput.toParent, "MB/s")
                report("pipe_roundtrip", "one_way_1mib",
                       try await pipeFigures(count: 10, blobs: 200, size: 1 << 20).megabytesPerSecond, "MB/s")
            }
        case "latency":
            // The round trips alone, three times over (they are the figures that vary run to run).
            for _ in 0..<3 {
                report("message_roundtrip", "median", median(try await messageRoundTrips(1000)), "us")
                report("message_roundtrip", "socketpair_threads_median", median(socketPairRoundTrips(1000)), "us")
                report("pipe_roundtrip", "median", try await pipeFigures(count: 1000, blobs: 20, size: 1 << 20).roundTrip, "us")
            }
        case "remote":
            try await reportRemoteRoundTrip()
            try await reportRemoteMapCPU()
        case "actor":
            try await reportActorCalls()
        case "relay":
            try await reportRelays()
        case "share_counter":
            try await reportShareCounter()
        // For `perf record` (and traces): one figure, over and over.
        case "profile-map-tiny":
            // Warm map_tiny in a loop for a few seconds.
            let pool = Pool(workers: 2)
            let items = Array(0..<10_000)
            let start = clock.now
            var maps = 0
            while clock.now - start < .seconds(5) {
                _ = try await pool.map(items, Twice())
                maps += 1
            }
            await pool.close()
            report("profile", "map_tiny_items_per_second", Double(maps * items.count) / 5, "items/s")
        case "profile-spare":
            report("profile", "spawn_roundtrip_warm_spare", median(try await spareRoundTrips(200)), "ms")
        case "profile-pipe":
            report("profile", "pipe_roundtrip", try await pipeFigures(count: 200_000, blobs: 1, size: 1).roundTrip, "us")
        case "profile-share":
            report("profile", "share_one_process", try await shareCounterOneProcess(increments: 2_000_000), "increments/s")
        case "profile-relay":
            report("profile", "relay_tiny_1m", try await relayTiny(count: 1_000_000).rate, "messages/s")
        case "profile-actor":
            try await reportActorCalls(count: 5, callsPerCaller: 20_000)
        default:
            try await runAll()
        }
    }

    /// Every benchmark, in order.
    static func runAll() async throws {
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
        let tiny = try await mapTiny(count: 10_000)
        report("map_tiny", "warm_items_per_second", tiny.itemsPerSecond, "items/s")
        report("map_tiny", "cold_100_items", tiny.coldMilliseconds, "ms")
        report("map_tiny", "warm_items_per_second_closure", try await mapTinyClosure(count: 10_000), "items/s")
        try await checkClosures()
        let cpu = try await mapCPU()
        report("map_cpu", "serial", cpu.serial * 1e3, "ms")
        report("map_cpu", "two_workers", cpu.parallel * 1e3, "ms")
        report("map_cpu", "speedup", cpu.serial / cpu.parallel, "x")
        report("unordered_first", "first_result", try await unorderedFirst(), "ms")
        let pipe = try await pipeFigures(count: 1000, blobs: 200, size: 1 << 20)
        report("pipe_roundtrip", "median", pipe.roundTrip, "us")
        report("pipe_roundtrip", "one_way_1mib", pipe.megabytesPerSecond, "MB/s")
        try await reportShareCounter()
        try await reportRelays()
        try await reportActorCalls()
        try await reportSpares()
    }
}
