/// How far a pool map has got: handed to a `progress` handler after each batch of items.
public struct PoolProgress: Sendable, Equatable, CustomStringConvertible {
    /// Items finished so far, failed ones included.
    public var completed: Int
    /// Items that failed so far.
    public var failed: Int
    /// How many items the input has: known from the start for a `Collection`, and once the
    /// input has ended for any other input; nil until then.
    public var total: Int?

    /// The fraction done, from 0 to 1, when the total is known.
    public var fractionCompleted: Double? {
        total.map { $0 == 0 ? 1 : Double(completed) / Double($0) }
    }

    /// "37/100" or "37/?".
    public var description: String { "\(completed)/\(total.map(String.init) ?? "?")" }
}

/// The settings of one pool map, changed by the modifiers (`chunkSize`, `itemTimeout`,
/// `retries`, `progress`) on `pool.map`, `pool.imap` and the other maps.
public struct PoolMapSettings: Sendable {
    var chunkSize: Int?
    var itemTimeout: Duration?
    var retries = 0
    var progress: (@Sendable (PoolProgress) -> Void)?
    /// Set by `trace(to:)`: where the map's timeline goes.
    var tracePath: String?
    /// Set by `progressBar(_:)`: the bar's title.
    var progressBarTitle: String?
    /// The timeline being recorded, made for each map as it starts (from `tracePath`).
    var trace: MapTrace?

    /// These settings for one map as it starts: a timeline and a progress bar of its own
    /// (a modified map called twice draws two bars, writes two timelines).
    func forOneMap() -> PoolMapSettings {
        var settings = self
        settings.trace = tracePath.map { MapTrace(path: $0) }
        if let title = progressBarTitle {
            let bar = ProgressBar(title: title)
            settings.progress = { bar.update($0) }
        }
        return settings
    }

    init() {}
}

/// A pool map operation (`pool.map`, `pool.unorderedMap`, `pool.imap`, `pool.unorderedIMap`
/// and their `star()` forms) whose settings the pool modifiers change.
public protocol PoolMapping: Sendable {
    /// The map's current settings.
    var settings: PoolMapSettings { get }
    /// The same map with other settings.
    func with(_ settings: PoolMapSettings) -> Self
}

extension Modifiable where Base: PoolMapping {
    private func changing(_ change: (inout PoolMapSettings) -> Void) -> Modifiable<Base, Form> {
        var settings = base.settings
        change(&settings)
        return Modifiable(base.with(settings), name: name, limit: limit, currentRun: currentRun)
    }

    /// The same map with batches of exactly `size` items, instead of a size tuned from the
    /// items' measured cost. 1 sends items one at a time (best for long, uneven items).
    public func chunkSize(_ size: Int) -> Modifiable<Base, Form> {
        changing { $0.chunkSize = max(1, size) }
    }

    /// The same map with a limit on each item: an item running longer fails with
    /// `PoolItemError` wrapping `PoolTimeoutError`, and the worker running it is killed and
    /// replaced. Items then travel one at a time unless `chunkSize` says otherwise (a batch of
    /// n items gets n times the limit).
    public func itemTimeout(_ limit: Duration) -> Modifiable<Base, Form> {
        changing { $0.itemTimeout = limit }
    }

    /// The same map, running an item again (up to `times` more times, each on a fresh worker)
    /// when the worker running it crashes or overruns `itemTimeout`. A crashed batch is retried
    /// one item at a time, so one poisonous item cannot fail its neighbours. Errors the work
    /// throws are not retried. Retried items may run more than once: keep such work idempotent.
    public func retries(_ times: Int) -> Modifiable<Base, Form> {
        changing { $0.retries = max(0, times) }
    }

    /// The same map, calling `handler` with the items completed so far (and the total, when
    /// known) after each batch finishes: for progress bars on long maps. Calls come one at a
    /// time, from the pool's tasks; keep the handler quick.
    public func progress(_ handler: @escaping @Sendable (PoolProgress) -> Void) -> Modifiable<Base, Form> {
        changing { $0.progress = handler }
    }
}
