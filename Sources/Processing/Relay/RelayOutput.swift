import Synchronization

/// What a relay's last stages send, read in the parent as an `AsyncSequence`
/// (`Relay.output(as:)`). The relay starts when iteration begins; the sequence ends once
/// every stage has ended, and throws the relay's failure (`RelayError`). Leaving the loop
/// early, or cancelling the task iterating it, stops every stage.
///
/// It can be iterated once: a second iterator throws `ProcessingError` (`.invalidState`).
public struct RelayOutput<Element: Codable & Sendable>: AsyncSequence, Sendable {
    private let source: Source

    /// The prepared run, taken by the first iterator.
    private final class Source: Sendable {
        let prepared = Mutex<Prepared?>(nil)
    }

    /// What the first iterator takes.
    fileprivate struct Prepared: Sendable {
        let stages: RelayRun
        let ends: [RelayLinkEnd]
        let settings: RelayStageSettings
        let restartable: [Bool]
        let feed: RelayFeedRun?
    }

    init(_ run: Relay.Prepared, feed: RelayFeedRun?) {
        source = Source()
        let prepared = Prepared(stages: run.stages, ends: run.outputEnds, settings: run.settings,
                                restartable: run.outputRestartable, feed: feed)
        source.prepared.withLock { $0 = prepared }
    }

    /// Starts the relay and iterates what its last stages send.
    public func makeAsyncIterator() -> Iterator {
        Iterator(source.prepared.withLock { prepared in
            defer { prepared = nil }
            return prepared
        })
    }

    /// Reads the last stages' batches one message at a time.
    public struct Iterator: AsyncIteratorProtocol {
        private let reading: Reading?
        private var buffer: [Element] = []
        private var position = 0

        fileprivate init(_ prepared: Prepared?) {
            reading = prepared.map { Reading($0) }
        }

        /// The next message, or nil once the relay has ended; throws its failure.
        public mutating func next() async throws -> Element? {
            guard let reading else {
                throw ProcessingError(.invalidState, "a relay's output can be iterated once: call output(as:) again for another run")
            }
            if position < buffer.count {
                defer { position += 1 }
                return buffer[position]
            }
            while true {
                if let last = reading.lastBatch {
                    reading.inbox?.consumed(last.count, of: last.batch)
                    reading.lastBatch = nil
                }
                guard let inbox = reading.inbox else { return nil }
                let batch: RelayInbox.Batch?
                do {
                    batch = try await inbox.next()
                } catch {
                    // A stage failed (its connection ended early) or this task was cancelled:
                    // the relay's own outcome says which, once every stage has ended.
                    reading.inbox = nil
                    // Anything but a connection that ended (whose stage's own failure the
                    // run reports) leaves the stages alive: stop them.
                    if Task.isCancelled || (error as? ProcessingError)?.code != .channelClosed { reading.task.cancel() }
                    try await reading.task.value
                    throw error
                }
                guard let batch else {
                    reading.inbox = nil
                    try await reading.task.value
                    return nil
                }
                let values: [Element]
                do {
                    values = try batch.decode(Element.self)
                } catch {
                    reading.task.cancel()
                    reading.inbox = nil
                    throw ProcessingError(.decodingFailed, "a batch from \(inbox.peer(batch.link)) did not decode as \(String(reflecting: Element.self)): \(error)")
                }
                reading.lastBatch = (values.count, batch)
                guard !values.isEmpty else { continue }
                buffer = values
                position = 1
                return values[0]
            }
        }
    }

    /// One iteration's run: the task running the relay and the parent's inbox. Dropping it
    /// (leaving the loop early) cancels the run, which kills every stage.
    private final class Reading {
        let task: Task<Void, any Error>
        var inbox: RelayInbox?
        var lastBatch: (count: Int, batch: RelayInbox.Batch)?

        init(_ prepared: Prepared) {
            let inbox: RelayInbox
            do {
                inbox = try RelayInbox(prepared.ends, window: prepared.settings.window, restartable: prepared.restartable,
                                       owner: "the parent's output")
            } catch {
                self.inbox = nil
                task = Task { throw error }
                return
            }
            self.inbox = inbox
            task = Task { try await prepared.stages.run(feed: prepared.feed, output: inbox, handler: nil) }
        }

        deinit {
            task.cancel()
            inbox?.close()
        }
    }
}
