import Synchronization

/// A direct channel between two processes: a pair of connected endpoints, one kept by the
/// process that made it (the anchor), one handed to another process (the point), in an
/// `Skprocess`'s state, a `tell`ed message or `Pool` work. Its descriptor crosses with it.
///
/// ```swift
/// let (anchor, point) = try ProcessPipe.pair()
/// let worker = try await PipeWorker(pipe: point).start()   // the point moves to the child
/// try await anchor.send(Command.compute(42))
/// let answer = try await anchor.recv(Int.self)
/// ```
///
/// Values are `Codable` and typed on arrival as `listen` is: `recv(T.self)` refuses a value of
/// another type (it stays queued). A closed endpoint, or a peer whose process died, makes
/// `recv` throw `ProcessingError` (`.channelClosed`) instead of waiting forever.
///
/// A point handed to another process is closed in this one (so that the anchor sees the end
/// when that process dies); `lock()` keeps a point from being handed over. The anchor never
/// leaves its process.
public enum ProcessPipe {
    /// A new connected pair. With `oneWay`, the anchor only sends and the point only receives.
    public static func pair(oneWay: Bool = false) throws -> (anchor: Anchor, point: Point) {
        // Owned ends: a failure closes each exactly once (the anchor's, by its connection).
        let ends = try Syscall.socketPair()
        let anchor = Anchor(connection: try PipeConnection(fd: ends.first), oneWay: oneWay)
        let point = Point(connection: try PipeConnection(fd: ends.second), oneWay: oneWay)
        return (anchor, point)
    }

    /// The end that stays in the process that made the pair. It cannot be sent to another
    /// process (encoding it throws `PipeEndpointError`).
    public final class Anchor: Codable, Sendable {
        let endpoint: PipeEndpoint

        init(connection: PipeConnection, oneWay: Bool) {
            endpoint = PipeEndpoint(connection: connection, oneWay: oneWay, canSend: true, canReceive: !oneWay, name: "anchor")
        }

        /// Sends `value` to the point.
        public func send<T: Encodable & Sendable>(_ value: T) async throws { try await endpoint.send(value) }

        /// The next value from the point, as a `T`; waits for it.
        public func recv<T: Decodable & Sendable>(_ type: T.Type = T.self) async throws -> T {
            try await endpoint.receive(T.self)
        }

        /// The next value from the point, or nil if `timeout` passes first.
        public func recv<T: Decodable & Sendable>(_ type: T.Type = T.self, timeout: Duration) async throws -> T? {
            try await endpoint.receive(T.self, timeout: timeout)
        }

        /// Closes this end: the point's `recv` then fails once it has read what was sent.
        public func close() { endpoint.close() }

        /// Does nothing: an anchor is always locked.
        public func lock() {}

        /// Always throws `PipeEndpointError`: an anchor stays where it was made.
        public func unlock() throws {
            throw PipeEndpointError("an anchor is always locked: it stays in the process that made the pair; hand the point over instead")
        }

        /// Always throws: the anchor stays in its process.
        public func encode(to encoder: any Encoder) throws {
            throw PipeEndpointError("a pipe's anchor cannot be sent to another process; send its point (the other end of ProcessPipe.pair())")
        }

        /// Always throws: no anchor ever crosses, so none can arrive.
        public init(from decoder: any Decoder) throws {
            throw PipeEndpointError("a pipe's anchor cannot arrive from another process")
        }
    }

    /// The end that is handed to another process. While `lock()`ed it refuses to be sent.
    public final class Point: Codable, Sendable {
        let endpoint: PipeEndpoint
        private let locked = Atomic<Bool>(false)

        init(connection: PipeConnection, oneWay: Bool) {
            endpoint = PipeEndpoint(connection: connection, oneWay: oneWay, canSend: !oneWay, canReceive: true, name: "point")
        }

        /// Sends `value` to the anchor (not on a one-way pipe).
        public func send<T: Encodable & Sendable>(_ value: T) async throws { try await endpoint.send(value) }

        /// The next value from the anchor, as a `T`; waits for it.
        public func recv<T: Decodable & Sendable>(_ type: T.Type = T.self) async throws -> T {
            try await endpoint.receive(T.self)
        }

        /// The next value from the anchor, or nil if `timeout` passes first.
        public func recv<T: Decodable & Sendable>(_ type: T.Type = T.self, timeout: Duration) async throws -> T? {
            try await endpoint.receive(T.self, timeout: timeout)
        }

        /// Closes this end: the anchor's `recv` then fails once it has read what was sent.
        public func close() { endpoint.close() }

        /// Keeps the point in this process: sending it (in a process, a message or pool work)
        /// throws `PipeEndpointError` until `unlock()`.
        public func lock() { locked.store(true, ordering: .relaxed) }

        /// Lets the point be handed to another process again.
        public func unlock() { locked.store(false, ordering: .relaxed) }

        /// Whether the point is locked.
        public var isLocked: Bool { locked.load(ordering: .relaxed) }

        /// Attaches the point's descriptor to the frame being built; handed to a child, the
        /// point is closed here.
        public func encode(to encoder: any Encoder) throws {
            guard !isLocked else {
                throw PipeEndpointError("this pipe point is locked, so it cannot be sent to another process; unlock() it first")
            }
            guard let outgoing = DescriptorTransfer.outgoing else {
                throw PipeEndpointError("""
                    a pipe point crosses only into another process: in an Skprocess's state, a tell()ed message \
                    or Pool work (not in a result, a Share, or a pool map's items)
                    """)
            }
            let index = try endpoint.handOver(to: outgoing)
            var container = encoder.unkeyedContainer()
            try container.encode(index)
            try container.encode(endpoint.oneWay)
        }

        /// Takes the descriptor that came with the frame being decoded.
        public init(from decoder: any Decoder) throws {
            var container = try decoder.unkeyedContainer()
            let index = try container.decode(Int.self)
            let oneWay = try container.decode(Bool.self)
            guard let fd = DescriptorTransfer.incoming?.take(index) else {
                throw PipeEndpointError("a pipe point arrived without its descriptor (was it decoded twice, or from bytes that did not come in a frame?)")
            }
            endpoint = PipeEndpoint(connection: try PipeConnection(fd: FileDescriptor(owning: fd)), oneWay: oneWay, canSend: !oneWay, canReceive: true, name: "point")
        }
    }
}

/// What the anchor and the point share: the connection (until closed or handed over) and
/// which directions this end may use.
final class PipeEndpoint: Sendable {
    private enum Status {
        case open(PipeConnection)
        case closed
        case handedOver
    }

    let oneWay: Bool
    private let canSend: Bool
    private let canReceive: Bool
    private let name: String
    private let status: Mutex<Status>

    init(connection: PipeConnection, oneWay: Bool, canSend: Bool, canReceive: Bool, name: String) {
        (self.oneWay, self.canSend, self.canReceive, self.name) = (oneWay, canSend, canReceive, name)
        status = Mutex(.open(connection))
    }

    private func connection(for use: String) throws -> PipeConnection {
        switch status.withLock({ $0 }) {
        case .open(let connection): return connection
        case .closed: throw PipeEndpointError("\(use) on a closed pipe \(name)")
        case .handedOver: throw PipeEndpointError("\(use) on a pipe \(name) that was handed to another process; use it there")
        }
    }

    func send<T: Encodable>(_ value: T) async throws {
        guard canSend else {
            throw PipeEndpointError("the \(name) of a one-way pipe only receives: the anchor sends, the point receives")
        }
        try await connection(for: "send").send(value)
    }

    func receive<T: Decodable>(_ type: T.Type, timeout: Duration? = nil) async throws -> T? {
        guard canReceive else {
            throw PipeEndpointError("the \(name) of a one-way pipe only sends: the anchor sends, the point receives")
        }
        return try await connection(for: "recv").receive(T.self, timeout: timeout)
    }

    func receive<T: Decodable>(_ type: T.Type) async throws -> T {
        guard let value = try await receive(T.self, timeout: nil) else {
            throw ProcessingError(.channelClosed, "the pipe \(name) stopped receiving")
        }
        return value
    }

    func close() {
        end(as: .closed)
    }

    private func end(as ending: Status) {
        let connection: PipeConnection? = status.withLock { status in
            defer { status = ending }
            if case .open(let connection) = status { return connection }
            return nil
        }
        connection?.shutDown()
    }

    /// Attaches this end's descriptor to `outgoing`; when the frame moves values to another
    /// process, this end is closed here.
    func handOver(to outgoing: OutgoingDescriptors) throws -> Int {
        let connection = try connection(for: "sending")
        if outgoing.moves && connection.isStarted {
            throw PipeEndpointError(
                "this pipe \(name) was already used in this process, and what it read here would not reach the "
                    + "process it goes to; hand a point over before using it, or make a new pair")
        }
        let index = try outgoing.attach(connection.channel.fd, of: "a ProcessPipe point")
        if outgoing.moves { end(as: .handedOver) }
        return index
    }
}
