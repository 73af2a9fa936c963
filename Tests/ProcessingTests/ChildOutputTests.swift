import Foundation
import Testing
@testable import Processing

/// What happens to a child's stdout and stderr (`ChildOutput`): forwarded line by line with
/// the process's name, inherited, captured or discarded. Forwarding and inheriting write to
/// the main process's own streams, so those run in the fixture program.
@Suite("Child output", .timeLimit(.minutes(1)))
struct ChildOutputTests {
    @Test("forwarded lines carry the process's name and pid, come whole and in order from two children at once; inherited ones come as written; discarded ones not at all")
    func forwardInheritDiscard() async throws {
        let program = try FixtureProgram("output-modes")
        #expect(try await program.value("stage") == "done")
        #expect(try await program.exit()?.status == 0)
        let stdout = program.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Through a pipe, a child's lines and the program's own prints keep their order.
        let ordered = stdout.filter { $0.hasPrefix("parent") || $0.contains("O line 0") }
        #expect(ordered.count == 3 && ordered.first == "parent before" && ordered.last == "parent after", "\(ordered)")
        for tag in ["A", "B"] {
            let mine = stdout.filter { $0.contains("\(tag) line") || $0.contains("\(tag) unended") }
            #expect(mine.count == 2001, "\(tag): \(mine.count) lines")
            let pattern = /Printer\[(\d+)\]: ([AB]) (line \d+|unended)/
            #expect(mine.allSatisfy { $0.wholeMatch(of: pattern) != nil }, "a line was cut or mixed with another")
            let numbers = mine.compactMap { $0.firstMatch(of: /line (\d+)$/).map { Int($0.1)! } }
            #expect(numbers == Array(0..<2000), "\(tag)'s lines out of order")
            #expect(mine.last?.hasSuffix("\(tag) unended") == true, "the last line without a newline was lost")
        }
        #expect(program.stderr.split(separator: "\n").contains { $0.wholeMatch(of: /Printer\[\d+\]: A to stderr/) != nil })
        #expect(stdout.contains("I line 0"))
        #expect(program.stderr.split(separator: "\n").contains("I to stderr"))
        #expect(!program.stdout.contains("D ") && !program.stderr.contains("D to stderr"))
    }

    @Test("captured output is readable from the handle, across retries, and stderr's tail is in the crash report")
    func capture() async throws {
        let handle = try await CapturePrinter(crashes: false).start()
        try await handle.wait()
        #expect(handle.capturedOutput.stdout == "out 0\nout 1\nlast")
        #expect(handle.capturedOutput.stderr == "err\n")
        let crasher = try await CapturePrinter(crashes: true).start()
        let error = await expectError(ProcessCrashError.self) { _ = try await crasher.result() }
        #expect(error?.stderrTail.contains("err") == true)
        // Two lives: both children's output.
        #expect(crasher.capturedOutput.stdout.components(separatedBy: "out 0").count == 3)
    }

    @Test("a pool's captured output holds what its workers printed, once it is closed")
    func poolCapture() async throws {
        let pool = Pool(workers: 2, stdout: .capture, stderr: .discard)
        _ = try await pool.map(0..<10) { item in
            print("item \(item)")
            return item
        }
        await pool.close()
        let lines = pool.capturedOutput.stdout.split(separator: "\n").map(String.init)
        #expect(lines.sorted() == (0..<10).map { "item \($0)" }.sorted())
    }
}

extension ChildOutputTests {
    @Test("a process ends on its result, before its child's exit: its output whole, its events once, its own children killed")
    func endsOnResult() async throws {
        let handle = try ProcessHandle(CapturePrinter(crashes: false))
        let events = handle.events
        try await handle.start()
        let childPID = try #require(handle.pid)
        try await handle.wait()
        #expect(handle.core.endedOnResult, "the process ended at its child's exit, not on its result")
        #expect(handle.capturedOutput.stdout == "out 0\nout 1\nlast")
        #expect(handle.capturedOutput.stderr == "err\n")
        #expect(!handle.isAlive && handle.pid == nil)
        #expect(await EventTests.kinds(events) == ["spawned", "ready", "exited"])
        // The child itself is reaped a moment later.
        for _ in 0..<200 where childProcessIDs().contains(childPID) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(!childProcessIDs().contains(childPID), "the child that sent its result was never reaped")
    }
}

/// Prints to both streams with both captured; crashes on each of its two lives if told to.
struct CapturePrinter: Skprocess {
    var crashes: Bool
    var processConfig = ProcessConfig(runs: 1, lives: 2, stdout: .capture, stderr: .capture)
    mutating func run() async throws {
        print("out 0")
        print("out 1")
        FileHandle.standardError.write(Data("err\n".utf8))
        print("last", terminator: "")
        if crashes { fatalError("after printing") }
    }
}
