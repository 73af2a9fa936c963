import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Processing

// Glibc's module hides the pseudo-terminal calls (they need _XOPEN_SOURCE); they are plain C.
@_silgen_name("posix_openpt") private func posix_openpt(_ flags: Int32) -> Int32
@_silgen_name("grantpt") private func grantpt(_ fd: Int32) -> Int32
@_silgen_name("unlockpt") private func unlockpt(_ fd: Int32) -> Int32
@_silgen_name("ptsname") private func ptsname(_ fd: Int32) -> UnsafeMutablePointer<CChar>?

/// The pool map's progress bar: drawn in place on a terminal (tested through a pseudo-terminal
/// of the test's own), plain lines otherwise.
@Suite("Progress bar", .timeLimit(.minutes(1)))
struct ProgressBarTests {
    @Test("a line shows the title, the bar, done/total, the percentage, the time left and the rate")
    func line() {
        let bar = ProgressBar(title: "squares", isTerminal: true, width: 80)
        let start = ContinuousClock.now
        let text = bar.line(PoolProgress(completed: 25, failed: 1, total: 100), now: start + .seconds(5))
        #expect(text.hasPrefix("squares  ["))
        #expect(text.contains("25/100 25%"))
        #expect(text.contains("1 failed"))
        #expect(text.contains("ETA "))
        #expect(bar.line(PoolProgress(completed: 3, failed: 0, total: nil), now: start + .seconds(1)).contains("3/?"))
        #expect(ProgressBar.duration(9) == "9s")
        #expect(ProgressBar.duration(245) == "4m05s")
        #expect(ProgressBar.duration(7380) == "2h03m")
    }

    @Test("on a terminal: redrawn in place, ending with the full bar and a newline")
    func terminal() async throws {
        let master = posix_openpt(O_RDWR | O_NOCTTY)
        try #require(master >= 0)
        defer { close(master) }
        try #require(grantpt(master) == 0 && unlockpt(master) == 0)
        let name = String(cString: try #require(ptsname(master)))
        let slave = open(name, O_RDWR | O_NOCTTY)
        try #require(slave >= 0, "no pseudo-terminal: \(name)")
        let program = try FixtureProgram("progress-bar", stderr: FileHandle(fileDescriptor: slave, closeOnDealloc: true))
        #expect(try await program.value("sum") == "338350")
        #expect(try await program.exit()?.status == 0)
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while case let count = buffer.withUnsafeMutableBytes({ read(master, $0.baseAddress, $0.count) }), count > 0 {
            bytes += buffer[..<count]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let draws = text.components(separatedBy: "\r\u{1B}[K").dropFirst()
        #expect(draws.count >= 2, "drawn once only: \(text)")
        #expect(draws.last?.contains("100/100 100%") == true)
        #expect(draws.last?.contains("[" + String(repeating: "█", count: 10)) == true)
        #expect(text.hasSuffix("\n") || text.hasSuffix("\r\n"))
        #expect(draws.dropLast().allSatisfy { !$0.contains("\n") }, "a redraw left a line behind")
    }

    @Test("not a terminal: a few plain lines, the last at 100%")
    func pipe() async throws {
        let program = try FixtureProgram("progress-bar")
        #expect(try await program.value("sum") == "338350")
        #expect(try await program.exit()?.status == 0)
        let lines = program.stderr.split(separator: "\n").filter { $0.hasPrefix("squares") }
        #expect(!program.stderr.contains("\r"))
        #expect((2...11).contains(lines.count), "\(lines.count) lines")
        #expect(lines.last?.contains("100/100 100%") == true)
    }
}
