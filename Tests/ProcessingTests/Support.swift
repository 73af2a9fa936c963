import Foundation
import Synchronization
import Testing
@testable import Processing

/// An error with a Codable value, so tests can check it crosses intact.
struct TestFailure: Error, Codable, Equatable {
    var code: Int
}

/// The seeds' first example: counts its runs.
struct Counter: Skprocess {
    var counter = 0
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws { counter += 1 }
    func result() async throws -> Int { counter }
}

/// Runs until stopped, sleeping a little each run; reports whether `onFinish` ran.
struct Sleeper: Skprocess {
    var runsDone = 0
    var finished = false
    var tellEachRun = false
    var processConfig = ProcessConfig(runs: nil)
    mutating func run() async throws {
        if tellEachRun { try await tell(runsDone) }
        try await Task.sleep(for: .milliseconds(5))
        runsDone += 1
    }
    mutating func onFinish() async throws { finished = true }
    func result() async throws -> SleeperReport { SleeperReport(runsDone: runsDone, finished: finished) }
}

struct SleeperReport: Codable, Sendable, Equatable {
    var runsDone: Int
    var finished: Bool
}

/// Child processes of this process, found through /proc (zombies included).
func childProcessIDs() -> [pid_t] {
    let me = getpid()
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry), processParent(pid) == me else { return nil }
        return pid
    }
}

/// The parent of process `pid` as /proc says (a zombie's too), or nil if there is no such process.
func processParent(_ pid: pid_t) -> pid_t? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after "(comm)": state, ppid, ...
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 ? pid_t(fields[1]) : nil
}

/// Waits (up to 2 s) until this process has no child left, and what the reactor held of them
/// is closed. A process ends on its result once its child has closed its output, and the child
/// is reaped a moment later: counts of children and descriptors taken right after a result can
/// still include it.
func awaitChildrenReaped() async throws {
    for _ in 0..<200 where !childProcessIDs().isEmpty {
        try await Task.sleep(for: .milliseconds(10))
    }
    // The reactor closes a child's descriptors in the same job that reaps it: a job queued
    // after the reap runs after those closes.
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        Reactor.shared.execute { done.resume() }
    }
}

/// How many fds this process has open.
func openFileDescriptorCount() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
}

/// Expects `body` to throw an error of type `E`, and returns it.
func expectError<E, T>(_ expected: E.Type, sourceLocation: SourceLocation = #_sourceLocation,
                              _ body: () async throws -> T) async -> E? {
    do {
        let value = try await body()
        Issue.record("expected \(E.self), got the value \(value)", sourceLocation: sourceLocation)
    } catch let error as E {
        return error
    } catch {
        Issue.record("expected \(E.self), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// What a call ended with, set once by the task running it.
final class CallOutcome<T: Sendable>: Sendable {
    let result = Synchronization.Mutex<Result<T, any Error>?>(nil)
}

/// Runs `body` in a task of its own and waits up to `timeout` for it: its result, or nil if it
/// had not finished by then (the task is cancelled and left to end). A call that hangs fails
/// the test that expected it to return, instead of blocking the suite until its time limit.
func outcome<T: Sendable>(within timeout: Duration = .seconds(20),
                          _ body: @escaping @Sendable () async throws -> T) async throws -> Result<T, any Error>? {
    let box = CallOutcome<T>()
    let task = Task {
        do {
            let value = try await body()
            box.result.withLock { $0 = .success(value) }
        } catch {
            box.result.withLock { $0 = .failure(error) }
        }
    }
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let result = box.result.withLock({ $0 }) { return result }
        try await Task.sleep(for: .milliseconds(5))
    }
    task.cancel()
    return nil
}

/// This process's resident memory, in bytes.
func residentBytes() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = statm.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(getpagesize()) : 0
}

/// The mutex for the tests' own shared state: under ThreadSanitizer (`.ci/tsan`) the library's
/// pthread one, which TSan sees (it cannot see `Synchronization.Mutex`, and reported the
/// vault server's counts as races); otherwise `Synchronization.Mutex`.
#if PROCESSING_TSAN
typealias TestMutex<Value> = PthreadMutex<Value>
#else
typealias TestMutex<Value> = Synchronization.Mutex<Value>
#endif
