/// Work for a `Pool`, as a value: a `Codable` type with `callAsFunction`. Its stored
/// properties travel to the workers with it, which is how work carries parameters:
///
/// ```swift
/// struct Scale: PoolWork {
///     var factor: Int
///     func callAsFunction(_ x: Int) async throws -> Int { x * factor }
/// }
/// let scaled = try await pool.map(1...100, Scale(factor: 3))
/// ```
///
/// Like a process type, it must be findable by name in a worker: internal or public, not
/// `private`, `fileprivate` or declared inside a function.
public protocol PoolWork: Codable, Sendable {
    /// One item of input.
    associatedtype Input: Codable & Sendable
    /// What one item gives.
    associatedtype Output: Codable & Sendable
    /// Processes one item, in a worker process.
    func callAsFunction(_ input: Input) async throws -> Output
}

/// What a batch gave: every output, or each item's outcome when some failed.
enum BatchReply<Output: Codable & Sendable>: Codable, Sendable {
    case outputs([Output])
    case outcomes([ItemOutcome<Output>])
}

/// One item's outcome in a batch where some failed.
enum ItemOutcome<Output: Codable & Sendable>: Codable, Sendable {
    case output(Output)
    case failure(RemoteErrorPayload)
}

/// Parent → worker: a work value to keep under an id, for the batches that follow.
struct PoolWorkInstall: Codable, Sendable {
    var id: Int
    var typeName: String
    var state: [UInt8]
}

extension PoolWork {
    /// Decodes a batch of inputs, runs each, and encodes the reply. Runs in the worker.
    func runBatch(_ encodedInputs: ArraySlice<UInt8>) async throws -> [UInt8] {
        let inputs = try BinaryDecoder().decode([Input].self, from: Array(encodedInputs))
        var outputs: [Output] = []
        outputs.reserveCapacity(inputs.count)
        // Index loops, not `enumerated()`: this runs unspecialised, where every generic
        // wrapper costs a metadata lookup per item.
        var index = 0
        while index < inputs.count {
            do {
                outputs.append(try await self(inputs[index]))
            } catch {
                // Keep going: every item gets its own outcome.
                var outcomes = outputs.map(ItemOutcome.output)
                outcomes.append(.failure(RemoteErrorPayload(error)))
                index += 1
                while index < inputs.count {
                    do {
                        outcomes.append(.output(try await self(inputs[index])))
                    } catch {
                        outcomes.append(.failure(RemoteErrorPayload(error)))
                    }
                    index += 1
                }
                return try sized(BinaryEncoder().encode(BatchReply<Output>.outcomes(outcomes)), items: inputs.count)
            }
            index += 1
        }
        return try sized(BinaryEncoder().encode(BatchReply<Output>.outputs(outputs)), items: inputs.count)
    }

    /// `reply`, or, when it would make a frame over `ProcessingLimits.maximumMessageSize`, a
    /// reply failing every item of the batch with `.messageTooLarge`.
    private func sized(_ reply: [UInt8], items: Int) throws -> [UInt8] {
        do {
            try Frame.checkSize(reply.count + 16, of: .batchReply)
            return reply
        } catch {
            let failure = ItemOutcome<Output>.failure(RemoteErrorPayload(error))
            return try BinaryEncoder().encode(BatchReply<Output>.outcomes(Array(repeating: failure, count: items)))
        }
    }
}
