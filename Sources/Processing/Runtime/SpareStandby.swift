#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CProcessingShims

/// A spare worker's side of waiting (`SparePool`): it warms up, says so on its stdout (a pipe
/// to the parent's spare pool), and once taken puts on the stdout and stderr its process
/// gets. Both happen under one lock, so the byte that says "warm" never lands in a process's
/// output.
enum SpareStandby {
    /// Whether the spare was taken (its output is the process's now).
    private static let taken = Mutex(false)

    /// Does, while nobody waits, what a worker's first process would pay for (`warmCaches`).
    /// Then writes its byte, unless it was taken meanwhile.
    static func warmUp() {
        warmCaches()
        taken.withLock { taken in
            guard !taken else { return }
            var byte: UInt8 = 1
            _ = write(STDOUT_FILENO, &byte, 1)
        }
    }

    /// What a worker's first process pays for on first use, done ahead: the runtime's type
    /// lookup by name and the binary coders' first use, and for each process type the parent
    /// named in the spare's marker (the ones it started last), the lookups its start makes.
    private static func warmCaches() {
        // A lookup by name scans the image's type records, and a conformance that is not there
        // scans all its conformance records: each first scan faults those pages in, which a
        // fresh worker pays for with its first process's type and its Codable containers.
        if let name = TypeName.mangled(StartRequest.self) { _ = TypeName.lookUp(name) }
        _ = (StartRequest.self as Any.Type) is any SpareWarmUpProbe.Type
        for name in String(cString: processing_worker_spare_hints()).split(separator: ",") {
            if let type = TypeName.lookUp(String(name)) as? any Skprocess.Type { warmLookups(of: type) }
        }
        // The coders and the generic containers every process's state and reports go through
        // (a process holds a ProcessConfig; its end sends timings in a checkpoint).
        roundTrip(StartRequest(typeName: "", state: []))
        roundTrip(ProcessConfig())
        var timings = ProcessTimers()
        timings.fullRun.add(.milliseconds(1))
        roundTrip(Checkpoint(currentRun: 1, state: [], timings: timings))
        roundTrip(NoResult())
    }

    /// The conformance lookups a start of `P` makes (`Lifecycle`), each a scan of the image's
    /// records the first time, cached after.
    private static func warmLookups<P: Skprocess>(of _: P.Type) {
        _ = P.Output.self is any Encodable.Type
        _ = P.self is any RunsWhenStoppedBeforeStart.Type
    }

    private static func roundTrip<T: Codable>(_ value: T) {
        var bytes: [UInt8] = []
        guard (try? BinaryEncoder().encode(value, appendingTo: &bytes)) != nil else { return }
        _ = try? BinaryDecoder().decode(T.self, from: bytes)
    }

    /// The spare is taken (on the reactor thread, before any other frame is read): the
    /// descriptors become its stderr and stdout.
    static func adopt(_ attachments: AttachedDescriptors?) {
        taken.withLock { taken in
            taken = true
            for (index, target) in [STDERR_FILENO, STDOUT_FILENO].enumerated() {
                guard let fd = attachments?.take(index) else {
                    WorkerContext.writeToStderr("Processing worker: a spare worker was taken without its output; exiting.")
                    Syscall.exitImmediately(.channelUnusable)
                }
                do {
                    try Syscall.duplicate(fd, onto: target)
                } catch {
                    WorkerContext.writeToStderr("Processing worker: a spare worker cannot take its output: \(error); exiting.")
                    Syscall.exitImmediately(.channelUnusable)
                }
                Syscall.close(fd)
            }
        }
    }
}

/// A protocol nothing conforms to: asking whether a type conforms makes the runtime scan every
/// conformance record of the image (`SpareStandby.warmUp`).
protocol SpareWarmUpProbe {}
