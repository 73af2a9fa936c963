/// A worker (or a place for processes) and the loop of batches it runs for one map, the batch
/// size tuned from measured cost. Used by one task only.
final class PoolSlot<Input: Sendable, Output: Sendable> {
    /// The worker running an item died (crash, kill, item time-out): the items it had fail
    /// with `error`, unless retried.
    private struct WorkerLost: Error {
        var error: any Error
    }

    private let pool: Pool
    private let work: PoolJobWork<Input, Output>
    private let settings: PoolMapSettings
    private var worker: PoolWorker?
    private var size: Int

    init(pool: Pool, work: PoolJobWork<Input, Output>, settings: PoolMapSettings) {
        (self.pool, self.work, self.settings) = (pool, work, settings)
        if let chunkSize = settings.chunkSize {
            size = chunkSize
        } else if settings.itemTimeout != nil {
            size = 1
        } else {
            size = work.workID.map(pool.learnedBatchSize(for:)) ?? 1
        }
    }

    private var tunesSize: Bool { settings.chunkSize == nil && settings.itemTimeout == nil && work.workID != nil }

    /// Gives the worker back and keeps the batch size learned, for the next map.
    func finish() {
        if let worker { pool.checkIn(worker) }
        worker = nil
        if tunesSize, let workID = work.workID { pool.learn(batchSize: size, for: workID) }
    }

    func run<Inputs: AsyncSequence & Sendable>(
        feeder: Feeder<Inputs>, credits: Credits, delivery: Delivery<Output>
    ) async throws where Inputs.Element == Input {
        while true {
            try await credits.acquire(size)
            guard let batch = try await feeder.take(size) else {
                credits.release(size)
                if let total = await feeder.total { delivery.inputEnded(total: total) }
                return
            }
            if batch.items.count < size { credits.release(size - batch.items.count) }
            let started = ContinuousClock.now
            guard let outcomes = try await run(batch.items, firstIndex: batch.firstIndex) else {
                // The pool closed before this batch could start: another slot may take it.
                await feeder.putBack(batch)
                return
            }
            if tunesSize {
                let perItem = (ContinuousClock.now - started) / batch.items.count
                let fitting = perItem > .zero ? Int(PoolJob.batchTarget / perItem) : PoolJob.largestBatch
                size = min(max(1, fitting), size * 8, PoolJob.largestBatch)
            }
            delivery.deliver(from: batch.firstIndex, outcomes)
        }
    }

    /// Each item's outcome, or nil if the pool closed before the items could start.
    private func run(_ items: [Input], firstIndex: Int) async throws -> BatchOutcomes<Output>? {
        switch work.runner {
        case .processes(let runProcess):
            var outcomes: [Result<Output, any Error>] = []
            for item in items { outcomes.append(try await runProcess(item)) }
            return .mixed(outcomes)
        case .workers(let install, let attachments, let encode, let decode):
            do {
                return try await attempt(items, firstIndex: firstIndex, install: install, attachments: attachments,
                                         encode: encode, decode: decode)
            } catch let error as ProcessingError where error.code == .messageTooLarge {
                // The batch is over the size limit (large items, a batch size tuned by time):
                // smaller batches from now on, and these items one at a time, so that only an
                // item too large on its own fails.
                size = max(1, items.count / 2)
                guard items.count > 1 else { return .mixed([.failure(error)]) }
                var outcomes: [Result<Output, any Error>] = []
                for (position, item) in zip(items.indices, items) {
                    guard let single = try await run([item], firstIndex: firstIndex + position) else { return nil }
                    outcomes.append(single[0])
                }
                return .mixed(outcomes)
            } catch let lost as WorkerLost {
                guard settings.retries > 0 else { return .mixed(Array(repeating: .failure(lost.error), count: items.count)) }
                // Once more each, one at a time, so that the item that killed the worker is found.
                var outcomes: [Result<Output, any Error>] = []
                for (position, item) in zip(items.indices, items) {
                    var lastLoss = lost
                    var outcome: Result<Output, any Error>?
                    for _ in 0..<settings.retries {
                        do {
                            guard let single = try await attempt([item], firstIndex: firstIndex + position, install: install,
                                                                 attachments: attachments, encode: encode, decode: decode) else {
                                throw ProcessingError(.invalidState, "the pool was closed or terminated while this map was retrying an item")
                            }
                            outcome = single[0]
                            break
                        } catch let lost as WorkerLost {
                            lastLoss = lost
                        }
                    }
                    outcomes.append(outcome ?? .failure(lastLoss.error))
                }
                return .mixed(outcomes)
            }
        }
    }

    /// Runs `items` (the input's from `firstIndex` on) as one batch on this slot's worker
    /// (checked out first if it has none). Throws `WorkerLost` if the worker dies, overruns the
    /// item time-out, or answers with something that is not this batch's results.
    private func attempt(
        _ items: [Input], firstIndex: Int, install: PoolWorkInstall, attachments: AttachedDescriptors?,
        encode: @Sendable ([Input]) throws -> [UInt8],
        decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
    ) async throws -> BatchOutcomes<Output>? {
        if worker == nil {
            worker = try await pool.checkOut()
            if worker == nil { return nil }
        }
        let positions = firstIndex...(firstIndex + items.count - 1)
        let trace = settings.trace.map { trace in
            trace.saw(worker: worker!.pid, launched: worker!.launchedAt, ready: worker!.readyAt)
            return (trace: trace, pid: worker!.pid, began: ContinuousClock.now)
        }
        var failure: String? = "did not finish (the map was cancelled, or the pool closed)"
        defer {
            if let trace { trace.trace.batch(worker: trace.pid, from: trace.began, to: .now, items: positions, failure: failure) }
        }
        do {
            let reply = try await worker!.run(batch: encode(items), work: install, attachments: attachments,
                                              timeout: settings.itemTimeout.map { $0 * items.count })
            let outcomes = try Self.check(reply, of: items.count, positions: positions, decode: decode)
            failure = outcomes.firstFailure
            return outcomes
        } catch var crash as ProcessCrashError {
            failure = "the worker crashed: \(crash.cause)"
            crash.items = positions
            throw try lose(crash)
        } catch let error where error is PoolTimeoutError {
            failure = "\(error)"
            throw try lose(error)
        } catch let error as ProcessingError where error.code == .unexpectedReply {
            failure = error.message
            // The worker is in no state to trust with more items: replace it.
            worker?.kill()
            throw try lose(error)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            failure = "\(error)"   // the batch did not encode, say
            throw error
        }
    }

    /// The worker is gone (or must go): give it back, and report the loss unless this map was
    /// cancelled (a worker killed for that is not an item's failure).
    private func lose(_ error: any Error) throws -> WorkerLost {
        pool.checkIn(worker!)
        worker = nil
        try Task.checkCancellation()
        return WorkerLost(error: error)
    }

    /// A reply's outcomes, once they are checked to be this batch's: one per item, decoded.
    /// Anything else fails the batch's items with `.unexpectedReply` (never fewer results than
    /// items, never a crash of this process).
    private static func check(
        _ reply: [UInt8], of count: Int, positions: ClosedRange<Int>,
        decode: @Sendable ([UInt8]) throws -> BatchOutcomes<Output>
    ) throws -> BatchOutcomes<Output> {
        let outcomes: BatchOutcomes<Output>
        do {
            outcomes = try decode(reply)
        } catch {
            throw unexpectedReply("results that did not decode (\(error))", count: count, positions: positions)
        }
        guard outcomes.count == count else {
            throw unexpectedReply("\(outcomes.count) results", count: count, positions: positions)
        }
        return outcomes
    }

    private static func unexpectedReply(_ what: String, count: Int, positions: ClosedRange<Int>) -> ProcessingError {
        let items = count == 1 ? "item \(positions.lowerBound)" : "items \(positions.lowerBound)–\(positions.upperBound)"
        return ProcessingError(.unexpectedReply, """
            a pool worker answered the batch of \(items) (\(count) in all) with \(what). Work that reads a \
            top-level variable of main.swift sees uninitialised memory in a worker, where the program's \
            top-level code never runs: declare the variable in another file (globals there are set up on \
            first use, in workers too), or pass the value in the items or in a PoolWork's properties
            """)
    }
}

/// The input, shared by the slots: hands out batches with their first index.
actor Feeder<Inputs: AsyncSequence & Sendable> where Inputs.Element: Sendable {
    struct Batch: Sendable {
        var firstIndex: Int
        var items: [Inputs.Element]
    }

    private var iterator: Inputs.AsyncIterator
    private var nextIndex = 0
    private var returned: [Batch] = []
    private(set) var isExhausted = false

    /// How many items the input had, once it has ended.
    var total: Int? { isExhausted && returned.isEmpty ? nextIndex : nil }

    init(_ inputs: Inputs) {
        iterator = inputs.makeAsyncIterator()
    }

    private var isTaking = false
    private var turnWaiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextTurn: UInt64 = 0

    /// Waits while another slot takes; a cancelled slot stops waiting.
    private func waitForTurn() async throws {
        let id = nextTurn
        nextTurn += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                turnWaiters.append((id, continuation))
            }
        } onCancel: {
            Task { await self.cancelTurn(id) }
        }
    }

    private func cancelTurn(_ id: UInt64) {
        guard let index = turnWaiters.firstIndex(where: { $0.id == id }) else { return }
        turnWaiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    func take(_ count: Int) async throws -> Batch? {
        // The iterator may suspend, and the actor is reentrant: one take at a time.
        while isTaking { try await waitForTurn() }
        isTaking = true
        defer {
            isTaking = false
            if !turnWaiters.isEmpty { turnWaiters.removeFirst().continuation.resume() }
        }
        if !returned.isEmpty { return returned.removeLast() }
        guard !isExhausted else { return nil }
        if var bulk = iterator as? any BulkIterator<Inputs.Element> {
            let items = bulk.next(upTo: count)
            iterator = bulk as! Inputs.AsyncIterator
            if items.count < count { isExhausted = true }
            guard !items.isEmpty else { return nil }
            defer { nextIndex += items.count }
            return Batch(firstIndex: nextIndex, items: items)
        }
        var items: [Inputs.Element] = []
        items.reserveCapacity(count)
        var iterator = self.iterator
        defer { self.iterator = iterator }
        while items.count < count {
            guard let item = try await iterator.next(isolation: self) else {
                isExhausted = true
                break
            }
            items.append(item)
        }
        guard !items.isEmpty else { return nil }
        defer { nextIndex += items.count }
        return Batch(firstIndex: nextIndex, items: items)
    }

    /// A batch a slot took but could not run (the pool closed): another slot takes it.
    func putBack(_ batch: Batch) {
        returned.append(batch)
        isExhausted = false
    }
}
