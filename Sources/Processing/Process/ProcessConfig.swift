/// How a process runs: how many times, for how long, how often it may fail, and how long
/// each section may take. Set it as a stored property of your process:
///
/// ```swift
/// var processConfig = ProcessConfig(runs: 10, lives: 3)
/// ```
public struct ProcessConfig: Codable, Sendable, Equatable {
    /// How many times `prerun`/`run`/`postrun` run; nil runs until `stop()`.
    public var runs: Int?
    /// The most time the process may take in all; then it stops gracefully. Nil: no limit.
    public var joinIn: Duration?
    /// How many attempts the process gets: 1 never retries; `n` retries `n - 1` times,
    /// resuming from the last successful run.
    public var lives: Int
    /// The longest each section may take; nil entries have no limit.
    public var timeouts: Timeouts

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

    /// Creates a configuration; the defaults run until stopped, once, with no time limits.
    public init(runs: Int? = nil, joinIn: Duration? = nil, lives: Int = 1, timeouts: Timeouts = Timeouts()) {
        self.runs = runs
        self.joinIn = joinIn
        self.lives = lives
        self.timeouts = timeouts
    }
}
