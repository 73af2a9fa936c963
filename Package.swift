// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Processing",
    products: [
        .library(name: "Processing", targets: ["Processing"]),
        .executable(name: "ProcessingBenchmarks", targets: ["ProcessingBenchmarks"]),
        .executable(name: "ProcessingBenchmarksDynamic", targets: ["ProcessingBenchmarksDynamic"]),
    ],
    targets: [
        // C: the worker entry (an ELF constructor) and the syscalls the Glibc module does not show.
        .target(name: "CProcessingShims"),
        .target(name: "Processing", dependencies: ["CProcessingShims"]),
        // Linked statically: a worker that need not load the Swift runtime, Foundation and
        // Dispatch as shared libraries starts about twice as fast. Objects compiled against
        // the shared Foundation module do not name its static dependencies, so they are listed.
        // The benchmarks, in two programs that differ only in how they are linked.
        .target(name: "ProcessingBenchmarkSuite", dependencies: ["Processing"]),
        .executableTarget(
            name: "ProcessingBenchmarks", dependencies: ["ProcessingBenchmarkSuite"],
            linkerSettings: [.unsafeFlags([
                "-static-stdlib", "-Xlinker", "--start-group",
                "-lFoundation", "-lFoundationEssentials", "-lFoundationInternationalization",
                "-lCoreFoundation", "-l_FoundationICU", "-l_FoundationCShims", "-l_FoundationCollections",
                "-lswiftSynchronization", "-lswiftDispatch", "-ldispatch", "-lBlocksRuntime",
                "-Xlinker", "--end-group",
                // lld: gold repeats glibc's link-time warning about the mktemp call inside the
                // toolchain's static Foundation, which is not this package's to fix.
                "-use-ld=lld",
            ])]),
        // Linked as `swift build` links a program by default: the Swift runtime, Foundation and
        // Dispatch as shared libraries.
        .executableTarget(name: "ProcessingBenchmarksDynamic", dependencies: ["ProcessingBenchmarkSuite"]),
        // A program the tests run as a separate process, as a user's app would be: dynamically
        // linked, with top-level code in main.swift, started with whatever stdio a test gives it.
        .executableTarget(name: "ProcessingFixture", dependencies: ["Processing"], path: "Tests/Fixture"),
        .testTarget(name: "ProcessingTests", dependencies: ["Processing"]),
    ]
)
