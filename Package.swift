// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Processing",
    products: [
        .library(name: "Processing", targets: ["Processing"]),
        .executable(name: "ProcessingBenchmarks", targets: ["ProcessingBenchmarks"]),
    ],
    targets: [
        // C: the worker entry (an ELF constructor) and the syscalls the Glibc module does not show.
        .target(name: "CProcessingShims"),
        .target(name: "Processing", dependencies: ["CProcessingShims"]),
        .executableTarget(name: "ProcessingBenchmarks", dependencies: ["Processing"]),
        .testTarget(name: "ProcessingTests", dependencies: ["Processing"]),
    ]
)
