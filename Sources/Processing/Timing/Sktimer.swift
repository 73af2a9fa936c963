import Synchronization

/// A set of measured durations and their statistics.
///
/// Every lifecycle section of a process is timed into one (see `ProcessTimers`); you can keep
/// your own too, add to it with `add(_:)` or `time(_:)`, and combine timers from several
/// processes with `merge(_:)`. It is `Codable`, so it can live in a process's state.
///
/// Every sample is kept, so `median` and `percentile(_:)` are exact; a timer costs 8 bytes
/// per sample.
public struct Sktimer: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The samples in seconds, in the order they were added.
    private var seconds: [Double]
    /// The samples sorted, built on the first order statistic after a change.
    private var sortedCache: SortedCache

    /// Creates an empty timer.
    public init() {
        seconds = []
        sortedCache = SortedCache()
    }

    /// Adds one measured duration.
    public mutating func add(_ duration: Duration) {
        add(seconds: duration.seconds)
    }

    /// Measures `body` and adds its duration, even when it throws.
    public mutating func time<T>(_ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { add(ContinuousClock.now - start) }
        return try await body()
    }

    /// Adds every sample of `other`.
    public mutating func merge(_ other: Sktimer) {
        guard !other.seconds.isEmpty else { return }
        seconds.append(contentsOf: other.seconds)
        invalidateSorted()
    }

    /// Removes every sample.
    public mutating func reset() {
        self = Sktimer()
    }

    mutating func add(seconds value: Double) {
        seconds.append(value)
        invalidateSorted()
    }

    /// Forgets the sorted samples; a copy of this timer may still share them, so a shared
    /// cache is replaced rather than cleared.
    private mutating func invalidateSorted() {
        if isKnownUniquelyReferenced(&sortedCache) {
            sortedCache.clear()
        } else {
            sortedCache = SortedCache()
        }
    }

    /// How many durations were added.
    public var count: Int { seconds.count }
    /// The sum of every duration.
    public var total: Duration { .seconds(seconds.reduce(0, +)) }
    /// The arithmetic mean; zero when empty.
    public var mean: Duration { .seconds(meanSeconds) }
    /// The shortest duration; zero when empty.
    public var min: Duration { .seconds(seconds.min() ?? 0) }
    /// The longest duration; zero when empty.
    public var max: Duration { .seconds(seconds.max() ?? 0) }
    /// The middle duration (the mean of the two middle ones for an even count); zero when empty.
    public var median: Duration { percentile(50) }
    /// The sample standard deviation (n − 1); zero with fewer than two samples.
    public var stdev: Duration {
        guard seconds.count > 1 else { return .zero }
        let mean = meanSeconds
        let squares = seconds.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return .seconds((squares / Double(seconds.count - 1)).squareRoot())
    }
    /// The most recent duration, if any.
    public var last: Duration? { seconds.last.map { .seconds($0) } }

    /// The duration below which `percent` percent of the samples fall, interpolating linearly
    /// between neighbours (`percentile(50)` is the median, `percentile(95)` the 95th).
    /// `percent` is clamped to 0...100; zero when empty.
    public func percentile(_ percent: Double) -> Duration {
        let sorted = sortedCache.sorted(seconds)
        guard !sorted.isEmpty else { return .zero }
        let rank = Swift.min(Swift.max(percent, 0), 100) / 100 * Double(sorted.count - 1)
        let lower = Int(rank.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        let fraction = rank - Double(lower)
        return .seconds(sorted[lower] + (sorted[upper] - sorted[lower]) * fraction)
    }

    /// A readable account of the error or value.
    public var description: String {
        guard count > 0 else { return "Sktimer(empty)" }
        return "Sktimer(count: \(count), mean: \(mean), median: \(median), min: \(min), max: \(max))"
    }

    private var meanSeconds: Double {
        seconds.isEmpty ? 0 : seconds.reduce(0, +) / Double(seconds.count)
    }

    private enum CodingKeys: String, CodingKey { case seconds }

    /// Decodes the samples.
    public init(from decoder: any Decoder) throws {
        seconds = try decoder.container(keyedBy: CodingKeys.self).decode([Double].self, forKey: .seconds)
        sortedCache = SortedCache()
    }

    /// Encodes the samples.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(seconds, forKey: .seconds)
    }

    /// Two timers are equal when they hold the same samples in the same order.
    public static func == (lhs: Sktimer, rhs: Sktimer) -> Bool { lhs.seconds == rhs.seconds }
}

extension Sktimer {
    /// The sorted samples, computed once per change. A class so that reading statistics from
    /// a `let` timer can fill it; a copied timer shares it until either side changes, and a
    /// change replaces it rather than mutating it.
    fileprivate final class SortedCache: Sendable {
        private let values = Mutex<[Double]?>(nil)

        func clear() { values.withLock { $0 = nil } }

        func sorted(_ samples: [Double]) -> [Double] {
            values.withLock { values in
                if let values { return values }
                let sorted = samples.sorted()
                values = sorted
                return sorted
            }
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) * 1e-18
    }
}
