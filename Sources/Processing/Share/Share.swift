/// State shared by every process that holds it: a `Codable` value that any process reads and
/// updates in place.
///
/// ```swift
/// struct Stats: Codable, Sendable { var counter = 0; var log: [String] = [] }
///
/// struct Worker: Skprocess {
///     var share: Share<Stats>
///     var processConfig = ProcessConfig(runs: 10)
///     mutating func run() async throws {
///         try await share.update { $0.counter += 1; $0.log.append("run \(currentRun)") }
///     }
/// }
///
/// let share = try await Share(Stats())
/// for _ in 0..<10 { _ = try await Worker(share: share).start() }   // wait for them, then:
/// let total = try await share.counter                                 // 100
/// ```
///
/// A `Share` is a small `Codable`, `Sendable` handle: store it in an `Skprocess`, a `PoolWork`
/// value or a message, and the process that receives it maps the same memory; keep using it in
/// the parent meanwhile. The state lives in shared memory, not in any one process, for as long
/// as some process holds the share.
///
/// **Consistency.** Every `update` runs under one lock that all processes holding the share
/// take, starts from the state the last finished update published, and publishes its result
/// with a single atomic store once its closure has returned; so updates are applied one at a
/// time in some order, none is lost, and `read()` (or a property read) returns the state as of
/// the last finished update. A process that dies in the middle of an update, even by SIGKILL,
/// leaves the state as that update found it: its half-done change is never seen, no earlier
/// update is lost, and the lock passes on to the next process (a robust mutex), so no one is
/// blocked.
///
/// **Cost.** The lock is a blocking, process-shared mutex: keep closures short, and do not wait
/// on anything inside them (a closure is synchronous, so it cannot `await`). Each update encodes
/// the whole state with the library's binary coder (and decodes it when another process
/// changed it since this one last looked): a small state updates in about a microsecond, a
/// 1 MiB byte array in about 50 µs, and a state of many small values costs more per byte
/// (BENCHMARKS.md has the figures). Keep large, rarely changed data out of a hot share.
///
/// **Lifecycle.** A share starts running. `stop()` stops it for every process: reads and
/// updates anywhere then throw `ProcessingError` (code `.shareStopped`) until `start()`;
/// `clear()` puts back the initial state; `withShare(_:_:)` stops its share when its scope ends.
/// The memory is freed when the last process holding the share drops it.
///
/// `State` should be a value type (a struct, an enum, a collection): a process keeps its last
/// decoded copy to skip decoding when no other process changed the state. Processes of the
/// same user only: another process opens the share through the descriptor of one that holds
/// it (on Linux through procfs, which must be mounted).
@dynamicMemberLookup
public struct Share<State: Codable & Sendable>: Sendable {
    let storage: ShareStorage<State>

    /// Creates a running share holding `initial`: `try await Share(Stats())`.
    /// Throws `ProcessingError` if the state does not encode or the shared memory cannot be made.
    public init(_ initial: State) async throws {
        storage = try ShareStorage(initial: initial)
        _ = ShareRegistry.register(storage, token: storage.token)
    }

    /// Applies a closure to the state, atomically with respect to every process holding the
    /// share, and returns what the closure returns: `try await share.update { $0.counter += 1 }`.
    ///
    /// If the closure throws, the state is left as it was and the error is rethrown. Throws
    /// `ProcessingError` when the share is stopped (`.shareStopped`) or the new state does not
    /// encode (`.encodingFailed`; the update is dropped). The closure runs while holding the
    /// lock that every process's reads and updates wait for: keep it short.
    ///
    /// Waiting for the lock holds no thread (see `ShareLockWait`): a cancelled task stops
    /// waiting with `CancellationError`, and `share.update.timeout(.seconds(1))() { … }` with
    /// `ResultTimeoutError`. `share.update.sync() { … }` is the blocking form, for synchronous
    /// callers.
    public var update: Modifiable<ShareUpdateOperation<State>, AsyncCall> {
        Modifiable(ShareUpdateOperation(storage: storage), name: "Share.update")
    }

    /// The state as of the last finished update: `let stats = try await share.read()`.
    /// Throws `ProcessingError` (`.shareStopped`) when the share is stopped. Modifiable like
    /// `update` (`share.read.timeout(.seconds(1))()`, `.sync()`, `.background()`).
    public var read: Modifiable<ShareReadOperation<State>, AsyncCall> {
        Modifiable(ShareReadOperation(storage: storage), name: "Share.read")
    }

    /// One property of the state, as of the last finished update: `try await share.counter`.
    /// Throws `ProcessingError` (`.shareStopped`) when the share is stopped. A property named
    /// like a member of `Share` itself (`description`, `isRunning`, `read`) is read through
    /// `read()`.
    public subscript<Value: Sendable>(dynamicMember keyPath: KeyPath<State, Value> & Sendable) -> Value {
        get async throws {
            if let value = try storage.ifUnlocked("read", { try storage.readLocked { $0[keyPath: keyPath] } }) { return value }
            return try await ShareLockWait.run(operation: "reading a Share's property", limit: nil) {
                try storage.ifUnlocked("read") { try storage.readLocked { $0[keyPath: keyPath] } }
            }
        }
    }

    /// Stops the share for every process that holds it: their reads and updates throw
    /// `ProcessingError` (`.shareStopped`) until `start()`. Waits for an update in progress to
    /// finish; the state is kept.
    public func stop() async throws {
        try await ShareLockWait.run(operation: "Share.stop", limit: nil) {
            try storage.ifUnlocked("stop") { storage.setRunningLocked(false) }
        }
    }

    /// Makes a stopped share usable again, in every process, with the state it had.
    public func start() async throws {
        try await ShareLockWait.run(operation: "Share.start", limit: nil) {
            try storage.ifUnlocked("start") { storage.setRunningLocked(true) }
        }
    }

    /// Puts the initial state (the one the share was created with) back, for every process.
    /// Works whether the share is running or stopped.
    public func clear() async throws {
        try await ShareLockWait.run(operation: "Share.clear", limit: nil) {
            try storage.ifUnlocked("clear") { try storage.clearLocked() }
        }
    }

    /// Whether the share is running, that is, not stopped.
    public var isRunning: Bool { storage.isRunning }
}

extension Share: Codable {
    /// Writes the share's identity and where to find its memory: this process's id and fd
    /// number for it, then those of the processes it came from. No state is written.
    public func encode(to encoder: any Encoder) throws {
        try HostCrossing.refuseIfRemote("a \(Self.self)")
        var container = encoder.unkeyedContainer()
        try container.encode(storage.token)
        for source in storage.sources {
            try container.encode(source.pid)
            try container.encode(source.fd)
        }
    }

    /// Maps the share in this process: the mapping this process already has, or the memory
    /// opened through the first process it came from that still holds it. Throws
    /// `ProcessingError` (`.shareUnavailable`) when none does.
    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        let token = try container.decode(UInt64.self)
        var sources: [ShareSource] = []
        while !container.isAtEnd {
            sources.append(ShareSource(pid: try container.decode(Int32.self), fd: try container.decode(Int32.self)))
        }
        storage = try ShareStorage.open(token: token, sources: sources)
    }
}

extension Share: Equatable {
    /// Two shares are equal when they are the same shared state (one was copied or decoded
    /// from the other), whatever that state holds.
    public static func == (lhs: Share, rhs: Share) -> Bool { lhs.storage.token == rhs.storage.token }
}

extension Share: CustomStringConvertible {
    /// The state's type and the share's identity: `Share<Stats> 1a2b3c4d`.
    public var description: String { storage.name }
}
