import Foundation
import Testing
@testable import Processing

/// The seeds' shared state: a counter and a log.
struct ShareStats: Codable, Sendable, Equatable {
    var counter = 0
    var log: [String] = []
    var perProcess: [Int] = []
}

/// Seed 000: increments the shared counter after each of its 10 runs.
struct ShareIncrementer: Skprocess {
    var share: Share<ShareStats>
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws {}
    mutating func postrun() async throws { try await share.update { $0.counter += 1 } }
}

/// Appends `lines` log lines, then increments its own slot `updates` times.
struct ShareWriter: Skprocess {
    var share: Share<ShareStats>
    var id: Int
    var lines = 0
    var updates = 0
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        for line in 0..<lines { try await share.update { $0.log.append("\(id):\(line)") } }
        for _ in 0..<updates { try await share.update { $0.counter += 1; $0.perProcess[id] += 1 } }
    }
}

struct ShareTimed: Codable, Sendable {
    var timer = Sktimer()
}

/// Adds a known duration to the shared timer in each of its 5 runs.
struct ShareTimerWorker: Skprocess {
    var share: Share<ShareTimed>
    var id: Int
    var processConfig = ProcessConfig(runs: 5)
    mutating func run() async throws {
        let duration = Duration.milliseconds(10 * id + currentRun)
        try await share.update { $0.timer.add(duration) }
    }
}

struct KillState: Codable, Sendable {
    /// Updates applied by the slow updaters; `applied` must always be `1...count`.
    var count = 0
    var applied: [Int] = []
    var bystander = 0
    var parent = 0
}

/// Updates in a loop with a slow closure (it holds the lock most of the time), telling the
/// parent after each update how many it has finished; runs until killed.
struct SlowUpdater: Skprocess {
    var share: Share<KillState>
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        var done = 0
        while true {
            try await share.update { state in
                state.count += 1
                usleep(UInt32.random(in: 100...1500))
                state.applied.append(state.count)
            }
            done += 1
            try await tell(done)
        }
    }
}

/// Updates its own counter `runs` times, pausing outside the lock between updates.
struct Bystander: Skprocess {
    var share: Share<KillState>
    var processConfig = ProcessConfig(runs: 200)
    mutating func run() async throws {
        try await share.update { $0.bystander += 1 }
        try await Task.sleep(for: .milliseconds(1))
    }
}

struct ShareBlob: Codable, Sendable {
    var bytes: [UInt8]
    var stamps: [Int] = []
}

/// Adds 1 to every byte of its stride of a large shared blob, `rounds` times.
struct BlobToucher: Skprocess {
    var share: Share<ShareBlob>
    var id: Int
    var processConfig = ProcessConfig(runs: 10)
    mutating func run() async throws {
        try await share.update { blob in
            for index in stride(from: id, to: blob.bytes.count, by: 2) { blob.bytes[index] &+= 1 }
            blob.stamps.append(id)
        }
    }
}

struct Journal: Codable, Sendable {
    var entries: [String] = []
}

/// Appends `count` entries of about 500 bytes, so that the state grows while shared.
struct JournalWriter: Skprocess {
    var share: Share<Journal>
    var id: Int
    var count: Int
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        let padding = String(repeating: "x", count: 500)
        for index in 0..<count { try await share.update { $0.entries.append("\(id):\(index):\(padding)") } }
    }
}

/// Updates until its share is stopped (then the update throws and the run fails).
struct UntilStopped: Skprocess {
    var share: Share<ShareStats>
    mutating func run() async throws {
        try await share.update { $0.counter += 1 }
        if currentRun == 0 { try await tell(true) }
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// Crashes in run 1 the first time (the share remembers), so that its retry decodes the share
/// from a checkpoint the dead child encoded.
struct CrashOnceUpdater: Skprocess {
    var share: Share<ShareStats>
    var processConfig = ProcessConfig(runs: 3, lives: 2)
    mutating func run() async throws {
        try await share.update { $0.counter += 1 }
        if currentRun == 1 {
            let first = try await share.update { state -> Bool in
                guard !state.log.contains("crashed") else { return false }
                state.log.append("crashed")
                return true
            }
            if first { fatalError("crashing once on purpose") }
        }
    }
    func result() async throws -> Int { try await share.counter }
}

/// Adds each item to the shared counter, in a pool worker.
struct AddToShare: PoolWork {
    var share: Share<ShareStats>
    func callAsFunction(_ x: Int) async throws -> Int {
        try await share.update { $0.counter += x; return $0.counter }
    }
}

/// Runs in a child so that its counts are not disturbed by tests beside it: makes shares,
/// hands them to grandchildren, copies and drops them, and counts fds and children.
struct ShareLeakProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> LeakReport {
        _ = try await Counter().start().result()  // the reactor's own fds exist from here on
        try await awaitChildrenReaped()
        let fdsBefore = openFileDescriptorCount()
        var results = 0
        for _ in 0..<5 {
            let share = try await Share(ShareStats())
            let copy = try BinaryDecoder().decode(Share<ShareStats>.self, from: BinaryEncoder().encode(share))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 { group.addTask { _ = try await ShareIncrementer(share: copy).start().result() } }
                try await group.waitForAll()
            }
            results += try await share.counter
            try await share.stop()
        }
        try await awaitChildrenReaped()
        return LeakReport(fdsBefore: fdsBefore, fdsAfter: openFileDescriptorCount(),
                          childrenAfter: childProcessIDs().count, results: results)
    }
}

/// A state held by reference: decoded afresh every time.
final class ShareBox: Codable, Sendable {
    let values: [Int]
    init(_ values: [Int]) { self.values = values }
}

@Suite("Share: one state for every process", .timeLimit(.minutes(1)))
struct ShareTests {
    // MARK: In one process

    @Test("update returns the closure's value; read and properties see it")
    func basics() async throws {
        let share = try await Share(ShareStats())
        let after = try await share.update { state -> Int in
            state.counter += 2
            state.log.append("hello")
            return state.counter
        }
        #expect(after == 2)
        #expect(try await share.counter == 2)
        #expect(try await share.log == ["hello"])
        #expect(try await share.read() == ShareStats(counter: 2, log: ["hello"]))
        #expect(share.isRunning)
        #expect(share.description.hasPrefix("Share<ShareStats> "))
    }

    @Test("a throwing closure changes nothing")
    func throwingClosure() async throws {
        let share = try await Share(ShareStats(counter: 1))
        await #expect(throws: TestFailure(code: 3)) {
            try await share.update { state in
                state.counter = 99
                throw TestFailure(code: 3)
            }
        }
        #expect(try await share.counter == 1)
        try await share.update { $0.counter += 1 }
        #expect(try await share.counter == 2)
    }

    @Test("a decoded copy in the same process is the same share and the same mapping")
    func copies() async throws {
        let share = try await Share(ShareStats())
        let binary = try BinaryDecoder().decode(Share<ShareStats>.self, from: BinaryEncoder().encode(share))
        let json = try JSONDecoder().decode(Share<ShareStats>.self, from: JSONEncoder().encode(share))
        #expect(binary == share && json == share)
        #expect(binary.storage === share.storage)
        try await binary.update { $0.counter += 1 }
        try await json.update { $0.counter += 1 }
        #expect(try await share.counter == 2)
    }

    @Test("stop makes reads and updates throw a clear error; start and clear")
    func lifecycle() async throws {
        let share = try await Share(ShareStats(counter: 5))
        try await share.update { $0.counter += 1 }
        try await share.stop()
        #expect(!share.isRunning)
        let error = try #require(await expectError(ProcessingError.self) { try await share.update { $0.counter += 1 } })
        #expect(error.code == .shareStopped)
        #expect(error.message.contains(share.description))
        #expect(error.message.contains("start()"))
        #expect(await expectError(ProcessingError.self) { try await share.counter }?.code == .shareStopped)
        try await share.start()
        #expect(try await share.counter == 6)
        try await share.clear()
        #expect(try await share.read() == ShareStats(counter: 5))
        try await share.stop()
        try await share.clear()  // clear works while stopped
        try await share.start()
        #expect(try await share.counter == 5)
    }

    @Test("withShare stops its share when the scope ends, by return or by throw")
    func scope() async throws {
        let kept = try await withShare(ShareStats()) { share in
            try await share.update { $0.counter += 1 }
            #expect(try await share.counter == 1)
            return share
        }
        #expect(!kept.isRunning)
        #expect(await expectError(ProcessingError.self) { try await kept.read() }?.code == .shareStopped)

        var escaped: Share<ShareStats>?
        await #expect(throws: TestFailure(code: 1)) {
            try await withShare(ShareStats()) { share in
                escaped = share
                throw TestFailure(code: 1)
            }
        }
        #expect(escaped?.isRunning == false)
    }

    @Test("a share whose every holder is gone cannot be decoded, and says why")
    func unreachable() async throws {
        var share: Share<ShareStats>? = try await Share(ShareStats())
        let bytes = try BinaryEncoder().encode(share!)
        share = nil
        let error = try #require(await expectError(ProcessingError.self) {
            try BinaryDecoder().decode(Share<ShareStats>.self, from: bytes)
        })
        #expect(error.code == .shareUnavailable)
        #expect(error.message.contains("keep it"))
    }

    @Test("the state grows past its slots many times, and clear still brings back the initial state")
    func growsInProcess() async throws {
        let share = try await Share(Journal(entries: ["first"]))
        for index in 0..<300 { try await share.update { $0.entries.append(String(repeating: "y", count: index)) } }
        let entries = try await share.entries
        #expect(entries.count == 301)
        #expect(entries.last == String(repeating: "y", count: 299))
        try await share.clear()
        #expect(try await share.entries == ["first"])
    }

    @Test("8 tasks in one process, 500 updates each")
    func tasksInOneProcess() async throws {
        let share = try await Share(ShareStats())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<500 { try await share.update { $0.counter += 1 } } }
            }
            try await group.waitForAll()
        }
        #expect(try await share.counter == 4000)
    }

    @Test("a class state works (decoded afresh each time)")
    func classState() async throws {
        let share = try await Share(ShareBox([1]))
        try await share.update { $0 = ShareBox($0.values + [2]) }
        #expect(try await share.values == [1, 2])
    }

    // MARK: Across processes (the seeds' examples)

    @Test("seed 000: 10 processes × 10 runs each incrementing the counter give exactly 100")
    func tenByTen() async throws {
        let share = try await Share(ShareStats())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 { group.addTask { _ = try await ShareIncrementer(share: share).start().result() } }
            try await group.waitForAll()
        }
        #expect(try await share.counter == 100)
    }

    @Test("log lines appended from 4 processes all arrive, each process's in its order")
    func logLines() async throws {
        let share = try await Share(ShareStats())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 0..<4 { group.addTask { _ = try await ShareWriter(share: share, id: id, lines: 25).start().result() } }
            try await group.waitForAll()
        }
        let log = try await share.log
        #expect(log.count == 100)
        for id in 0..<4 {
            #expect(log.filter { $0.hasPrefix("\(id):") } == (0..<25).map { "\(id):\($0)" })
        }
    }

    @Test("an Sktimer in the state aggregates the times of every process")
    func timer() async throws {
        let share = try await Share(ShareTimed())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 1...4 { group.addTask { _ = try await ShareTimerWorker(share: share, id: id).start().result() } }
            try await group.waitForAll()
        }
        let timer = try await share.timer
        let expected = (1...4).flatMap { id in (0..<5).map { 10 * id + $0 } }
        // Sktimer keeps seconds as Doubles: compare in milliseconds, to well under one.
        func milliseconds(_ duration: Duration) -> Double { duration.seconds * 1000 }
        #expect(timer.count == 20)
        #expect(abs(milliseconds(timer.total) - Double(expected.reduce(0, +))) < 0.001)
        #expect(abs(milliseconds(timer.min) - 10) < 0.001 && abs(milliseconds(timer.max) - 44) < 0.001)
    }

    @Test("contention: 8 processes × 250 updates")
    func eightProcesses() async throws {
        let share = try await Share(ShareStats(perProcess: Array(repeating: 0, count: 8)))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 0..<8 { group.addTask { _ = try await ShareWriter(share: share, id: id, updates: 250).start().result() } }
            try await group.waitForAll()
        }
        let stats = try await share.read()
        #expect(stats.counter == 2000)
        #expect(stats.perProcess == Array(repeating: 250, count: 8))
    }

    @Test("a 1 MiB state updated from 2 processes")
    func oneMebibyte() async throws {
        let size = 1 << 20
        let share = try await Share(ShareBlob(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0) }))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 0..<2 { group.addTask { _ = try await BlobToucher(share: share, id: id).start().result() } }
            try await group.waitForAll()
        }
        let blob = try await share.read()
        #expect(blob.stamps.count == 20)
        #expect(blob.bytes.count == size)
        #expect(blob.bytes.indices.allSatisfy { blob.bytes[$0] == UInt8(truncatingIfNeeded: $0 + 10) })
    }

    @Test("a state that grows while 3 processes share it")
    func growsWhileShared() async throws {
        let share = try await Share(Journal())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 0..<3 { group.addTask { _ = try await JournalWriter(share: share, id: id, count: 150).start().result() } }
            // The parent reads while the children grow it.
            group.addTask {
                var seen = 0
                while seen < 450 {
                    let count = try await share.entries.count
                    #expect(count >= seen)
                    seen = count
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            try await group.waitForAll()
        }
        let entries = try await share.entries
        #expect(entries.count == 450)
        for id in 0..<3 {
            #expect(entries.filter { $0.hasPrefix("\(id):") }.map { $0.split(separator: ":")[1] } == (0..<150).map { "\($0)"[...] })
        }
    }

    @Test("a Share in Pool work values")
    func inPoolWork() async throws {
        let share = try await Share(ShareStats())
        let totals = try await withPool(workers: 2) { pool in try await pool.map(1...100, AddToShare(share: share)) }
        #expect(totals.count == 100)
        #expect(try await share.counter == 5050)
    }

    @Test("a retried process finds the share through the parent when the child that encoded it is dead")
    func retriedProcess() async throws {
        let share = try await Share(ShareStats())
        let total = try await CrashOnceUpdater(share: share).start().result()
        // Runs 0 and 1, then the crash; the retry resumes at run 1: runs 1 and 2.
        #expect(total == 4)
        #expect(try await share.log == ["crashed"])
    }

    // MARK: Crashes, stops and leaks

    @Test("SIGKILL mid-update, 30 times: no finished update lost, no half update seen, nobody blocked")
    func killedMidUpdate() async throws {
        let share = try await Share(KillState())
        let bystander = try await Bystander(share: share).start()
        let recoveredBefore = share.storage.recoveredLocks
        var kills = 0
        for _ in 0..<30 {
            let before = try await share.count
            let updater = try await SlowUpdater(share: share).start()
            let first = try #require(try await updater.listen(Int.self, timeout: .seconds(30)))
            try await Task.sleep(for: .microseconds(Int.random(in: 0...4000)))
            await updater.kill()
            try await updater.wait()
            kills += 1
            // Every report the child sent before it died is queued by the time wait() returns.
            var reported = first
            while let done = try? await updater.listen(Int.self, timeout: .zero) { reported = done }
            // Not blocked: the parent updates at once after the kill.
            try await share.update { $0.parent += 1 }
            let state = try await share.read()
            let finished = state.count - before
            // Every reported update is there; at most one more (finished, killed before telling).
            #expect(finished == reported || finished == reported + 1, "finished \(finished), reported \(reported)")
            // No half update: `count` and `applied` always change together.
            #expect(state.applied == (0..<state.count).map { $0 + 1 })
        }
        _ = try await bystander.result()
        let state = try await share.read()
        #expect(state.bystander == 200)
        #expect(state.parent == kills)
        let recovered = share.storage.recoveredLocks - recoveredBefore
        // Most kills land inside the slow closure, holding the lock.
        #expect(recovered > 0)
    }

    @Test("stop while a child updates: the child's update throws a clear error")
    func stopWhileChildUses() async throws {
        let share = try await Share(ShareStats())
        let child = try await UntilStopped(share: share).start()
        _ = try await child.listen(Bool.self, timeout: .seconds(30))
        try await share.stop()
        let error = try #require(await expectError(RunError.self) { try await child.result() })
        let cause = try #require(error.underlying?.value as? ProcessingError)
        #expect(cause.code == .shareStopped)
        #expect(cause.message.contains(share.description) && cause.message.contains("start()"))
        try await share.start()
        #expect(try await share.counter >= 1)
    }

    @Test("no fd and no child left behind")
    func noLeaks() async throws {
        let report = try await ShareLeakProbe().start().result()
        #expect(report.results == 5 * 40)
        #expect(report.fdsAfter == report.fdsBefore)
        #expect(report.childrenAfter == 0)
    }
}
