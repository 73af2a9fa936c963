import Synchronization

/// The child side of a pool worker: keeps the work values the parent installs and runs the
/// batches it sends, one at a time, replying to each.
final class PoolWorkerService: Sendable {
    private let context: WorkerContext
    private let works = Mutex<[Int: any PoolWork]>([:])

    init(context: WorkerContext) {
        self.context = context
    }

    /// A `.work` frame (on the reactor thread): decode the work and keep it.
    func install(_ frame: Frame) throws {
        let install = try BinaryDecoder().decode(PoolWorkInstall.self, from: frame.payload)
        guard let type = TypeName.lookUp(install.typeName) as? any PoolWork.Type else {
            throw ProcessingError(.typeNotLocatable, "the pool worker cannot find the work type \(TypeName.readable(install.typeName))")
        }
        let work = try DescriptorTransfer.receiving(frame.attachments) { try BinaryDecoder().decode(type, from: install.state) }
        works.withLock { $0[install.id] = work }
    }

    /// A `.batch` frame: run it off the reactor thread and reply.
    func run(_ payload: [UInt8]) {
        Task { [self] in
            var offset = 0
            guard let batchID = BinaryFormat.readVarint(payload, at: &offset),
                  let workID = BinaryFormat.readVarint(payload, at: &offset) else {
                return reportBroken("a batch frame without its ids")
            }
            guard let work = works.withLock({ $0[Int(workID)] }) else {
                return reportBroken("a batch for work \(workID), which was never installed")
            }
            let reply: [UInt8]
            do {
                reply = try await work.runBatch(payload[offset...])
            } catch {
                return reportBroken("batch \(batchID) could not be decoded or its results encoded: \(error)")
            }
            // runBatch keeps a reply under the size limit (items whose results do not fit fail).
            let frame = Frame.control(.batchReply) { bytes in
                BinaryFormat.appendVarint(batchID, to: &bytes)
                bytes.append(contentsOf: reply)
            }
            try? await context.channel.send(frame)
        }
    }

    /// The parent sent something this worker cannot serve: say so on stderr (the parent keeps
    /// its tail for the error) and exit, so the batch fails rather than hangs.
    private func reportBroken(_ what: String) -> Void {
        WorkerContext.writeToStderr("Processing pool worker: \(what); exiting.")
        Syscall.exitImmediately(.poolBroken)
    }
}
