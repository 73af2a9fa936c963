/// The values an actor process sends out (`ProcessActorSystem.sendOut`), in order, as an
/// `AsyncSequence`: what `ProcessActorSystem.messages(from:as:)` returns. It ends when the
/// process ends; a value that does not decode as `Element` throws, naming both types.
///
/// The process may send 256 values, or 16 MiB of them (one larger value when none is
/// unread), ahead of the reader; then its `sendOut` waits.
public struct ProcessActorMessages<Element: Decodable & Sendable>: AsyncSequence, Sendable {
    let connection: ActorConnection

    /// Reads the values one at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let connection: ActorConnection

        /// The next value; nil once the process has ended.
        public mutating func next() async throws -> Element? {
            guard let bytes = try await connection.nextMessage() else { return nil }
            do {
                return try BinaryDecoder().decode(Element.self, from: bytes)
            } catch {
                throw ProcessActorError(.callFailed, """
                    a message from \(connection.peer) did not decode as \(String(reflecting: Element.self)): \(error)
                    """)
            }
        }
    }

    /// An iterator over the values.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(connection: connection) }
}
