// The benchmark suite linked dynamically (the Swift runtime, Foundation and Dispatch as shared
// libraries), as `swift build` links a user's program: how a worker of such a program starts.
// `swift run -c release ProcessingBenchmarksDynamic spares`.
import ProcessingBenchmarkSuite

try await BenchmarkSuite.run(Array(CommandLine.arguments.dropFirst()))
