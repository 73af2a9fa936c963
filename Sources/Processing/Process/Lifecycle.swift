/// Runs a process's lifecycle in the child: the hooks in suitkaise's order, each timed, each
/// failure turned into its `ProcessError` kind with the run it happened in.
///
/// Before the last life a failure is reported and the child exits; the parent starts a new
/// child from the last checkpoint. On the last life `error(_:)` decides.
enum Lifecycle {
    static func run<P: Skprocess>(_ type: P.Type, request: StartRequest, context: WorkerContext) async -> Never {
        var process: P
        do {
            let attachments = context.startAttachments.withLock { $0 }
            process = try DescriptorTransfer.receiving(attachments) { try BinaryDecoder().decode(P.self, from: request.state) }
        } catch {
            await context.finish(failure: ProcessingError(.decodingFailed, """
                the state of \(String(reflecting: P.self)) could not be decoded in the child: \(error). \
                Check that its init(from:) reads what its encode(to:) writes.
                """))
        }
        var recorder = SectionRecorder(context: context, request: request)
        if let failureReport = request.handleFailure {
            // A crash or time-out left no child to run error(_:) on the last life: run it here.
            let run = failureReport.currentRun
            context.setCurrentRun(run)
            let failure = failureReport.error as? any ProcessError
                ?? RunError(currentRun: run, underlying: RemoteError(capturing: failureReport.error))
            let output = await handle(failure, in: &process, run: run, recorder: &recorder)
            await report(output, of: P.self, run: run, recorder: &recorder)
        }
        if request.stopRequested { context.requestStop() }

        let runs = process.processConfig.runs
        var run = request.firstRun
        let output: P.Output
        do {
            if P.autoreconnect.isEnabled {
                // Before the first hook; a failure counts as prerun's, so lives retry it.
                do {
                    try await reconnectAll(process, auth: P.autoreconnect.credentials)
                } catch {
                    throw PreRunError(currentRun: run, underlying: RemoteError(capturing: error))
                }
            }
            // A relay stage's run is its whole life, and a stop reaches it as `isStopping`:
            // asked before its run began, it must still run (or its neighbours never hear
            // its end of stream).
            let runsOnce = P.self is any RunsWhenStoppedBeforeStart.Type
            while !context.stopRequested || (runsOnce && run == request.firstRun), runs.map({ run < $0 }) ?? true {
                context.setCurrentRun(run)
                let started = ContinuousClock.now
                try await recorder.section(PreRunError.self, run) { try await process.prerun() }
                try await recorder.section(RunError.self, run) { try await process.run() }
                try await recorder.section(PostRunError.self, run) { try await process.postrun() }
                recorder.pending.fullRun.add(ContinuousClock.now - started)
                run += 1
                try await recorder.checkpoint(run: run, process)
            }
            context.setCurrentRun(run)
            try await recorder.section(OnFinishError.self, run) { try await process.onFinish() }
            output = try await recorder.section(ResultError.self, run) { try await process.result() }
        } catch let error as ProcessingError {
            await recorder.flush(run: run)
            await context.finish(failure: FailureReport(error, currentRun: run))
        } catch {
            let failure = error as? any ProcessError ?? RunError(currentRun: run, underlying: RemoteError(capturing: error))
            if !request.isLastLife {
                await recorder.flush(run: run)
                await context.finish(failure: FailureReport(failure))
            }
            let handled = await handle(failure, in: &process, run: run, recorder: &recorder)
            await report(handled, of: P.self, run: run, recorder: &recorder)
        }
        await report(output, of: P.self, run: run, recorder: &recorder)
    }

    /// Lets `error(_:)` decide: its value becomes the result; what it throws, the failure.
    private static func handle<P: Skprocess>(
        _ failure: any ProcessError, in process: inout P, run: Int, recorder: inout SectionRecorder
    ) async -> P.Output {
        do {
            return try await recorder.section(ErrorHandlerError.self, run, wrappingErrors: false) {
                try await process.error(failure)
            }
        } catch let error as any ProcessError {
            await recorder.flush(run: run)
            await recorder.context.finish(failure: FailureReport(error))
        } catch {
            await recorder.flush(run: run)
            let handlerError = ErrorHandlerError(currentRun: run, underlying: RemoteError(capturing: error))
            await recorder.context.finish(failure: FailureReport(handlerError))
        }
    }

    /// Sends the last timings and the result, and exits.
    private static func report<P: Skprocess>(
        _ output: P.Output, of type: P.Type, run: Int, recorder: inout SectionRecorder
    ) async -> Never {
        await recorder.flush(run: run)
        do {
            // `start()` required `Output: Codable` where the process was started; here the type
            // is only known at run time.
            guard let encodable = output as? any Encodable else {
                throw ProcessingError(.encodingFailed, "\(String(reflecting: P.Output.self)) is not Encodable")
            }
            let frame = try Frame.encode(.result) { bytes in
                BinaryFormat.appendVarint(UInt64(run), to: &bytes)
                try BinaryEncoder().encode(encodable, appendingTo: &bytes)
            }
            await recorder.context.finish(frame, releasingOutput: true)
        } catch let error as ProcessingError where error.code == .messageTooLarge {
            await recorder.context.finish(failure: error)
        } catch {
            await recorder.context.finish(failure: ProcessingError(.encodingFailed,
                "the result of \(String(reflecting: P.self)) (\(String(reflecting: P.Output.self))) could not be encoded: \(error)"))
        }
    }
}

/// The child's bookkeeping around each hook: its timing, the enter/leave frames of sections
/// the parent times out, and the checkpoints that carry both to the parent.
struct SectionRecorder {
    /// A progress-only checkpoint goes out at most this often, so cheap runs cost no syscalls.
    private static let progressInterval = Duration.milliseconds(20)

    let context: WorkerContext
    /// Timings not yet sent.
    var pending = ProcessTimers()
    private let timedSections: Set<ProcessSection>
    private let sendsState: Bool
    private var lastSent = ContinuousClock.now

    init(context: WorkerContext, request: StartRequest) {
        self.context = context
        timedSections = Set(request.timedSections)
        sendsState = request.sendsStateCheckpoints
    }

    /// Runs one hook: timed, announced to the parent when it has a time-out, and (unless
    /// `wrappingErrors` is false) with what it throws turned into the section's error kind.
    mutating func section<E: SectionError, T>(
        _ kind: E.Type, _ run: Int, wrappingErrors: Bool = true, _ body: () async throws -> T
    ) async throws -> T {
        let timed = timedSections.contains(E.section)
        if timed { await send(SectionMarker.entering(E.section, run: run)) }
        let started = ContinuousClock.now
        defer { pending.add(ContinuousClock.now - started, to: E.section) }
        do {
            let value = try await body()
            if timed { await send(SectionMarker.leaving) }
            return value
        } catch {
            if timed { await send(SectionMarker.leaving) }
            guard wrappingErrors else { throw error }
            throw E(currentRun: run, underlying: RemoteError(capturing: error))
        }
    }

    /// After a completed run: sends the state when a retry may need it, otherwise the progress
    /// and timings now and then.
    mutating func checkpoint<P: Skprocess>(run: Int, _ process: P) async throws(ProcessingError) {
        if sendsState {
            let state: [UInt8]
            let attachments: AttachedDescriptors?
            do {
                (state, attachments) = try DescriptorTransfer.collecting(moves: false) { try BinaryEncoder().encode(process) }
            } catch {
                throw ProcessingError(.encodingFailed,
                    "the state of \(String(reflecting: P.self)) could not be encoded for a checkpoint after run \(run - 1): \(error)")
            }
            // A state a retry could not resume from is a failure now, not a silent gap later.
            do {
                try Frame.checkSize(state.count + 64, of: .checkpoint)
            } catch {
                throw ProcessingError(.messageTooLarge, "the state of \(String(reflecting: P.self)) after run \(run - 1) cannot be checkpointed for a retry: \(error.message)")
            }
            await send(run: run, state: state, attachments: attachments)
        } else if ContinuousClock.now - lastSent >= Self.progressInterval {
            await send(run: run, state: nil)
        }
    }

    /// Sends what is pending, before the child's last frame.
    mutating func flush(run: Int) async {
        if !pending.isEmpty { await send(run: run, state: nil) }
    }

    private mutating func send(run: Int, state: [UInt8]?, attachments: AttachedDescriptors? = nil) async {
        let checkpoint = Checkpoint(currentRun: run, state: state, timings: pending)
        pending = ProcessTimers()
        lastSent = ContinuousClock.now
        guard let frame = try? Frame.encode(.checkpoint, attachmentCount: attachments?.count ?? 0, {
            try BinaryEncoder().encode(checkpoint, appendingTo: &$0)
        }) else {
            return
        }
        // A send fails only when the parent is gone, and then the channel's end exits the worker.
        try? await context.channel.send(frame, attaching: attachments)
    }

    private func send(_ frame: [UInt8]) async {
        // A send fails only when the parent is gone, and then the channel's end exits the worker.
        try? await context.channel.send(frame)
    }
}

/// A process whose `run()` is its whole life and handles a stop itself (`isStopping`): it
/// runs even when the stop came before its first run (relay stages).
protocol RunsWhenStoppedBeforeStart {}
