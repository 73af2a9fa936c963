/// Runs a process's lifecycle in the child: the hooks in the seeds' order, each failure
/// turned into its `ProcessError` kind with the run it happened in.
enum Lifecycle {
    static func run<P: Skprocess>(_ type: P.Type, state: [UInt8], context: WorkerContext) async -> Never {
        var process: P
        do {
            process = try BinaryDecoder().decode(P.self, from: state)
        } catch {
            await context.finish(failure: ProcessingError(.decodingFailed, """
                the state of \(String(reflecting: P.self)) could not be decoded in the child: \(error). \
                Check that its init(from:) reads what its encode(to:) writes.
                """))
        }
        let config = process.processConfig
        var run = 0
        var output: P.Output
        do {
            while !context.stopRequested, config.runs.map({ run < $0 }) ?? true {
                context.setCurrentRun(run)
                try await section(PreRunError.self, run) { try await process.prerun() }
                try await section(RunError.self, run) { try await process.run() }
                try await section(PostRunError.self, run) { try await process.postrun() }
                run += 1
            }
            context.setCurrentRun(run)
            try await section(OnFinishError.self, run) { try await process.onFinish() }
            output = try await section(ResultError.self, run) { try await process.result() }
        } catch {
            let failure = error as? any ProcessError ?? RunError(currentRun: run, underlying: RemoteError(capturing: error))
            do {
                output = try await process.error(failure)
            } catch let error as any ProcessError {
                await context.finish(failure: FailureReport(error))
            } catch {
                let handlerError = ErrorHandlerError(currentRun: run, underlying: RemoteError(capturing: error))
                await context.finish(failure: FailureReport(handlerError))
            }
        }
        do {
            let frame = try Frame.encode(.result) { bytes in
                BinaryFormat.appendVarint(UInt64(run), to: &bytes)
                try BinaryEncoder().encode(output, appendingTo: &bytes)
            }
            await context.finish(frame)
        } catch {
            await context.finish(failure: ProcessingError(.encodingFailed,
                "the result of \(String(reflecting: P.self)) (\(String(reflecting: P.Output.self))) could not be encoded: \(error)"))
        }
    }

    /// Runs one hook, turning what it throws into the section's error kind.
    private static func section<E: SectionError, T>(
        _ kind: E.Type, _ run: Int, _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch {
            throw E(currentRun: run, underlying: RemoteError(capturing: error))
        }
    }
}
