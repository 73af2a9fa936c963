/// What a map runs its items with, ready to travel.
struct PoolJobWork<Input: Sendable, Output: Sendable>: Sendable {
    enum Runner: Sendable {
        /// Batches on pool workers: the work's install record, and how to encode inputs and
        /// decode replies.
        case workers(
            install: PoolWorkInstall,
            attachments: AttachedDescriptors?,
            encode: @Sendable ([Input]) throws -> [UInt8],
            decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
        )
        /// Each item its own process (`Skprocess` values): its whole lifecycle needs one.
        case processes(@Sendable (Input) async throws -> Result<Output, any Error>)
    }

    let runner: Runner

    /// The id batch sizes are learned under; nil when there is nothing to learn.
    var workID: Int? {
        if case .workers(let install, _, _, _) = runner { return install.id }
        return nil
    }
}

extension PoolJobWork {
    init<W: PoolWork>(_ work: W, pool: Pool) throws where W.Input == Input, W.Output == Output {
        let host = pool.crossingHost
        let ((typeName, state), attachments) = try HostCrossing.encoding(for: host) {
            try DescriptorTransfer.collecting(moves: true) {
                try TypeName.encodeForChild(work, as: "pool work", giving: W.Output.self, to: "the workers")
            }
        }
        // Work with pipe points is installed afresh for every map: its descriptors are this map's.
        let id = attachments == nil ? pool.workID(for: Array(typeName.utf8) + state) : pool.uniqueWorkID()
        let install = PoolWorkInstall(id: id, typeName: typeName, state: state)
        runner = .workers(install: install, attachments: attachments, encode: { inputs in
            do {
                return try HostCrossing.encoding(for: host) { try BinaryEncoder().encode(inputs) }
            } catch let error as ProcessingError where error.code == .cannotCrossHosts {
                throw error
            } catch {
                throw ProcessingError(.encodingFailed, "items of type \(String(reflecting: Input.self)) could not be encoded: \(error)")
            }
        }, decode: { bytes in
            switch try BinaryDecoder().decode(BatchReply<Output>.self, from: bytes) {
            case .outputs(let outputs): return .outputs(outputs)
            case .outcomes(let outcomes):
                return .mixed(outcomes.map { outcome in
                    switch outcome {
                    case .output(let output): .success(output)
                    case .failure(let payload): .failure(payload.remoteError)
                    }
                })
            }
        })
    }

    /// `Skprocess` values as items: each runs in a process of its own, its result the output.
    static func processes<P: Skprocess & Sendable>(_ type: P.Type) throws -> PoolJobWork<P, P.Output> where P.Output: Codable & Sendable {
        _ = try TypeName.locatable(P.self, role: "a process run by a pool")
        _ = try TypeName.locatable(P.Output.self, role: "what \(String(reflecting: P.self)) gives back")
        return PoolJobWork<P, P.Output>(runner: .processes { process in
            do {
                return .success(try await withProcess(process) { handle in
                    // No one holds this handle to listen: what the process tells is dropped
                    // (and said so, once), so that it cannot wait for a listener forever.
                    handle.core.mailbox.dropMessages(because: "\(String(reflecting: P.self)), run by a pool, told messages, which no one can listen to")
                    return try await handle.result()
                })
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                return .failure(error)
            }
        })
    }
}
