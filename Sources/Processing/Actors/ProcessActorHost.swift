import Distributed

/// An actor process: its start state names the actor's type, and `run()` is its whole life
/// (make the actor, `startup()`, serve calls until stopped, `shutdown()`).
struct ProcessActorHost<A: ProcessHostedActor>: Skprocess {
    /// The socket to the parent's system, or (on another host) where to wait for it.
    var link: ActorLink
    var hostToken: UInt64
    var parentToken: UInt64
    /// `A.Parameters`, for a `ProcessActorWithParameters`.
    var parameters: ActorSpawnParameters?

    /// One run; a crash or a throw ends the process, and its calls fail with that.
    var processConfig: ProcessConfig { ProcessConfig(runs: 1) }

    mutating func run() async throws {
        let system = ProcessActorSystem(hosting: hostToken, parentToken: parentToken)
        let connection = try await system.connectToParent(link.connectedDescriptor())
        let actor: A
        do {
            let parameters = parameters
            actor = try await ActorDecoding.$system.withValue(system) { try await Self.make(system, parameters) }
            try await actor.whenLocal { try await $0.startup() }
        } catch {
            // The spawn throws this; the process has nothing more to do.
            try await connection.announceFailure(error)
            return
        }
        try await connection.announceReady(actor.id)
        await connection.waitUntilStopped()
        defer { system.releaseAll() }
        try await actor.whenLocal { try await $0.shutdown() }
        connection.close(ProcessActorError(.processEnded, "\(ProcessActorSystem.processDescription) has stopped"))
    }

    private static func make(_ system: ProcessActorSystem, _ parameters: ActorSpawnParameters?) async throws -> A {
        if let plain = A.self as? any ProcessActor.Type {
            return try await makePlain(plain, system)
        }
        guard let configured = A.self as? any ProcessActorWithParameters.Type, let parameters else {
            throw ProcessActorError(.invalidUse, "\(String(reflecting: A.self)) is neither a ProcessActor nor a ProcessActorWithParameters")
        }
        return try await makeConfigured(configured, system, parameters)
    }

    private static func makePlain<P: ProcessActor>(_ type: P.Type, _ system: ProcessActorSystem) async throws -> A {
        try await P(actorSystem: system) as! A
    }

    private static func makeConfigured<P: ProcessActorWithParameters>(_ type: P.Type, _ system: ProcessActorSystem,
                                                                     _ encoded: ActorSpawnParameters) async throws -> A {
        let parameters: P.Parameters
        do {
            parameters = try encoded.decode(P.Parameters.self)
        } catch {
            throw ProcessActorError(.callFailed, "the parameters of \(String(reflecting: P.self)) did not decode: \(error)")
        }
        return try await P(actorSystem: system, parameters: parameters) as! A
    }
}

/// How an actor process reaches its parent's system: a socket that came with its start
/// state, or, on another host (where no descriptor can come), an abstract Unix socket it
/// listens on until the parent's second ssh session (a connector: this binary, bridging its
/// stdio to that socket) connects.
enum ActorLink: Codable, Sendable {
    case socket(RelayLinkEnd)
    case listen(name: String)

    /// The connected socket, ready for a channel.
    func connectedDescriptor() async throws -> Int32 {
        switch self {
        case .socket(let end):
            return try end.takeForChannel("to the parent")
        case .listen(let name):
            let listener = FileDescriptor(owning: try Syscall.listenAbstract(name))
            while true {
                // No time limit of its own: a parent that never connects is gone, and this
                // process with it (its session ends).
                try await Reactor.shared.waitUntilReady(listener.rawValue, writable: false)
                if let fd = try Syscall.accept(listener.rawValue) {
                    do {
                        try Channel.prepare(fd)
                    } catch {
                        Syscall.close(fd)
                        throw error
                    }
                    return fd
                }
            }
        }
    }
}

/// An actor's spawn parameters as they cross in its host's start state. Encoded within that
/// state, so that what they hold that carries a descriptor (an `EventGroup`, a pipe point)
/// travels with it; decoded only once the child's actor system exists, so that actor
/// references in them resolve.
struct ActorSpawnParameters: Codable, Sendable {
    private enum Content: Sendable {
        /// In the parent: the value, encoded with the start state.
        case value(any Encodable & Sendable)
        /// In the child: the bytes, and the start frame's descriptors they refer to.
        case encoded([UInt8], AttachedDescriptors?)
    }

    private let content: Content

    init(_ value: any Encodable & Sendable) {
        content = .value(value)
    }

    func encode(to encoder: any Encoder) throws {
        guard case .value(let value) = content else {
            throw ProcessingError(.encodingFailed, "an actor's parameters cross once, from the parent to its process")
        }
        var container = encoder.singleValueContainer()
        // Inside the start state's encoding: descriptors attach to its frame.
        try container.encode(try BinaryEncoder().encode(value))
    }

    init(from decoder: any Decoder) throws {
        let bytes = try decoder.singleValueContainer().decode([UInt8].self)
        content = .encoded(bytes, DescriptorTransfer.incoming)
    }

    /// The parameters, decoded in the child (with its system current, for actor references).
    func decode<P: Decodable>(_ type: P.Type) throws -> P {
        guard case .encoded(let bytes, let attachments) = content else {
            throw ProcessingError(.decodingFailed, "an actor's parameters are decoded in its own process")
        }
        return try DescriptorTransfer.receiving(attachments) { try BinaryDecoder().decode(P.self, from: bytes) }
    }
}
