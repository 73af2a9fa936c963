/// A run of consecutive items' outcomes, as the consumer receives them.
struct DeliveredBatch<Output: Sendable>: Sendable {
    var firstIndex: Int
    var outcomes: BatchOutcomes<Output>
}
