import Foundation
import Synchronization
import Testing
@testable import Processing

/// The fixture program (`Tests/Fixture/main.swift`, built beside the test binary) running one
/// scenario as a separate process: a user's app, with stdio the test controls.
///
/// Its stdout is read on a thread of its own; the async methods poll what arrived, so no
/// cooperative-pool thread blocks. Every wait is bounded; `deinit` kills the program.
final class FixtureProgram: @unchecked Sendable {  // `process` and the pipes: set in init, then read-only
    private let process: TestCommand
    private let input = Pipe()
    private let output = Pipe()
    /// The program's stderr: a pipe the test reads (or, to test a full stderr, does not).
    let errors = Pipe()
    private let received = Collected()
    private let receivedErrors = Collected()

    /// Bytes a reading thread appends and the test reads.
    final class Collected: Sendable {
        let bytes = Synchronization.Mutex<[UInt8]>([])
        /// Whether the reading thread has seen EOF.
        let ended = Atomic(false)
        var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
    }

    /// The fixture's path: beside this test binary.
    static var path: String {
        URL(fileURLWithPath: Syscall.executablePath()).deletingLastPathComponent()
            .appendingPathComponent("ProcessingFixture").path
    }

    /// Starts `executable` (the fixture, or a copy of it) with `scenario`. Its stderr is read
    /// too unless `readsStderr` is false (then `errors` is the test's to read, or to leave full).
    /// `stderr`: a descriptor of the test's for the program's stderr (a pseudo-terminal's
    /// side), instead of a pipe; `errors` is then unused.
    init(_ scenario: String, executable: String = FixtureProgram.path, readsStderr: Bool = true,
         stderr: FileHandle? = nil, environment: [String: String] = [:]) throws {
        let readsStderr = readsStderr && stderr == nil
        // A binary copied just now can be "busy" (ETXTBSY) for a moment: a child another test
        // spawns meanwhile holds the copy's write descriptor until it execs.
        var attempts = 0
        while true {
            do {
                process = try TestCommand(executable, [scenario], environment: environment,
                                          stdin: input.fileHandleForReading.fileDescriptor,
                                          stdout: output.fileHandleForWriting.fileDescriptor,
                                          stderr: (stderr ?? errors.fileHandleForWriting).fileDescriptor)
                break
            } catch where attempts < 100 {
                attempts += 1
                usleep(10_000)
            }
        }
        // The program has its own copies: the pipes end when it (and what it started) is done.
        try input.fileHandleForReading.close()
        try output.fileHandleForWriting.close()
        if stderr == nil { try errors.fileHandleForWriting.close() }
        Self.collect(output.fileHandleForReading, into: received)
        if readsStderr {
            Self.collect(errors.fileHandleForReading, into: receivedErrors)
        } else {
            receivedErrors.ended.store(true, ordering: .releasing)
        }
    }

    /// Reads `handle` until EOF on a thread of its own.
    private static func collect(_ handle: FileHandle, into buffer: Collected) {
        let box = UncheckedBox(handle)
        Thread {
            while true {
                let data = box.value.availableData
                if data.isEmpty { return buffer.ended.store(true, ordering: .releasing) }
                buffer.bytes.withLock { $0.append(contentsOf: data) }
            }
        }.start()
    }

    deinit {
        process.kill()
    }

    var pid: pid_t { process.pid }

    /// What the program wrote to stdout so far.
    var stdout: String { received.text }

    /// What the program wrote to stderr so far (when the test reads it).
    var stderr: String { receivedErrors.text }

    /// Both, for finding `key: value` lines wherever the scenario wrote them.
    private var reports: String { stdout + "\n" + stderr }

    /// The value of the first `key: value` line, once it has arrived; nil if `timeout` passes.
    func value(_ key: String, timeout: Duration = .seconds(60)) async throws -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let found = find(key) { return found }
            if !process.isRunning {
                // One last look once both pipes are read to the end (bounded: a grandchild may
                // hold them open): the line may have arrived with the exit.
                for _ in 0..<500 where !(received.ended.load(ordering: .acquiring)
                                         && receivedErrors.ended.load(ordering: .acquiring)) {
                    try await Task.sleep(for: .milliseconds(10))
                }
                return find(key)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    private func find(_ key: String) -> String? {
        reports.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)) }
    }

    /// Writes a line to the program's stdin.
    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// Waits for the program to exit; its termination status and reason, or nil if `timeout`
    /// passes (the program is killed then).
    func exit(timeout: Duration = .seconds(60)) async throws -> (status: Int32, signaled: Bool)? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                process.kill()
                return nil
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return (process.terminationStatus, process.signaled)
    }
}

/// Whether `pid` names a live process (not a zombie), polling until it is gone or `timeout` passes.
func isGone(_ pid: Int, within timeout: Duration = .seconds(10)) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if !isRunning(pid) { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return false
}

/// A value that is not `Sendable`, handed to one other thread that alone uses it from then on.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
