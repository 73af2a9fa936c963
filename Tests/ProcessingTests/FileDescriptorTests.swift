import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

/// Owned descriptors: each is closed exactly once, when dropped or closed, and not when
/// released. Run in a child, since the test asks whether descriptor numbers are open, and
/// another test in this process could reuse them meanwhile.
@Suite("Owned file descriptors", .timeLimit(.minutes(1)))
struct FileDescriptorTests {
    @Test("a dropped or closed descriptor is closed; a released one stays open")
    func ownership() async throws {
        let report = try await DescriptorOwnershipProbe().start().result()
        #expect(report == ["dropped pair closed", "closed end closed", "released end open"])
    }
}

/// Makes descriptors and drops, closes and releases them; says of each what became of it.
struct DescriptorOwnershipProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}

    private static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

    func result() async throws -> [String] {
        var report: [String] = []
        var numbers: (Int32, Int32) = (-1, -1)
        do {
            let pair = try Syscall.socketPair()
            numbers = (pair.first.rawValue, pair.second.rawValue)
        }
        report.append(!Self.isOpen(numbers.0) && !Self.isOpen(numbers.1) ? "dropped pair closed" : "dropped pair left open")
        let pipe = try Syscall.pipe().release()
        let read = FileDescriptor(owning: pipe.read)
        read.close()
        report.append(Self.isOpen(pipe.read) ? "closed end left open" : "closed end closed")
        let write = FileDescriptor(owning: pipe.write).release()
        report.append(Self.isOpen(write) ? "released end open" : "released end closed")
        Syscall.close(write)
        return report
    }
}
