import Foundation
import Testing
@testable import Processing

/// Records every hook call, with the run it saw.
struct HookRecorder: Skprocess {
    var calls: [String] = []
    var processConfig = ProcessConfig(runs: 2)
    mutating func prerun() async throws { calls.append("prerun \(currentRun)") }
    mutating func run() async throws { calls.append("run \(currentRun)") }
    mutating func postrun() async throws { calls.append("postrun \(currentRun)") }
    mutating func onFinish() async throws { calls.append("onFinish \(currentRun)") }
    func result() async throws -> [String] { calls + ["result"] }
}

/// Throws `TestFailure(code: 7)` from one hook in one run.
struct FailingHook: Skprocess {
    var failIn: ProcessSection
    var failAtRun = 1
    var processConfig = ProcessConfig(runs: 3)
    func fail(_ section: ProcessSection) throws {
        if section == failIn && (section == .onFinish || section == .result || currentRun == failAtRun) {
            throw TestFailure(code: 7)
        }
    }
    mutating func prerun() async throws { try fail(.prerun) }
    mutating func run() async throws { try fail(.run) }
    mutating func postrun() async throws { try fail(.postrun) }
    mutating func onFinish() async throws { try fail(.onFinish) }
    func result() async throws -> Int { try fail(.result); return 0 }
}

/// Fails in `run`, and its `error(_:)` either recovers or throws something else.
struct RecoveringProcess: Skprocess {
    var recover: Bool
    var processConfig = ProcessConfig(runs: 5)
    mutating func run() async throws {
        if currentRun == 2 { throw TestFailure(code: 2) }
    }
    func result() async throws -> String { "finished" }
    mutating func error(_ error: any ProcessError) async throws -> String {
        guard recover else { throw TestFailure(code: 99) }
        return "recovered from \(type(of: error)) in run \(error.currentRun)"
    }
}

/// Stops itself from inside `run` in run 3.
struct SelfStopper: Skprocess {
    var runsDone = 0
    var finished = false
    mutating func run() async throws {
        runsDone += 1
        if currentRun == 3 { stop() }
    }
    mutating func onFinish() async throws { finished = true }
    func result() async throws -> SleeperReport { SleeperReport(runsDone: runsDone, finished: finished) }
}

/// Defines no result.
struct NoResultProcess: Skprocess {
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws {}
}

@Suite("Lifecycle hooks in real children", .timeLimit(.minutes(2)))
struct ProcessLifecycleTests {
    @Test("the counter with runs = 10 gives 10")
    func counter() async throws {
        let handle = try await Counter().start()
        #expect(try await handle.wait())
        #expect(try await handle.result() == 10)
        #expect(handle.currentRun == 10)
        #expect(!handle.isAlive)
        #expect(handle.error == nil)
    }

    @Test("hooks run in the seeds' order, each run seeing its own number")
    func hookOrder() async throws {
        let calls = try await HookRecorder().start().result()
        #expect(calls == [
            "prerun 0", "run 0", "postrun 0",
            "prerun 1", "run 1", "postrun 1",
            "onFinish 2", "result",
        ])
    }

    @Test("a process without result() returns NoResult")
    func noResult() async throws {
        #expect(try await NoResultProcess().start().result() == NoResult())
    }

    @Test("a result() whose type is not Codable is a compile error, not a silent NoResult",
          .timeLimit(.minutes(2)))
    func nonCodableResult() async throws {
        let refused = try await onPlainThread { try typecheck("""
            import Processing
            final class Report {}
            struct Reporter: Skprocess {
                mutating func run() async throws {}
                func result() async throws -> Report { Report() }
            }
            func use() async throws { _ = try await Reporter().start().result() }
            """) }
        #expect(refused.status != 0, "a non-Codable result() compiled")
        #expect(refused.output.contains("Encodable") || refused.output.contains("Decodable"), "\(refused.output)")
        // The same with a Codable result compiles: the refusal is about the type, not the setup.
        let accepted = try await onPlainThread { try typecheck("""
            import Processing
            struct Reporter: Skprocess {
                mutating func run() async throws {}
                func result() async throws -> [Int] { [1] }
            }
            func use() async throws { let _: [Int] = try await Reporter().start().result() }
            """) }
        #expect(accepted.status == 0, "\(accepted.output)")
    }

    @Test("a throwing hook gives its error kind, the run, and the original error", arguments: ProcessSection.allCases.filter { $0 != .error })
    func throwingHook(section: ProcessSection) async throws {
        let handle = try await FailingHook(failIn: section).start()
        let error = await expectError((any ProcessError).self) { try await handle.result() }
        let expected: [ProcessSection: any SectionError.Type] = [
            .prerun: PreRunError.self, .run: RunError.self, .postrun: PostRunError.self,
            .onFinish: OnFinishError.self, .result: ResultError.self,
        ]
        let error2 = try #require(error)
        #expect(type(of: error2) == expected[section]!)
        #expect(error2.currentRun == (section == .onFinish || section == .result ? 3 : 1))
        #expect(error2.underlying?.value as? TestFailure == TestFailure(code: 7))
        #expect(error2.underlying?.typeName.hasSuffix("TestFailure") == true)
        #expect(handle.error != nil)
    }

    @Test("error(_:) can recover with a result")
    func errorHandlerRecovers() async throws {
        let result = try await RecoveringProcess(recover: true).start().result()
        #expect(result == "recovered from RunError in run 2")
    }

    @Test("error(_:) throwing something else gives ErrorHandlerError")
    func errorHandlerThrows() async throws {
        let handle = try await RecoveringProcess(recover: false).start()
        let error = try #require(await expectError(ErrorHandlerError.self) { try await handle.result() })
        #expect(error.currentRun == 2)
        #expect(error.underlying?.value as? TestFailure == TestFailure(code: 99))
    }

    @Test("stop() from the parent finishes the run, then onFinish and result run")
    func stopFromParent() async throws {
        let handle = try await Sleeper(tellEachRun: true).start()
        _ = try await handle.listen(Int.self, timeout: .seconds(30))
        await handle.stop()
        let report = try await handle.result()
        #expect(report.finished)
        #expect(report.runsDone >= 1)
    }

    @Test("stop() from inside the child finishes that run, then onFinish and result run")
    func stopFromChild() async throws {
        let report = try await SelfStopper().start().result()
        #expect(report == SleeperReport(runsDone: 4, finished: true))
    }

    @Test("tell, listen, stop and currentRun on a process value outside a child say where they work")
    func selfOperationsOutsideWorker() async throws {
        let error = try #require(await expectError(ProcessingError.self) { try await Counter().tell(1) })
        #expect(error.code == .notInWorker)
        #expect(error.message.contains("ProcessHandle"))
        #expect(Counter().currentRun == 0)
    }
}

/// Typechecks `source` against the Processing module this test binary was built with (blocks
/// its thread for the compiler: call it on a plain thread).
func typecheck(_ source: String) throws -> (status: Int32, output: String) {
    let build = URL(fileURLWithPath: Syscall.executablePath()).deletingLastPathComponent()
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("processing-typecheck-\(UUID()).swift")
    try source.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let searchPath = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/opt/swift/usr/bin"]
    let compiler = searchPath.map { $0 + "/swiftc" }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "swiftc"
    let output = Pipe()
    let null = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/null"))
    let process = try TestCommand(compiler, [
        "-typecheck", "-swift-version", "6",
        "-I", build.appendingPathComponent("Modules").path,
        "-Xcc", "-fmodule-map-file=" + build.appendingPathComponent("CProcessingShims.build/module.modulemap").path,
        file.path,
    ], stdin: null.fileDescriptor, stdout: output.fileHandleForWriting.fileDescriptor, stderr: output.fileHandleForWriting.fileDescriptor)
    try null.close()
    try output.fileHandleForWriting.close()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}
