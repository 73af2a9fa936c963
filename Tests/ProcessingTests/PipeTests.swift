import Foundation
import Testing
@testable import Processing

/// Doubles every Int from the pipe until it reads -1.
struct PipeDoubler: Skprocess {
    var pipe: ProcessPipe.Point
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        while true {
            let x = try await pipe.recv(Int.self)
            if x < 0 { return }
            try await pipe.send(x * 2)
        }
    }
}

/// Receives a point by message, then answers one value on it.
struct PointReceiver: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        guard let point = try await listen(ProcessPipe.Point.self, timeout: .seconds(20)) else { return }
        let greeting = try await point.recv(String.self)
        try await point.send(greeting + ", back")
    }
}

/// On a one-way pipe: reads one value, and reports what sending on the point said.
struct OneWayReader: Skprocess {
    var pipe: ProcessPipe.Point
    var processConfig = ProcessConfig(runs: 1)
    var got = 0
    var sendError = ""
    mutating func run() async throws {
        got = try await pipe.recv(Int.self)
        do {
            try await pipe.send(1)
        } catch let error as PipeEndpointError {
            sendError = error.message
        }
    }
    func result() async throws -> [String] { [String(got), sendError] }
}

/// Sends its run number on the pipe each run; its first life crashes in run 2.
struct PipeCounter: Skprocess {
    var pipe: ProcessPipe.Point
    var marker: String
    var processConfig = ProcessConfig(runs: 4, lives: 2)
    mutating func run() async throws {
        if currentRun == 2, !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            abort()
        }
        try await pipe.send(currentRun)
    }
}

/// Waits on its pipe forever (to be killed).
struct PipeWaiter: Skprocess {
    var pipe: ProcessPipe.Point
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        try await pipe.send("ready")
        _ = try await pipe.recv(Int.self)
    }
}

/// Pool work that reports each item on a pipe, and returns it.
struct ReportOnPipe: PoolWork {
    var pipe: ProcessPipe.Point
    func callAsFunction(_ x: Int) async throws -> Int {
        try await pipe.send(x)
        return x
    }
}

@Suite("Pipe pairs", .timeLimit(.minutes(2)))
struct PipeTests {
    @Test("a point stored in a process talks to the anchor both ways, and moves to the child")
    func roundTrip() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let handle = try await PipeDoubler(pipe: point).start()
        for x in [1, 20, 300] {
            try await anchor.send(x)
            #expect(try await anchor.recv(Int.self) == x * 2)
        }
        try await anchor.send(-1)
        try await handle.wait()
        // Handed over: the parent's copy is closed.
        await #expect(throws: PipeEndpointError.self) { try await point.send(1) }
    }

    @Test("a point sent to a running child with tell works there")
    func pointToRunningChild() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let handle = try await PointReceiver().start()
        try await handle.tell(point)
        try await anchor.send("hello")
        #expect(try await anchor.recv(String.self) == "hello, back")
        try await handle.wait()
    }

    @Test("one-way pipes refuse the wrong direction")
    func oneWay() async throws {
        let (anchor, point) = try ProcessPipe.pair(oneWay: true)
        let handle = try await OneWayReader(pipe: point).start()
        try await anchor.send(42)
        let report = try await handle.result()
        #expect(report[0] == "42")
        #expect(report[1].contains("one-way"))
        await #expect(throws: PipeEndpointError.self) { _ = try await anchor.recv(Int.self, timeout: .milliseconds(10)) }
    }

    @Test("a locked point and an anchor refuse to be sent, with errors that say why")
    func refusals() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        point.lock()
        let locked = await expectError(PipeEndpointError.self) { try ProcessHandle(PipeDoubler(pipe: point)) }
        #expect(locked?.message.contains("unlock()") == true)
        point.unlock()
        #expect(throws: PipeEndpointError.self) { try anchor.unlock() }
        let handle = try await PointReceiver().start()
        let anchorSent = await expectError(PipeEndpointError.self) { try await handle.tell(anchor) }
        #expect(anchorSent?.message.contains("anchor") == true)
        await handle.kill()
    }

    @Test("a peer that dies mid-recv, or closes, ends recv with an error")
    func deadPeer() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let handle = try await PipeWaiter(pipe: point).start()
        #expect(try await anchor.recv(String.self) == "ready")
        let waiting = Task { try await anchor.recv(Int.self) }
        try await Task.sleep(for: .milliseconds(50))
        await handle.kill()
        let error = await expectError(ProcessingError.self) { try await waiting.value }
        #expect(error?.code == .channelClosed)

        let (local, other) = try ProcessPipe.pair()
        other.close()
        await #expect(throws: ProcessingError.self) { _ = try await local.recv(Int.self) }
        local.close()
        await #expect(throws: PipeEndpointError.self) { try await local.send(1) }
    }

    @Test("a process with lives keeps its pipe across a crash (the checkpoint carries the point)")
    func acrossLives() async throws {
        let marker = NSTemporaryDirectory() + "processing-pipecounter-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let (anchor, point) = try ProcessPipe.pair()
        let handle = try await PipeCounter(pipe: point, marker: marker).start()
        var runs: [Int] = []
        for _ in 0..<4 { runs.append(try await anchor.recv(Int.self)) }
        #expect(runs == [0, 1, 2, 3])
        try await handle.wait()
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test("pool work carries a point to its workers")
    func poolWork() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let outputs = try await withPool(workers: 2) { pool in
            try await pool.map(0..<20, ReportOnPipe(pipe: point))
        }
        #expect(outputs == Array(0..<20))
        var reported: [Int] = []
        for _ in 0..<20 { reported.append(try await anchor.recv(Int.self)) }
        #expect(reported.sorted() == Array(0..<20))
    }

    @Test("pairs and their transfers leave no descriptor behind")
    func noLeaks() async throws {
        let probe = try await PipeLeakProbe().start().result()
        let (report, descriptors) = (probe.counts, probe.descriptors)
        #expect(report.results == 20)
        #expect(report.fdsAfter == report.fdsBefore, "now open: \(descriptors)")
        #expect(report.childrenAfter == 0)
    }

    @Test("a send queued when the peer's frames end (garbage) fails, instead of waiting forever")
    func sendAfterReadingEnded() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let vandal = try await PointVandal(pipe: point).start()
        let sent = try await outcome(within: .seconds(20)) {
            for _ in 0..<64 { try await anchor.send([UInt8](repeating: 1, count: 1 << 20)) }
        }
        #expect(sent != nil, "a send to a peer whose frames ended did not end")
        if case .success? = sent { Issue.record("64 MiB went to a peer that reads nothing") }
        await vandal.kill()
        _ = try await vandal.wait()
    }

    @Test("a channel started after it was closed watches nothing, even when its number is reused")
    func startAfterClose() async throws {
        // In a child: reusing a descriptor number on purpose is safe only where no other test
        // opens descriptors meanwhile.
        #expect(try await LateStartProbe().start().result() == 7,
                "the closed channel read the bytes of the descriptor that reused its number")
    }
}

/// Closes a channel, gives its number to a pipe, then starts the channel late (as a pipe's
/// first use racing its close does): returns how many bytes written to the pipe are still
/// there to read (7, unless the stale channel took them).
struct LateStartProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    func result() async throws -> Int {
        let (ours, peer) = try Syscall.socketPair().release()
        defer { Syscall.close(peer) }
        try Channel.prepare(ours)
        let channel = Channel(fd: ours, onFrame: { _ in }, onEnd: { _ in })
        await onReactor { channel.close() }
        let pipe = try Syscall.pipe().release()
        guard dup2(pipe.read, ours) == ours else { return -1 }
        defer { Syscall.close(ours); Syscall.close(pipe.read); Syscall.close(pipe.write) }
        channel.start()
        await onReactor {}
        _ = "stolen?".withCString { write(pipe.write, $0, 7) }
        try await Task.sleep(for: .milliseconds(50))
        var buffer = [UInt8](repeating: 0, count: 16)
        _ = fcntl(ours, F_SETFL, fcntl(ours, F_GETFL) | O_NONBLOCK)
        return buffer.withUnsafeMutableBytes { read(ours, $0.baseAddress, $0.count) }
    }
}

/// Runs `body` on the reactor and waits until it has run.
func onReactor(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { continuation in
        Reactor.shared.execute {
            body()
            continuation.resume()
        }
    }
}

/// Counts its own sockets, pipes and pidfds (in a child, undisturbed by tests running beside
/// it) around 20 pairs, each handed to a grandchild, used, and dropped. (Dispatch opens a
/// timerfd per clock lazily, so other descriptors are not counted.)
struct PipeLeakProbe: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
    struct Report: Codable, Sendable {
        var counts: LeakReport
        var descriptors: [String]
    }

    func result() async throws -> Report {
        let initial = Self.channelDescriptors().count
        try await exchange()   // warm up: the reactor's own fds exist from here on
        // The warm-up's own descriptors close on the reactor thread just after it: wait until
        // they have gone (none of them lives on), on a loaded machine too.
        var fdsBefore = Self.channelDescriptors().count
        for _ in 0..<1_000 where fdsBefore > initial {
            try await Task.sleep(for: .milliseconds(10))
            fdsBefore = min(fdsBefore, Self.channelDescriptors().count)
        }
        var results = 0
        for _ in 0..<20 {
            try await exchange()
            results += 1
        }
        // Closing happens on the reactor thread, just after the last reference goes.
        try await awaitChildrenReaped()
        var fdsAfter = Self.channelDescriptors().count
        for _ in 0..<1_000 where fdsAfter != fdsBefore {
            try await Task.sleep(for: .milliseconds(10))
            fdsAfter = Self.channelDescriptors().count
        }
        let descriptors = Self.channelDescriptors()
        return Report(counts: LeakReport(fdsBefore: fdsBefore, fdsAfter: fdsAfter, childrenAfter: childProcessIDs().count, results: results),
                      descriptors: descriptors)
    }

    /// This process's sockets, pipes and pidfds, as "fd -> target"; not its standard streams,
    /// nor the stderr forwarder's own copy of fd 2 (opened once, at the first child's output).
    static func channelDescriptors() -> [String] {
        let target = { (fd: String) in try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd) }
        let standard = Set(["0", "1", "2"].compactMap(target))
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).sorted().compactMap { fd in
            guard let target = target(fd), !standard.contains(target),
                  target.hasPrefix("socket:") || target.hasPrefix("pipe:") || target.contains("pidfd") else { return nil }
            return fd + " -> " + target
        }
    }

    private func exchange() async throws {
        let (anchor, point) = try ProcessPipe.pair()
        let handle = try await PipeDoubler(pipe: point).start()
        try await anchor.send(5)
        guard try await anchor.recv(Int.self) == 10 else { throw TestFailure(code: 10) }
        try await anchor.send(-1)
        try await handle.wait()
    }
}

/// Writes garbage on its pipe point's socket, then reads nothing.
struct PointVandal: Skprocess {
    var pipe: ProcessPipe.Point
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {
        // The point's socket: the one that is not the control channel.
        let sockets = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
            .filter { $0 != 3 && ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)"))?.hasPrefix("socket:") ?? false) }
        let garbage: [UInt8] = [0xff, 0xff, 0xff, 0x7f, 0x02]
        for fd in sockets { _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        try await Task.sleep(for: .seconds(600))
    }
}
