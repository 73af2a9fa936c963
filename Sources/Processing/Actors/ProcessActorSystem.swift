import Distributed
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs distributed actors in child processes: seed 004's message processes, with Swift's
/// own `distributed actor` as the frontend/backend mapping.
///
/// ```swift
/// distributed actor Detector: ProcessActor {
///     distributed func detect(_ frame: [UInt8]) async throws -> [Box] { findBoxes(frame) }   // runs in the child
/// }
/// let system = ProcessActorSystem()
/// let detector = try await system.spawn(Detector.self)   // a child process hosts it
/// let boxes = try await detector.detect(frame)
/// try await system.stop(detector)
/// ```
///
/// - **Calls** cross with their arguments and results (`Codable`, actor references included),
///   `Void` funcs are acknowledged (so their errors surface), generic funcs cross by their
///   type arguments' names, and a thrown error arrives as itself when it is `Codable`, else
///   as a `RemoteError` with its type's name and description.
/// - **Many calls at once**: calls from many tasks are in flight together; the child runs each
///   as a task of its own, as the actor's isolation allows (reentrant at its suspension
///   points, like any actor). Calls from one task run in order, since each is awaited; calls
///   from different tasks may start in any order.
/// - **Failure is a value**: the child's death fails every pending call at once with its
///   `ProcessCrashError` (signal, stderr's last lines); an actor used after its process ended
///   throws `ProcessActorError` (`.processEnded`); a call time-out (`callTimeout`,
///   `withCallTimeout`) and cancelling the caller's task cancel the call in the child too.
/// - **The child speaks first**: it can call actors that live in the parent (pass one to it),
///   and `sendOut(_:)` values the parent reads with `messages(from:as:)`, with backpressure.
///
/// In the child, the actor's `actorSystem` is that process's own system, connected to the
/// parent's. The child holds its actors until it is stopped.
public final class ProcessActorSystem: DistributedActorSystem, Sendable {
    /// How actors are named.
    public typealias ActorID = ProcessActorID
    /// Records calls.
    public typealias InvocationEncoder = ProcessInvocationEncoder
    /// Reads calls.
    public typealias InvocationDecoder = ProcessInvocationDecoder
    /// Sends outcomes back.
    public typealias ResultHandler = ProcessResultHandler
    /// Arguments, results and actor parameters are `Codable`.
    public typealias SerializationRequirement = Codable

    private enum Role {
        /// The system a program makes: it spawns actor processes and hosts actors weakly.
        case main
        /// The system of an actor process: connected to its parent's, it hosts its actors
        /// strongly until the process stops.
        case hosted(parentToken: UInt64)
    }

    private enum LocalActor {
        case strong(any DistributedActor)
        case weak(WeakActor)

        var actor: (any DistributedActor)? {
            switch self {
            case .strong(let actor): actor
            case .weak(let box): box.actor
            }
        }
    }

    private final class WeakActor: @unchecked Sendable {  // `actor`: a weak reference, written once in init
        weak var actor: (any DistributedActor)?
        init(_ actor: any DistributedActor) { self.actor = actor }
    }

    private struct Registry {
        var nextNumber: UInt64 = 1
        var local: [UInt64: LocalActor] = [:]
        /// By the peer's host number: the actor processes spawned (main), or the parent (hosted).
        var connections: [UInt64: ActorConnection] = [:]
        /// The actor processes spawned, by host number, in the order of their spawns.
        var hosts: [UInt64: ActorHostRecord] = [:]
        var hostOrder: [UInt64] = []
        /// What calls to an actor process that has ended get, once its record is let go (a
        /// few bytes each, instead of its connection's buffers).
        var retired: [UInt64: Retired] = [:]
    }

    /// An actor process that has ended: how.
    private struct Retired {
        let failure: (any Error)?
        let error: any Error
    }

    /// A record of an actor process, running or ended.
    private enum Host {
        case running(ActorHostRecord)
        case retired(Retired)
    }

    /// This system's host number: the `host` of the actors it makes.
    let token: UInt64
    private let role: Role
    private let registry = Mutex(Registry())

    /// How long a call may take before it fails with `ProcessActorError` (`.callTimedOut`)
    /// and is cancelled in the child; nil: no limit. `withCallTimeout` overrides it for a scope.
    public let callTimeout: Duration?

    /// A system for this program to spawn actor processes with.
    public init(callTimeout: Duration? = nil) {
        token = UInt64.random(in: 1...UInt64.max)
        role = .main
        self.callTimeout = callTimeout
    }

    /// The system of an actor process, as its host makes it.
    init(hosting token: UInt64, parentToken: UInt64) {
        self.token = token
        role = .hosted(parentToken: parentToken)
        callTimeout = nil
    }

    /// This process, for errors: "Detector (pid 4242)".
    static var processDescription: String { "\(ProcessLog.ownName) (pid \(getpid()))" }

    // MARK: Spawning

    /// Starts a child process that makes an `A` there, runs its `startup()`, and returns the
    /// reference to it. Throws what the actor's `init` or `startup()` threw, or the child's
    /// crash. `name` names the process in logs, output lines and errors (the type's name by
    /// default).
    ///
    /// `on`: where the process runs (``WorkerHost/local`` by default). On another host the
    /// calls travel over a second ssh session beside the process's own; parameters that hold
    /// what cannot cross a network (an `EventGroup`, a pipe point) are refused
    /// (`ProcessingError.Code.cannotCrossHosts`).
    public func spawn<A: ProcessActor>(_ type: A.Type, name: String? = nil, on host: WorkerHost = .local) async throws -> A {
        try await spawnHost(A.self, parameters: nil, name: name, on: host)
    }

    /// Starts a child process that makes an `A` there from `parameters`, runs its
    /// `startup()`, and returns the reference to it (on `host`, as above).
    public func spawn<A: ProcessActorWithParameters>(_ type: A.Type, parameters: A.Parameters,
                                                    name: String? = nil, on host: WorkerHost = .local) async throws -> A {
        try await spawnHost(A.self, parameters: ActorSpawnParameters(parameters), name: name, on: host)
    }

    private func spawnHost<A: ProcessHostedActor>(_ type: A.Type, parameters: ActorSpawnParameters?, name: String?,
                                                  on host: WorkerHost) async throws -> A {
        guard case .main = role else {
            throw ProcessActorError(.invalidUse, """
                an actor process cannot spawn actor processes of its own yet; spawn \(String(reflecting: A.self)) \
                from the main process and pass the reference in
                """)
        }
        let name = name ?? String(describing: A.self)
        let hostToken = UInt64.random(in: 1...UInt64.max)
        let ends = try RelayLinkEnd.pair(sender: name, receiver: "the parent")
        // On another host the child listens, and a connector joins it to `ends.receiving` here.
        let listenName = "processing-actor-\(hostToken)-\(UInt64.random(in: 1...UInt64.max))"
        let link: ActorLink = host.isLocal ? .socket(ends.receiving) : .listen(name: listenName)
        let handle = try ProcessHandle(
            ProcessActorHost<A>(link: link, hostToken: hostToken, parentToken: token, parameters: parameters),
            displayName: name, on: host, runsErrorHandlerAfterCrash: false)
        let core = handle.core
        let connection = ActorConnection(
            fd: try ends.sending.takeForChannel("to \(name)"), system: self, peerToken: hostToken, peer: name,
            endError: { end in await Self.endError(of: core, name: name, end) })
        let record = ActorHostRecord(name: name, core: core, owner: handle, connection: connection)
        registry.withLock { registry in
            registry.connections[hostToken] = connection
            registry.hosts[hostToken] = record
            registry.hostOrder.append(hostToken)
        }
        connection.start()
        do {
            try await core.launch()
            if !host.isLocal {
                try await RemoteConnector.start(on: host, name: listenName, joining: ends.receiving, of: core)
            }
            let id = try await withTaskCancellationHandler {
                try await connection.waitUntilReady()
            } onCancel: {
                core.kill()
            }
            // The process must name its own actor: a reference to another would route calls
            // meant for it elsewhere.
            guard id.host == hostToken else {
                throw ProcessActorError(.callFailed, "\(name) announced \(id), which is not an actor of its own process")
            }
            // Once the process ends, its record goes (a long-running program spawns many).
            Task { [weak self] in
                _ = try? await core.waitForEnd(timeout: nil)
                self?.retire(hostToken, name: name, core: core)
            }
            return try A.resolve(id: id, using: self)
        } catch {
            await core.end()
            forget(hostToken, leaving: nil)  // nothing of a failed spawn is kept
            if Task.isCancelled { throw CancellationError() }
            throw error
        }
    }

    /// What calls get once the connection to `core`'s child ended: its crash report, or that
    /// it stopped.
    private static func endError(of core: ProcessCore, name: String, _ end: ChannelEnd) async -> any Error {
        // The socket ends when the child exits; its exit and report follow (later on a loaded
        // machine, or after a stop's last steps: allow for that before giving up on it).
        _ = try? await core.waitForEnd(timeout: .seconds(10))
        switch core.outcome {
        case .failure(let error)?:
            return error
        case .output?:
            return ProcessActorError(.processEnded, "\(name) was stopped: its process has ended; spawn it again to use it")
        case nil:
            // Its socket ended but it runs on: it is of no use, and must not be left behind.
            core.kill()
            return ProcessActorError(.processEnded, "the connection to \(name) ended (\(end.description)); it was killed")
        }
    }

    // MARK: The processes

    private func host(of id: ProcessActorID, _ operation: String) throws -> Host {
        let found: Host? = registry.withLock { registry in
            if let record = registry.hosts[id.host] { return .running(record) }
            return registry.retired[id.host].map { .retired($0) }
        }
        guard let found else {
            throw ProcessActorError(.invalidUse, """
                \(operation) takes an actor that this system spawned (with spawn), and \(id) is not one
                """)
        }
        return found
    }

    /// Lets go of an actor process that has ended (its handle, its connection), keeping how it
    /// ended for the calls that still come.
    private func retire(_ hostToken: UInt64, name: String, core: ProcessCore) {
        var failure: (any Error)?
        if case .failure(let error)? = core.outcome { failure = error }
        let retired = Retired(failure: failure, error: failure ?? ProcessActorError(.processEnded, """
            \(name) was stopped: its process has ended; spawn it again to use it
            """))
        forget(hostToken, leaving: retired)
    }

    /// Lets go of an actor process's record and connection, leaving `retired` in their place.
    private func forget(_ hostToken: UInt64, leaving retired: Retired?) {
        let released = registry.withLock { registry in
            defer {
                registry.hosts[hostToken] = nil
                registry.connections[hostToken] = nil
                registry.hostOrder.removeAll { $0 == hostToken }
                registry.retired[hostToken] = retired
            }
            return (registry.hosts[hostToken], registry.connections[hostToken])
        }
        _ = released  // released here, outside the lock
    }

    /// Asks the actor's process to stop: it takes no new calls, finishes those it has, runs
    /// the actor's `shutdown()` and exits. Waits for that; after `gracePeriod` the process is
    /// killed. Returns false if it had to be killed. Throws what `shutdown()` threw, or the
    /// process's crash (also one that happened before).
    @discardableResult
    public func stop<A: DistributedActor>(_ actor: A, gracePeriod: Duration = .seconds(5)) async throws -> Bool
    where A.ActorSystem == ProcessActorSystem {
        switch try host(of: actor.id, "stop") {
        case .running(let record): return try await record.stop(gracePeriod: gracePeriod)
        case .retired(let retired):
            if let failure = retired.failure { throw failure }
            return true
        }
    }

    /// Kills the actor's process at once (SIGKILL): its pending calls fail with its
    /// `ProcessCrashError`.
    public func kill<A: DistributedActor>(_ actor: A) throws where A.ActorSystem == ProcessActorSystem {
        if case .running(let record) = try host(of: actor.id, "kill") { record.core.kill() }
    }

    /// Waits until the actor's process has ended; throws its crash, or what `shutdown()` threw.
    public func waitForEnd<A: DistributedActor>(_ actor: A) async throws where A.ActorSystem == ProcessActorSystem {
        switch try host(of: actor.id, "waitForEnd") {
        case .running(let record): try await record.waitForEnd()
        case .retired(let retired): if let failure = retired.failure { throw failure }
        }
    }

    /// Whether the actor's process is running.
    public func isAlive<A: DistributedActor>(_ actor: A) -> Bool where A.ActorSystem == ProcessActorSystem {
        guard case .running(let record)? = try? host(of: actor.id, "isAlive") else { return false }
        return record.core.isAlive
    }

    /// The pid of the actor's process while it runs.
    public func pid<A: DistributedActor>(of actor: A) -> Int32? where A.ActorSystem == ProcessActorSystem {
        guard case .running(let record)? = try? host(of: actor.id, "pid") else { return nil }
        return record.core.pid
    }

    /// Stops every actor process this system spawned (as `stop` does, all at once) and waits
    /// for their ends.
    public func shutdown(gracePeriod: Duration = .seconds(5)) async {
        let records = spawnedHosts
        await withTaskGroup(of: Void.self) { group in
            for record in records { group.addTask { _ = try? await record.stop(gracePeriod: gracePeriod) } }
        }
    }

    /// How many records of actor processes (with their connections) the system holds.
    var heldRecords: Int { registry.withLock { $0.hosts.count + $0.connections.count } }

    /// The actor processes spawned so far that still run, in the order of their spawns.
    var runningHosts: [ActorHostRecord] { spawnedHosts.filter { $0.core.isAlive } }

    /// The actor processes spawned whose records are kept (not ended yet), in spawn order.
    private var spawnedHosts: [ActorHostRecord] {
        registry.withLock { registry in registry.hostOrder.compactMap { registry.hosts[$0] } }
    }

    // MARK: Messages out of an actor process

    /// In an actor process (the actor's `actorSystem`): sends `value` to the parent, which
    /// reads it with `messages(from:as:)` (seed 004's `send_out__`). Waits while the parent
    /// holds 256 messages, or 16 MiB of them, that it has not read (backpressure); throws
    /// once the parent is gone.
    public func sendOut<T: Codable & Sendable>(_ value: T) async throws {
        guard case .hosted(let parentToken) = role, let parent = registry.withLock({ $0.connections[parentToken] }) else {
            throw ProcessActorError(.invalidUse, """
                sendOut works in an actor process (through the actor's actorSystem); in the main process, call the actor instead
                """)
        }
        try await parent.sendOut(value)
    }

    /// The values the actor's process sends out with `sendOut`, as `T`s, in order (seed 004's
    /// `getPipe()`). Ends when the process ends. One reader at a time.
    public func messages<T: Decodable & Sendable, A: DistributedActor>(from actor: A, as type: T.Type = T.self) throws
        -> ProcessActorMessages<T> where A.ActorSystem == ProcessActorSystem {
        switch try host(of: actor.id, "messages(from:)") {
        case .running(let record): return ProcessActorMessages(connection: record.connection)
        case .retired(let retired): throw retired.error
        }
    }

    // MARK: Call time-outs

    @TaskLocal static var scopedCallTimeout: Duration?

    /// Runs `body` with calls made in it failing (`.callTimedOut`) after `timeout`, and
    /// cancelled in the child, instead of the system's `callTimeout`.
    public static func withCallTimeout<R>(_ timeout: Duration, _ body: () async throws -> R) async rethrows -> R {
        try await $scopedCallTimeout.withValue(timeout) { try await body() }
    }

    // MARK: DistributedActorSystem

    /// The local actor `id` names, or nil when it lives in another process (the runtime then
    /// makes a proxy whose calls go there).
    public func resolve<Act>(id: ActorID, as actorType: Act.Type) throws -> Act?
    where Act: DistributedActor, Act.ID == ActorID {
        if id.host == token {
            guard let actor = localActor(id.number) else {
                throw ProcessActorError(.actorNotFound, "no actor \(id.number) lives in \(Self.processDescription)")
            }
            guard let typed = actor as? Act else {
                throw ProcessActorError(.actorNotFound, """
                    \(id) is a \(String(reflecting: type(of: actor))), not a \(String(reflecting: Act.self))
                    """)
            }
            return typed
        }
        // A proxy: also for an actor whose process has ended (its calls say so).
        if registry.withLock({ $0.retired[id.host] != nil }) { return nil }
        _ = try connection(toward: id)
        return nil
    }

    /// A new ID for an actor being made in this process.
    public func assignID<Act>(_ actorType: Act.Type) -> ActorID where Act: DistributedActor, Act.ID == ActorID {
        registry.withLock { registry in
            defer { registry.nextNumber += 1 }
            return ProcessActorID(host: token, number: registry.nextNumber)
        }
    }

    /// An actor made in this process is ready for calls.
    public func actorReady<Act>(_ actor: Act) where Act: DistributedActor, Act.ID == ActorID {
        let entry: LocalActor
        switch role {
        case .main: entry = .weak(WeakActor(actor))
        case .hosted: entry = .strong(actor)
        }
        registry.withLock { $0.local[actor.id.number] = entry }
    }

    /// An actor of this process was released.
    public func resignID(_ id: ActorID) {
        guard id.host == token else { return }
        let removed = registry.withLock { $0.local.removeValue(forKey: id.number) }
        _ = removed  // released here, outside the lock
    }

    /// An encoder for one call.
    public func makeInvocationEncoder() -> InvocationEncoder { InvocationEncoder() }

    /// Makes a call on an actor of another process and returns its result.
    public func remoteCall<Act, Err, Res>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder,
        throwing: Err.Type, returning: Res.Type
    ) async throws -> Res where Act: DistributedActor, Act.ID == ActorID, Err: Error, Res: Codable {
        let connection = try connection(toward: actor.id)
        let reply = try await connection.call(actor.id.number, target: target, invocation: invocation,
                                              timeout: Self.scopedCallTimeout ?? callTimeout)
        return try connection.decodeReply(reply, as: Res.self)
    }

    /// Makes a call of a `Void` func on an actor of another process; returns once it has run.
    public func remoteCallVoid<Act, Err>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder, throwing: Err.Type
    ) async throws where Act: DistributedActor, Act.ID == ActorID, Err: Error {
        let connection = try connection(toward: actor.id)
        let reply = try await connection.call(actor.id.number, target: target, invocation: invocation,
                                              timeout: Self.scopedCallTimeout ?? callTimeout)
        try connection.checkVoidReply(reply)
    }

    // MARK: Routing

    private func connection(toward id: ProcessActorID) throws -> ActorConnection {
        let key: UInt64
        switch role {
        case .main: key = id.host
        case .hosted(let parentToken):
            guard id.host == parentToken else {
                throw ProcessActorError(.unreachable, """
                    \(id) lives in another actor process, which \(Self.processDescription) has no connection to; \
                    an actor process reaches its own actors and the main process's
                    """)
            }
            key = parentToken
        }
        let (connection, retired) = registry.withLock { ($0.connections[key], $0.retired[key]) }
        if let retired { throw retired.error }
        guard let connection else {
            throw ProcessActorError(.unreachable, "\(id) is not an actor of this system or of a process it spawned")
        }
        return connection
    }

    /// The actor `number` of this process, if it is still there.
    func localActor(_ number: UInt64) -> (any DistributedActor)? {
        registry.withLock { $0.local[number]?.actor }
    }

    // MARK: In an actor process

    /// Connects an actor process's system to its parent over `link`.
    func connectToParent(_ fd: Int32) throws -> ActorConnection {
        guard case .hosted(let parentToken) = role else { preconditionFailure("only an actor process connects to a parent") }
        let connection = ActorConnection(
            fd: fd, system: self, peerToken: parentToken, peer: "the main process",
            endError: { end in ProcessActorError(.processEnded, "the main process is gone (\(end.description))") })
        registry.withLock { $0.connections[parentToken] = connection }
        connection.start()
        return connection
    }

    /// Lets go of every actor of this process (an actor process that stops).
    func releaseAll() {
        let released = registry.withLock { registry in
            defer { registry.local = [:] }
            return registry.local
        }
        _ = released  // released here, outside the lock
    }
}
