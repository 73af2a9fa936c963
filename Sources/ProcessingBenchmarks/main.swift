// `swift run -c release ProcessingBenchmarks` runs every benchmark, `... ProcessingBenchmarks
// spares` one mode (Sources/ProcessingBenchmarkSuite/Run.swift lists them). This program is
// linked statically; ProcessingBenchmarksDynamic is the same suite linked as `swift build`
// links a program by default.
import ProcessingBenchmarkSuite

try await BenchmarkSuite.run(Array(CommandLine.arguments.dropFirst()))
