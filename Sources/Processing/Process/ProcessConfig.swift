/// How a process runs: how many times, for how long, how often it may fail, and how long
/// each section may take. Set it as a stored property of your process:
///
/// ```swift
/// var processConfig = ProcessConfig(runs: 10, lives: 3)
/// ```
public struct ProcessConfig: Codable, Sendable, Equatable {
    /// How many times `prerun`/`run`/`postrun` run; nil (the default, as in suitkaise's processing) runs
    /// until `stop()` is called, from the parent or inside the process, or `joinIn` passes.
    /// 0 runs none: only `onFinish` and `result`.
    public var runs: Int?
    /// The most time the process may take in all, retries included; then it is asked to stop
    /// gracefully (its current run finishes, then `onFinish` and `result`). Nil: no limit.
    public var joinIn: Duration?
    /// How long a process asked to stop by `joinIn` has to finish before it is killed (a run
    /// that never ends, a child stopped with SIGSTOP); `result()` then throws
    /// `JoinTimeoutError`. 5 seconds by default.
    public var joinGrace: Duration
    /// How many attempts the process gets: 1 never retries; `n` retries `n - 1` times,
    /// resuming from the last successful run.
    public var lives: Int
    /// The longest each section may take; nil entries have no limit.
    public var timeouts: Timeouts
    /// What happens to what the child prints: by default each line goes to this process's
    /// stdout, prefixed by the process's name and pid (`.forward`).
    public var stdout: ChildOutput
    /// What happens to what the child writes to stderr: by default each line goes to this
    /// process's stderr, prefixed (`.forward`). Whatever this says, its last few KiB are kept
    /// for the error that reports a crash.
    public var stderr: ChildOutput

    /// Per-section time limits. A section that overruns is killed and reported as a
    /// `ProcessTimeoutError`, which counts against `lives`.
    public struct Timeouts: Codable, Sendable, Equatable {
        /// The limit for each `prerun()`.
        public var prerun: Duration?
        /// The limit for each `run()`.
        public var run: Duration?
        /// The limit for each `postrun()`.
        public var postrun: Duration?
        /// The limit for `onFinish()`.
        public var onFinish: Duration?
        /// The limit for `result()`.
        public var result: Duration?
        /// The limit for `error(_:)`.
        public var error: Duration?

        /// Creates time limits; all default to none.
        public init(prerun: Duration? = nil, run: Duration? = nil, postrun: Duration? = nil,
                    onFinish: Duration? = nil, result: Duration? = nil, error: Duration? = nil) {
            (self.prerun, self.run, self.postrun) = (prerun, run, postrun)
            (self.onFinish, self.result, self.error) = (onFinish, result, error)
        }

        /// The limit for one section.
        public subscript(section: ProcessSection) -> Duration? {
            switch section {
            case .prerun: prerun
            case .run: run
            case .postrun: postrun
            case .onFinish: onFinish
            case .result: result
            case .error: error
            }
        }
    }

    /// Creates a configuration. The defaults: runs until `stop()` (`runs` nil), one life (no
    /// retry), no time limits, output forwarded line by line. `start()` refuses a negative
    /// `runs`, `lives` below 1 and time limits that are not positive, with `ProcessingError`
    /// (`.invalidConfiguration`).
    public init(runs: Int? = nil, joinIn: Duration? = nil, joinGrace: Duration = .seconds(5), lives: Int = 1,
                timeouts: Timeouts = Timeouts(), stdout: ChildOutput = .forward, stderr: ChildOutput = .forward) {
        self.runs = runs
        self.joinIn = joinIn
        self.joinGrace = joinGrace
        self.lives = lives
        self.timeouts = timeouts
        self.stdout = stdout
        self.stderr = stderr
    }

    /// Throws `ProcessingError` (`.invalidConfiguration`) naming the first setting of
    /// `process` that cannot work, and what it should be.
    func validate(for process: String) throws(ProcessingError) {
        func refuse(_ problem: String) -> ProcessingError {
            ProcessingError(.invalidConfiguration, "the processConfig of \(process) cannot run: \(problem)")
        }
        if let runs, runs < 0 {
            throw refuse("runs is \(runs); give a count of 0 or more, or nil to run until stop()")
        }
        if lives < 1 {
            throw refuse("lives is \(lives); 1 is a single attempt, n allows n - 1 retries")
        }
        if let joinIn, joinIn <= .zero { throw refuse("joinIn is \(joinIn); give a positive duration, or nil for no limit") }
        if joinGrace < .zero { throw refuse("joinGrace is \(joinGrace); give zero or a positive duration") }
        for section in ProcessSection.allCases {
            if let limit = timeouts[section], limit <= .zero {
                throw refuse("timeouts.\(section) is \(limit); give a positive duration, or nil for no limit")
            }
        }
    }
}
