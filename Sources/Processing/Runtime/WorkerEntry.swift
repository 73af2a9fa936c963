import CProcessingShims
import Foundation

/// The worker's `main`: called from the C constructor (before the program's own `main`) when
/// this binary was re-executed as a worker. Never returns.
///
/// The worker loop runs in a detached task and the main thread runs the main run loop, so user
/// code that hops to `@MainActor` still works (parking the main thread would deadlock it).
@_cdecl("processing_worker_main")
func processingWorkerMain() {
    // A line at a time, so that the parent forwards each `print` as it happens (and a crash
    // loses none); C's stdio buffers a pipe by blocks otherwise.
    processing_line_buffer_stdout()
    let limit = processing_worker_message_limit()
    if limit > 0 { ProcessingLimits.maximumMessageSize = Int(limit) }
    do {
        try WorkerContext.start(fd: processing_worker_control_fd())
    } catch {
        FileHandle.standardError.write(Data("Processing worker: cannot use the control channel: \(error)\n".utf8))
        Syscall.exitImmediately(.channelUnusable)
    }
    Task.detached {
        await WorkerLoop.serve()
    }
    // A run loop with no sources returns at once: give it a timer so it blocks.
    let keepAlive = Timer(timeInterval: 1_000_000, repeats: true) { _ in }
    RunLoop.main.add(keepAlive, forMode: .default)
    while true { RunLoop.main.run() }
}

/// What a worker does: take the process the parent sent, run its lifecycle, report, exit.
enum WorkerLoop {
    static func serve() async -> Never {
        guard let context = WorkerContext.active else { Syscall.exitImmediately(.noContext) }
        if processing_worker_is_spare() != 0 { SpareStandby.warmUp() }
        let request = await context.nextStartRequest()
        if request.poolWorker {
            // The pool service answers frames from the reactor thread; this task only waits.
            while true { try? await Task.sleep(for: .seconds(3600)) }
        }
        guard let type = TypeName.lookUp(request.typeName) else {
            await context.finish(failure: ProcessingError(.typeNotLocatable,
                "the child cannot find the process type \(request.typeName) by name"))
        }
        guard let processType = type as? any Skprocess.Type else {
            await context.finish(failure: ProcessingError(.typeNotLocatable,
                "\(String(reflecting: type)) is not an Skprocess in the child"))
        }
        await Lifecycle.run(processType, request: request, context: context)
    }
}

extension WorkerContext {
    func finish(failure: ProcessingError) async -> Never {
        await finish(failure: FailureReport(failure, currentRun: currentRun))
    }

    func finish(failure report: FailureReport) async -> Never {
        let frame = (try? Frame.encode(.failure) { try BinaryEncoder().encode(report, appendingTo: &$0) })
            ?? Frame.encode(.failure)
        await finish(frame)
    }
}
