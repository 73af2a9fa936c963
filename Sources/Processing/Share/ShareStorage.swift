#if canImport(Glibc)
import Glibc
#endif

/// One process's view of a share: its shared memory, the two mappings, and a cache of the decoded state.
///
/// **The protocol.** Every read and update takes the process-shared robust mutex in the header.
/// An update decodes the state from the slot the descriptor names (or takes this process's cached
/// copy, when the slot's generation is the one it cached), runs the closure, encodes the result
/// into the *other* slot with the next generation, and publishes it by storing a new descriptor
/// in one atomic 64-bit store. Until that store the published slot is untouched, so a process
/// killed anywhere in an update leaves the previous state published; the next locker gets
/// `EOWNERDEAD`, marks the mutex consistent and has nothing to repair.
///
/// **Growth.** A result that does not fit its slot makes both slots at least twice as large:
/// the file grows (`ftruncate`), the result goes to slot 1 of the new layout (which starts past
/// the end of both old slots, so it overwrites nothing published), and one descriptor store
/// publishes the new layout and the state together. Every process remaps its data region when
/// a descriptor needs more than it has mapped.
///
/// **Crossing.** A share travels as its token plus sources (pid, fd): the encoding process first,
/// then the processes it came from. `open` tries each in turn (through the other process's
/// descriptor: `Syscall.processFilePath`), checks that it is this share's memory (name,
/// magic, token) and maps it.
///
/// `@unchecked Sendable`: `fd`, `header` and the `let`s are immutable after init; `data`,
/// `dataLength`, `cached`, `cachedGeneration` and `scratch` are only touched while holding the
/// share's mutex in `header` (which every thread of every process takes first), or in deinit.
final class ShareStorage<State: Codable & Sendable>: AnyShareStorage, @unchecked Sendable {
    let token: UInt64
    /// The processes to find the memory through, this one first (what `Share.encode(to:)` writes).
    let sources: [ShareSource]
    /// "Share<State> 1a2b3c4d", for messages.
    let name: String

    private let fd: Int32
    private let header: ShareHeader
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let initialLength: Int
    private let slotsStart: Int

    // Guarded by the shared mutex. Runtime exclusivity checks are off for them (a few percent
    // of an update in a profile): the mutex already makes every access exclusive.
    @exclusivity(unchecked) private var data: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var dataLength: Int
    @exclusivity(unchecked) private var cached: State?
    @exclusivity(unchecked) private var cachedGeneration: UInt64 = 0
    /// The encoding buffer, kept between updates so that an update does not allocate one.
    @exclusivity(unchecked) private var scratch: [UInt8] = []

    /// A value type's copy is independent of the cache; a class instance is not, so class
    /// states are always decoded afresh.
    private static var cacheable: Bool { !(State.self is AnyObject.Type) }

    static func name(token: UInt64) -> String {
        let hex = String(token, radix: 16)
        let padded = String(repeating: "0", count: max(0, 16 - hex.count)) + hex
        return "Share<\(String(describing: State.self))> \(padded.prefix(8))"
    }

    // MARK: - Creating and opening

    /// Creates the shared memory for a new share holding `initial`.
    init(initial: State) throws(ProcessingError) {
        let encoded: [UInt8]
        do {
            encoded = try BinaryEncoder().encode(initial)
        } catch {
            throw ProcessingError(.encodingFailed, "the initial state of a Share<\(String(reflecting: State.self))> could not be encoded: \(error)")
        }
        token = UInt64.random(in: 1...UInt64.max)
        name = Self.name(token: token)
        initialLength = encoded.count
        slotsStart = ShareLayout.roundUp(encoded.count)
        let slotSize = ShareLayout.roundUp(max(2 * (encoded.count + ShareLayout.slotHeaderSize), ShareLayout.minimumSlotSize))
        guard slotSize <= ShareDescriptor.maximumSlotSize else {
            throw ProcessingError(.encodingFailed, "the initial state of \(name) is \(encoded.count) bytes; a share holds at most \(ShareDescriptor.maximumSlotSize / 2) bytes")
        }
        let descriptor = ShareDescriptor(slot: 0, slotSize: slotSize, length: encoded.count)
        dataLength = descriptor.requiredDataLength(slotsStart: slotsStart)

        let headerSize = ShareLayout.headerSize
        var fd: Int32 = -1
        var headerBase: UnsafeMutableRawPointer?
        do {
            fd = try Syscall.makeSharedMemory(name: ShareLayout.memoryName)
            try Syscall.growFile(fd, to: headerSize + dataLength)
            headerBase = try Syscall.mapShared(fd, offset: 0, length: headerSize)
            data = try Syscall.mapShared(fd, offset: headerSize, length: dataLength)
        } catch {
            if let headerBase { Syscall.unmap(headerBase, length: headerSize) }
            if fd >= 0 { Syscall.close(fd) }
            throw ProcessingError(.shareUnavailable, "a Share<\(String(reflecting: State.self))> could not create its shared memory: \(error)", causedBy: error)
        }
        self.fd = fd
        header = ShareHeader(base: headerBase!)
        mutex = (headerBase! + ShareLayout.mutexOffset).bindMemory(to: pthread_mutex_t.self, capacity: 1)
        sources = [ShareSource(pid: Syscall.processID(), fd: fd)]

        header.initialize(token: token, initialLength: initialLength, slotsStart: slotsStart)
        encoded.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let slot = data + descriptor.slotOffset(slotsStart: slotsStart)
        slot.storeBytes(of: 1 as UInt64, as: UInt64.self)
        encoded.withUnsafeBytes { (slot + ShareLayout.slotHeaderSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        header.descriptor = descriptor
        do {
            try Syscall.initializeSharedMutex(mutex)
        } catch {
            Syscall.unmap(data, length: dataLength)
            Syscall.unmap(headerBase!, length: headerSize)
            Syscall.close(fd)
            throw ProcessingError(.shareUnavailable, "\(name) could not set up its lock: \(error)", causedBy: error)
        }
        if Self.cacheable {
            cached = initial
            cachedGeneration = 1
        }
    }

    /// Maps the shared memory behind `source`, checking that it is the share `token` names. Throws a
    /// description of what is wrong with this source.
    private init(opening source: ShareSource, token: UInt64, sources: [ShareSource]) throws(ShareOpenProblem) {
        guard let link = Syscall.sharedMemoryLink(pid: source.pid, fd: source.fd, name: ShareLayout.memoryName) else {
            throw ShareOpenProblem("\(source) is gone")
        }
        guard link.isShared else {
            throw ShareOpenProblem("\(source) is \(link.target) now, not a share's memory")
        }
        let headerSize = ShareLayout.headerSize
        let fd: Int32
        do {
            fd = try Syscall.openProcessFile(pid: source.pid, fd: source.fd)
        } catch {
            throw ShareOpenProblem("\(error)")
        }
        var headerBase: UnsafeMutableRawPointer?
        do throws(ShareOpenProblem) {
            let size: Int
            do { size = try Syscall.fileSize(fd) } catch { throw ShareOpenProblem("\(error)") }
            guard size > headerSize else { throw ShareOpenProblem("\(source) holds \(size) bytes, too few for a share") }
            do { headerBase = try Syscall.mapShared(fd, offset: 0, length: headerSize) } catch { throw ShareOpenProblem("\(error)") }
            let header = ShareHeader(base: headerBase!)
            guard header.magic == ShareLayout.magic, header.token == token else {
                throw ShareOpenProblem("\(source) is another share")
            }
            dataLength = size - headerSize
            do { data = try Syscall.mapShared(fd, offset: headerSize, length: dataLength) } catch { throw ShareOpenProblem("\(error)") }
        } catch {
            if let headerBase { Syscall.unmap(headerBase, length: headerSize) }
            Syscall.close(fd)
            throw error
        }
        self.fd = fd
        self.token = token
        name = Self.name(token: token)
        header = ShareHeader(base: headerBase!)
        mutex = (headerBase! + ShareLayout.mutexOffset).assumingMemoryBound(to: pthread_mutex_t.self)
        initialLength = header.initialLength
        slotsStart = header.slotsStart
        self.sources = [ShareSource(pid: Syscall.processID(), fd: fd)] + sources
    }

    /// The storage for the share `token` in this process: the one already mapped here, or the
    /// memory opened through the first of `sources` that still holds it.
    static func open(token: UInt64, sources: [ShareSource]) throws(ProcessingError) -> ShareStorage {
        if let existing = ShareRegistry.storage(for: token) { return try typed(existing, token: token) }
        var problems: [String] = []
        for (index, source) in sources.enumerated() {
            let opened: ShareStorage
            do throws(ShareOpenProblem) {
                // The sources before this one are gone: do not hand them on.
                opened = try ShareStorage(opening: source, token: token, sources: Array(sources[index...].prefix(7)))
            } catch {
                problems.append(error.message)
                continue
            }
            return try typed(ShareRegistry.register(opened, token: token), token: token)
        }
        throw ProcessingError(.shareUnavailable, """
            \(name(token: token)) could not be reached from process \(Syscall.processID()): no process it came from \
            still holds it (\(problems.joined(separator: "; "))). A share lives as long as some process \
            holds a reference to it: keep it (in the parent, say) for as long as processes receive it.
            """)
    }

    private static func typed(_ storage: any AnyShareStorage, token: UInt64) throws(ProcessingError) -> ShareStorage {
        guard let typed = storage as? ShareStorage else {
            throw ProcessingError(.decodingFailed, "\(name(token: token)) was decoded as Share<\(String(reflecting: State.self))>, but it holds another type")
        }
        return typed
    }

    deinit {
        ShareRegistry.remove(token: token, id: ObjectIdentifier(self))
        Syscall.unmap(data, length: dataLength)
        Syscall.unmap(header.base, length: ShareLayout.headerSize)
        Syscall.close(fd)
    }

    // MARK: - Operations

    /// Whether the share is running (not stopped). Reads the flag without the lock.
    var isRunning: Bool { !header.stopped }

    /// How many times, in all processes, a lock was taken over from a process that died
    /// holding it (for tests and diagnostics).
    var recoveredLocks: UInt64 { header.recoveries }

    /// Runs `locked` holding the share's lock, if no other thread or process holds it now;
    /// nil if one does. Never blocks: the caller decides how to wait (`ShareLockWait`).
    func ifUnlocked<R>(_ operation: String, _ locked: () throws -> R) throws -> R? {
        guard try tryLock(operation) else { return nil }
        defer { Syscall.unlockSharedMutex(mutex) }
        return try locked()
    }

    /// Runs `locked` holding the share's lock, blocking the calling thread until it is free
    /// (for synchronous callers only: a cooperative-pool thread must not block here).
    func blockingUntilUnlocked<R>(_ operation: String, _ locked: () throws -> R) throws -> R {
        try lock(operation)
        defer { Syscall.unlockSharedMutex(mutex) }
        return try locked()
    }

    /// Runs `body` on the state and publishes the result, atomically for every process.
    /// Call it holding the lock.
    func updateLocked<R>(_ body: (inout State) throws -> R) throws -> R {
        try requireRunning("update")
        let current = try mappedDescriptor()
        let generation = slotGeneration(current)
        var state = try takeState(current, generation: generation)
        let result: R
        do {
            result = try body(&state)
        } catch {
            cached = nil  // the closure may have changed it halfway
            throw error
        }
        scratch.removeAll(keepingCapacity: true)
        do {
            try BinaryEncoder().encode(state, appendingTo: &scratch)
        } catch {
            cached = nil
            throw ProcessingError(.encodingFailed, "the state of \(name) could not be encoded after an update (the update is dropped): \(error)")
        }
        try publishScratch(after: current, generation: generation)
        if Self.cacheable {
            cached = state
            cachedGeneration = generation + 1
        }
        return result
    }

    /// Gives `body` the current state. Call it holding the lock.
    func readLocked<R>(_ body: (State) throws -> R) throws -> R {
        try requireRunning("read")
        let current = try mappedDescriptor()
        let generation = slotGeneration(current)
        let state = try takeState(current, generation: generation)
        if Self.cacheable {
            cached = state
            cachedGeneration = generation
        }
        return try body(state)
    }

    /// Stops or starts the share for every process. Call it holding the lock.
    func setRunningLocked(_ running: Bool) {
        header.stopped = !running
    }

    /// Publishes the initial state again (whether running or stopped). Call it holding the lock.
    func clearLocked() throws(ProcessingError) {
        let current = try mappedDescriptor()
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(start: data, count: initialLength))
        try publishScratch(after: current, generation: slotGeneration(current))
        cached = nil
    }

    // MARK: - Under the lock

    private func lock(_ operation: String) throws(ProcessingError) {
        let outcome: SharedLockOutcome
        do {
            outcome = try Syscall.lockSharedMutex(mutex)
        } catch {
            throw ProcessingError(.shareUnavailable, "\(operation) on \(name) could not take the share's lock: \(error)", causedBy: error)
        }
        try took(outcome, operation)
    }

    /// Takes the lock if it is free now; false when another thread or process holds it.
    private func tryLock(_ operation: String) throws(ProcessingError) -> Bool {
        let outcome: SharedLockOutcome?
        do {
            outcome = try Syscall.tryLockSharedMutex(mutex)
        } catch {
            throw ProcessingError(.shareUnavailable, "\(operation) on \(name) could not take the share's lock: \(error)", causedBy: error)
        }
        guard let outcome else { return false }
        try took(outcome, operation)
        return true
    }

    private func took(_ outcome: SharedLockOutcome, _ operation: String) throws(ProcessingError) {
        if outcome == .ownerDied { header.recoveries += 1 }
        if outcome == .heldByThisThread {
            throw ProcessingError(.invalidState, """
                \(operation) on \(name) was called while this thread is inside an update of the same share, \
                which would wait for itself. Do the work inside the first update's closure instead.
                """)
        }
    }

    private func requireRunning(_ operation: String) throws(ProcessingError) {
        guard header.stopped else { return }
        throw ProcessingError(.shareStopped, """
            \(operation) on \(name) failed: the share is stopped (stop() was called on it, in this process or \
            another one that holds it, or the withShare scope that made it has ended). Call start() on it to \
            share again.
            """)
    }

    /// The published descriptor, with the data region mapped far enough for it.
    private func mappedDescriptor() throws(ProcessingError) -> ShareDescriptor {
        let current = header.descriptor
        let required = current.requiredDataLength(slotsStart: slotsStart)
        if dataLength < required { try remap(atLeast: required) }
        return current
    }

    /// Maps the whole data region again, now at least `required` bytes long.
    private func remap(atLeast required: Int) throws(ProcessingError) {
        let available: Int
        let remapped: UnsafeMutableRawPointer
        do {
            available = try Syscall.fileSize(fd) - ShareLayout.headerSize
            guard available >= required else {
                throw ProcessingError(.shareUnavailable, "\(name) has \(available) bytes of data where its layout needs \(required)")
            }
            remapped = try Syscall.mapShared(fd, offset: ShareLayout.headerSize, length: available)
        } catch {
            throw ProcessingError(.shareUnavailable, "\(name) could not map its grown memory: \(error)", causedBy: error)
        }
        Syscall.unmap(data, length: dataLength)
        data = remapped
        dataLength = available
    }

    private func slotGeneration(_ descriptor: ShareDescriptor) -> UInt64 {
        data.load(fromByteOffset: descriptor.slotOffset(slotsStart: slotsStart), as: UInt64.self)
    }

    /// The state the descriptor publishes: this process's cached copy if it is that
    /// generation (moved out, so an update does not copy its storage), else decoded.
    private func takeState(_ descriptor: ShareDescriptor, generation: UInt64) throws(ProcessingError) -> State {
        if let state = cached, cachedGeneration == generation {
            cached = nil
            return state
        }
        cached = nil
        let bytes = UnsafeRawBufferPointer(
            start: data + descriptor.slotOffset(slotsStart: slotsStart) + ShareLayout.slotHeaderSize, count: descriptor.length)
        do {
            return try BinaryDecoder().decode(State.self, from: bytes)
        } catch {
            throw ProcessingError(.decodingFailed, "the state of \(name) could not be decoded: \(error)")
        }
    }

    /// Writes `scratch` into the slot that is not published (growing both slots if it does not
    /// fit), then publishes it with one descriptor store.
    private func publishScratch(after current: ShareDescriptor, generation: UInt64) throws(ProcessingError) {
        let needed = scratch.count + ShareLayout.slotHeaderSize
        var next = current
        if needed > current.slotSize {
            // Slot 1 of a layout with slots at least twice as large starts past both old slots.
            let slotSize = ShareLayout.roundUp(max(2 * current.slotSize, needed + needed / 2))
            guard slotSize <= ShareDescriptor.maximumSlotSize else {
                throw ProcessingError(.encodingFailed, "the state of \(name) grew to \(scratch.count) bytes; a share holds at most \(ShareDescriptor.maximumSlotSize / 2) bytes (the update is dropped)")
            }
            next = ShareDescriptor(slot: 1, slotSize: slotSize, length: scratch.count)
            let required = next.requiredDataLength(slotsStart: slotsStart)
            do {
                if try Syscall.fileSize(fd) < ShareLayout.headerSize + required {
                    try Syscall.growFile(fd, to: ShareLayout.headerSize + required)
                }
            } catch {
                throw ProcessingError(.shareUnavailable, "\(name) could not grow its memory to \(required) bytes (the update is dropped): \(error)", causedBy: error)
            }
            if dataLength < required { try remap(atLeast: required) }
        } else {
            next.slot = 1 - current.slot
            next.length = scratch.count
        }
        let slot = data + next.slotOffset(slotsStart: slotsStart)
        slot.storeBytes(of: generation + 1, as: UInt64.self)
        scratch.withUnsafeBytes { bytes in
            (slot + ShareLayout.slotHeaderSize).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        header.descriptor = next
    }
}

/// Why one source of a share could not be opened (collected into the error when none can).
private struct ShareOpenProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
