/// How a failure crosses from the child to the parent (and, for a crash or a time-out that
/// left no child, from the parent to the child that runs `error(_:)`).
struct FailureReport: Codable, Sendable {
    /// The hook that threw, for `SectionError`s.
    var section: ProcessSection?
    var currentRun: Int
    var underlying: RemoteErrorPayload?
    /// A failure of the machinery rather than of a hook (the state did not decode, say).
    var processing: ProcessingError?
    /// Failures the parent observes rather than a hook throws.
    var timeout: ProcessTimeoutError?
    var crash: ProcessCrashError?

    init(_ error: any ProcessError) {
        currentRun = error.currentRun
        if let timeout = error as? ProcessTimeoutError {
            self.timeout = timeout
        } else if let crash = error as? ProcessCrashError {
            self.crash = crash
        } else if let sectionError = error as? any SectionError {
            section = type(of: sectionError).section
            underlying = sectionError.underlying.map(RemoteErrorPayload.init)
        } else {
            // Some other ProcessError rethrown from error(_:): report it as the handler's failure.
            section = .error
            underlying = RemoteErrorPayload(error)
        }
    }

    init(_ error: ProcessingError, currentRun: Int) {
        self.currentRun = currentRun
        processing = error
    }

    /// The error the parent throws from `result()`.
    var error: any Error {
        if let processing { return processing }
        if let timeout { return timeout }
        if let crash { return crash }
        let remote = underlying?.remoteError
        switch section ?? .error {
        case .prerun: return PreRunError(currentRun: currentRun, underlying: remote)
        case .run: return RunError(currentRun: currentRun, underlying: remote)
        case .postrun: return PostRunError(currentRun: currentRun, underlying: remote)
        case .onFinish: return OnFinishError(currentRun: currentRun, underlying: remote)
        case .result: return ResultError(currentRun: currentRun, underlying: remote)
        case .error: return ErrorHandlerError(currentRun: currentRun, underlying: remote)
        }
    }
}

/// What the parent sends to start a process in a child: the first attempt, a retry resuming
/// from a checkpoint, or a child that only runs `error(_:)`.
struct StartRequest: Codable, Sendable {
    var typeName: String
    /// The process's encoded state: as given to `start()`, or as of the last checkpoint.
    var state: [UInt8]
    /// The run to begin with (a retry resumes after the last completed run).
    var firstRun = 0
    /// Whether no retry follows a failure of this attempt: the child then lets `error(_:)`
    /// decide. Before the last life, the child reports the failure and the parent retries.
    var isLastLife = true
    /// Whether to send the state after every run, for a retry to resume from.
    var sendsStateCheckpoints = false
    /// Whether the parent asked the process to stop before this child started.
    var stopRequested = false
    /// Sections the parent enforces a time-out on: the child says when it enters and leaves them.
    var timedSections: [ProcessSection] = []
    /// Set when the child only runs `error(_:)`, for a crash or a time-out on the last life.
    var handleFailure: FailureReport?
    /// Set when the child is a pool worker: it serves `.work` and `.batch` frames until the
    /// parent closes the channel, and `typeName` and `state` are unused.
    var poolWorker = false
    /// The parent's `ProcessLog.minimumLevel`, which the child keeps.
    var minimumLogLevel = LogLevel.info
    /// What the child's log entries are tagged with (its type's name). Sent, not worked out in
    /// the child: a first `String(describing:)` of a type costs a fresh process about 1 ms.
    var logName = "pool worker"

    init(typeName: String, state: [UInt8]) {
        self.typeName = typeName
        self.state = state
    }
}

/// Child → parent, after runs: how far the process got, the section timings since the last
/// checkpoint, and (when a retry may need it) the state to resume from.
struct Checkpoint: Codable, Sendable {
    /// The run the process is in (after a completed run, the next one).
    var currentRun: Int
    /// The encoded state after the last completed run; nil for a progress-only checkpoint.
    var state: [UInt8]?
    var timings: ProcessTimers
}

/// The payload of a `.section` frame.
enum SectionMarker {
    static let left: UInt8 = 0xFF

    static func entering(_ section: ProcessSection, run: Int) -> [UInt8] {
        Frame.control(.section) { bytes in
            bytes.append(UInt8(ProcessSection.allCases.firstIndex(of: section)!))
            BinaryFormat.appendVarint(UInt64(run), to: &bytes)
        }
    }

    static let leaving: [UInt8] = Frame.control(.section) { $0.append(left) }

    /// Reads a payload: the section entered and its run, or nil for leaving. Throws on garbage.
    static func decode(_ payload: [UInt8]) throws(MalformedFrame) -> (section: ProcessSection, run: Int)? {
        guard let first = payload.first else { throw MalformedFrame(description: "an empty section frame") }
        if first == left, payload.count == 1 { return nil }
        var offset = 1
        guard Int(first) < ProcessSection.allCases.count, let run = BinaryFormat.readVarint(payload, at: &offset),
              offset == payload.count else {
            throw MalformedFrame(description: "a section frame that did not decode")
        }
        return (ProcessSection.allCases[Int(first)], Int(run))
    }
}
