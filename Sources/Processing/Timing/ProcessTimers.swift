/// The timings of a process's lifecycle sections, recorded in the child and available on the
/// handle (`handle.timers`) once it has ended (and, as they arrive, while it runs).
///
/// `fullRun` holds one sample per completed run: its `prerun`, `run` and `postrun` together.
/// Samples from every attempt are kept, so with `lives` a failed attempt's runs count too.
public struct ProcessTimers: Codable, Sendable, Equatable {
    /// Each `prerun()`.
    public var prerun = Sktimer()
    /// Each `run()`.
    public var run = Sktimer()
    /// Each `postrun()`.
    public var postrun = Sktimer()
    /// `onFinish()`.
    public var onFinish = Sktimer()
    /// `result()`.
    public var result = Sktimer()
    /// `error(_:)`.
    public var error = Sktimer()
    /// `prerun` + `run` + `postrun`, once per completed run.
    public var fullRun = Sktimer()

    /// Creates empty timers.
    public init() {}

    /// The timer of one section.
    public subscript(section: ProcessSection) -> Sktimer {
        get {
            switch section {
            case .prerun: prerun
            case .run: run
            case .postrun: postrun
            case .onFinish: onFinish
            case .result: result
            case .error: error
            }
        }
        set {
            switch section {
            case .prerun: prerun = newValue
            case .run: run = newValue
            case .postrun: postrun = newValue
            case .onFinish: onFinish = newValue
            case .result: result = newValue
            case .error: error = newValue
            }
        }
    }

    /// Adds one sample to a section's timer, in place (through the subscript, the timer would
    /// be copied first, and its samples with it).
    mutating func add(_ duration: Duration, to section: ProcessSection) {
        switch section {
        case .prerun: prerun.add(duration)
        case .run: run.add(duration)
        case .postrun: postrun.add(duration)
        case .onFinish: onFinish.add(duration)
        case .result: result.add(duration)
        case .error: error.add(duration)
        }
    }

    /// Adds every sample of `other`, timer by timer.
    public mutating func merge(_ other: ProcessTimers) {
        for section in ProcessSection.allCases { self[section].merge(other[section]) }
        fullRun.merge(other.fullRun)
    }

    var isEmpty: Bool {
        ProcessSection.allCases.allSatisfy { self[$0].count == 0 } && fullRun.count == 0
    }
}
