/// Drives one map: pulls items in batches, runs the batches on workers (one per slot), and
/// delivers each item's outcome, in input order or as they complete.
enum PoolJob {
    /// At most this many items are taken from the input and not yet consumed.
    static let itemsAhead = 8192
    /// A batch aims to take about this long in a worker.
    static let batchTarget = Duration.milliseconds(4)
    static let largestBatch = 1024

    /// Starts the map. `deadline` bounds the whole map (a streaming map's `timeout`): past it
    /// the results end with `ResultTimeoutError` and the workers still busy are killed.
    static func start<Input: Sendable, Output: Sendable, Inputs: AsyncSequence & Sendable>(
        pool: Pool, work: PoolJobWork<Input, Output>, inputs: Inputs, ordered: Bool,
        settings: PoolMapSettings, deadline: (limit: Duration, operation: String)? = nil
    ) -> PoolResults<Output> where Inputs.Element == Input {
        let settings = settings.forOneMap()
        let (stream, continuation) = AsyncThrowingStream<DeliveredBatch<Output>, any Error>.makeStream()
        // Room for at least one whole batch, whatever `chunkSize` asks for.
        let credits = Credits(max(itemsAhead, settings.chunkSize ?? 0))
        do {
            // Registered now, at the call: a close() that comes after it lets this map finish.
            try pool.beginMap()
        } catch {
            continuation.finish(throwing: error)
            return PoolResults(stream: stream, credits: credits)
        }
        let delivery = Delivery(continuation: continuation, ordered: ordered, progress: settings.progress,
                                total: (inputs as? any CountedInputs)?.knownCount)
        let driver = Task {
            defer { pool.endMap() }
            let feeder = Feeder(inputs)
            do {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for _ in 0..<pool.workers {
                        group.addTask {
                            let slot = PoolSlot(pool: pool, work: work, settings: settings)
                            defer { slot.finish() }
                            try await slot.run(feeder: feeder, credits: credits, delivery: delivery)
                            return true
                        }
                    }
                    if let deadline {
                        group.addTask {
                            try? await Task.sleep(for: deadline.limit)
                            if Task.isCancelled { return false }
                            throw ResultTimeoutError(operation: deadline.operation, timeout: deadline.limit, currentRun: 0)
                        }
                    }
                    var slotsRunning = pool.workers
                    while slotsRunning > 0, let isSlot = try await group.next() {
                        if isSlot { slotsRunning -= 1 }
                    }
                    group.cancelAll()
                }
                if await !feeder.isExhausted {
                    throw ProcessingError(.invalidState, "the pool was closed or terminated before this map could finish")
                }
                await settings.trace?.write()
                continuation.finish()
            } catch {
                await settings.trace?.write()
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in
            driver.cancel()
            credits.cancel()
        }
        return PoolResults(stream: stream, credits: credits)
    }
}
