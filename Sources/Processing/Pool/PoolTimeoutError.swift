/// The error of an item that ran past the map's `itemTimeout` (inside its `PoolItemError`).
/// The worker running it was killed and is replaced.
public struct PoolTimeoutError: Error, Sendable, CustomStringConvertible {
    /// The limit the item (or its batch, with `chunkSize` above 1) overran.
    public let timeout: Duration

    /// A readable account of the error.
    public var description: String {
        "PoolTimeoutError: the item ran past its timeout of \(timeout); the worker running it was killed"
    }
}
