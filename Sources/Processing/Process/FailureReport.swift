/// How a failure crosses from the child to the parent.
struct FailureReport: Codable, Sendable {
    /// The hook that threw, for `SectionError`s.
    var section: ProcessSection?
    var currentRun: Int
    var underlying: RemoteErrorPayload?
    /// A failure of the machinery rather than of a hook (the state did not decode, say).
    var processing: ProcessingError?

    init(_ error: any ProcessError) {
        currentRun = error.currentRun
        if let sectionError = error as? any SectionError {
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

/// What the parent sends to start a process in a child.
struct StartRequest: Codable, Sendable {
    var typeName: String
    var state: [UInt8]
}
