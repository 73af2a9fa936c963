/// The outcomes of a batch of items: all outputs (the usual case, kept as one array so that
/// it moves in bulk), or each item's result when some failed.
enum BatchOutcomes<Output: Sendable>: Sendable {
    case outputs([Output])
    case mixed([Result<Output, any Error>])

    var count: Int {
        switch self {
        case .outputs(let outputs): outputs.count
        case .mixed(let outcomes): outcomes.count
        }
    }

    /// What the first failed item threw, for a trace; nil when none failed.
    var firstFailure: String? {
        guard case .mixed(let outcomes) = self else { return nil }
        for case .failure(let error) in outcomes { return "\(error)" }
        return nil
    }

    var failureCount: Int {
        guard case .mixed(let outcomes) = self else { return 0 }
        var failed = 0
        for case .failure in outcomes { failed += 1 }
        return failed
    }

    subscript(position: Int) -> Result<Output, any Error> {
        switch self {
        case .outputs(let outputs): .success(outputs[position])
        case .mixed(let outcomes): outcomes[position]
        }
    }

    /// Every output, or the first failure as the `PoolItemError` of its item.
    func outputs(firstIndex: Int) throws -> [Output] {
        switch self {
        case .outputs(let outputs): return outputs
        case .mixed(let outcomes):
            var outputs: [Output] = []
            outputs.reserveCapacity(outcomes.count)
            for position in outcomes.indices {
                outputs.append(try outcomes[position].item(at: firstIndex + position))
            }
            return outputs
        }
    }
}
