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
        get { self[keyPath: Self.timer(of: section)] }
        set { self[keyPath: Self.timer(of: section)] = newValue }
    }

    /// Adds one sample to a section's timer in place (through the subscript, the timer and its
    /// samples would be copied first).
    mutating func add(_ duration: Duration, to section: ProcessSection) {
        self[keyPath: Self.timer(of: section)].add(duration)
    }

    private static func timer(of section: ProcessSection) -> WritableKeyPath<ProcessTimers, Sktimer> {
        switch section {
        case .prerun: \.prerun
        case .run: \.run
        case .postrun: \.postrun
        case .onFinish: \.onFinish
        case .result: \.result
        case .error: \.error
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
