/// One item's failure in a pool map: which item, and why (`RemoteError` for an error the work
/// threw, `ProcessCrashError` when the worker running it died).
public struct PoolItemError: Error, CustomStringConvertible {
    /// The item's position in the input (0-based).
    public let index: Int
    /// The original error.
    public let error: any Error

    /// A readable account of the error or value.
    public var description: String { "PoolItemError: item \(index) failed: \(error)" }
}
