import CProcessingShims
#if canImport(Glibc)
import Glibc
#endif

/// Events shared by processes, made before use and reserved and released by index (seed
/// 004's `EventGroup`): make the group, hand it to the processes that use it (in an
/// `Skprocess`'s state, a `tell`ed message, pool work or an actor's parameters), then pass
/// indices (plain `Int`s) in calls and messages.
///
/// ```swift
/// let events = try EventGroup(count: 10)
/// let worker = try await system.spawn(Worker.self, parameters: .init(events: events))
/// let index = try events.reserve()
/// try await worker.startJob(signalling: index)        // the worker calls events.set(index)
/// try await events.wait(index, setBy: worker)
/// events.release(index)
/// ```
///
/// - Any process that has the group can reserve, release, set, clear and wait; reservations
///   live in shared memory, so two processes never get the same index, and running out is
///   an ordinary error (`EventGroupError.exhausted`).
/// - An event stays set until it is cleared or released (like `multiprocessing.Event`).
/// - Waiting neither polls nor holds a thread: the reactor watches the event (an eventfd).
///   Given the setter's pid, a wait whose setter dies without setting throws
///   (`EventGroupError.setterEnded`) instead of hanging; it also ends with a time-out or
///   the waiting task's cancellation.
///
/// `SyncIndex` (and `withSyncIndex`) reserve, wait until set and release in one step.
public final class EventGroup: Codable, Sendable {
    /// The most events one group may hold (each is a descriptor in every process that has it).
    public static let maximumCount = 128

    /// How many events the group holds.
    public let count: Int
    private let events: [Int32]
    private let memory: Int32
    /// The reservation bitmap's mapping, as an address (a `Sendable` stand-in for the pointer).
    private let address: Int

    private var wordCount: Int { (count + 63) / 64 }
    private var mappedSize: Int { wordCount * 8 }

    /// A group of `count` events (1 through `maximumCount`), none reserved or set.
    public init(count: Int = 10) throws {
        guard (1...Self.maximumCount).contains(count) else {
            throw EventGroupError(.invalidIndex, "an EventGroup holds 1 to \(Self.maximumCount) events, not \(count)")
        }
        self.count = count
        var made: [Int32] = []
        var memory: Int32 = -1
        do {
            for _ in 0..<count { made.append(try Syscall.eventFD()) }
            memory = try Syscall.makeSharedMemory(name: "processing-event-group")
            let size = (count + 63) / 64 * 8
            try Syscall.growFile(memory, to: size)
            address = Int(bitPattern: try Syscall.mapShared(memory, offset: 0, length: size))
        } catch {
            for fd in made { Syscall.close(fd) }
            if memory >= 0 { Syscall.close(memory) }
            throw EventGroupError(.unavailable, "the events could not be made: \(error)")
        }
        events = made
        self.memory = memory
    }

    deinit {
        if let pointer = UnsafeMutableRawPointer(bitPattern: address) { Syscall.unmap(pointer, length: mappedSize) }
        Syscall.close(memory)
        for fd in events { Syscall.close(fd) }
    }

    private func word(_ index: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: address)!.advanced(by: index * 8)
    }

    private func check(_ index: Int) throws(EventGroupError) {
        guard events.indices.contains(index) else {
            throw EventGroupError(.invalidIndex, "event \(index) is not in this EventGroup, which holds events 0 to \(count - 1)")
        }
    }

    // MARK: Reserving

    /// Reserves a free event, cleared, and returns its index; throws
    /// `EventGroupError.exhausted` when every event is reserved.
    public func reserve() throws -> Int {
        for wordIndex in 0..<wordCount {
            let bits = min(64, count - wordIndex * 64)
            let valid: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
            var current = processing_atomic_load_u64(word(wordIndex))
            while case let free = ~current & valid, free != 0 {
                let bit = free.trailingZeroBitCount
                var expected = current
                if processing_atomic_cas_u64(word(wordIndex), &expected, current | (1 << UInt64(bit))) != 0 {
                    let index = wordIndex * 64 + bit
                    clearEvent(index)
                    return index
                }
                current = expected
            }
        }
        throw EventGroupError(.exhausted, """
            all \(count) events of this EventGroup are reserved; release(_:) the ones that are done with, \
            or make the group larger (EventGroup(count:), up to \(Self.maximumCount))
            """)
    }

    /// Gives event `index` back (cleared) for another `reserve()`.
    public func release(_ index: Int) {
        guard events.indices.contains(index) else { return }
        clearEvent(index)
        let mask: UInt64 = 1 << UInt64(index % 64)
        var current = processing_atomic_load_u64(word(index / 64))
        while true {
            var expected = current
            if processing_atomic_cas_u64(word(index / 64), &expected, current & ~mask) != 0 { return }
            current = expected
        }
    }

    /// Whether event `index` is reserved (by any process).
    public func isReserved(_ index: Int) -> Bool {
        guard events.indices.contains(index) else { return false }
        return processing_atomic_load_u64(word(index / 64)) & (1 << UInt64(index % 64)) != 0
    }

    // MARK: Setting and waiting

    /// Sets event `index`: its waits, in any process, end.
    public func set(_ index: Int) throws {
        try check(index)
        Syscall.signalEventFD(events[index])
    }

    /// Clears event `index`.
    public func clear(_ index: Int) throws {
        try check(index)
        clearEvent(index)
    }

    private func clearEvent(_ index: Int) {
        // Read only what is there: every process that holds the group shares the eventfd's
        // open file, and one of them could have made it blocking.
        if Syscall.isReadable(events[index]) { Syscall.drainEventFD(events[index]) }
    }

    /// Whether event `index` is set.
    public func isSet(_ index: Int) -> Bool {
        events.indices.contains(index) && Syscall.isReadable(events[index])
    }

    /// Waits until event `index` is set: true once it is, false if `timeout` passes first.
    /// Throws `CancellationError` if the task is cancelled. (Prefer `wait(_:setBy:timeout:)`
    /// when a process is to set it: it does not hang if that process dies.)
    @discardableResult
    public func wait(_ index: Int, timeout: Duration? = nil) async throws -> Bool {
        try await wait(index, setter: nil, timeout: timeout)
    }

    /// Waits until event `index` is set: true once it is, false if `timeout` passes first.
    /// `setter` is the pid of the process that is to set it (`system.pid(of:)`, `handle.pid`,
    /// or `getppid()` in a child): if that process ends without setting it, this throws
    /// `EventGroupError.setterEnded`. Throws `CancellationError` if the task is cancelled.
    @discardableResult
    public func wait(_ index: Int, setBy setter: Int32, timeout: Duration? = nil) async throws -> Bool {
        try await wait(index, setter: setter, timeout: timeout)
    }

    private func wait(_ index: Int, setter: Int32?, timeout: Duration?) async throws -> Bool {
        try check(index)
        if isSet(index) { return true }
        // A descriptor of this wait's own: waits of other tasks on the event come and go apart.
        let event = try Syscall.duplicate(events[index])
        defer { Syscall.close(event) }
        var exit: Int32?
        if let setter {
            do {
                exit = try Syscall.openExitDescriptor(setter)
            } catch {
                if isSet(index) { return true }
                throw setterEnded(index, setter)
            }
        }
        defer { if let exit { Syscall.close(exit) } }
        enum Outcome: Sendable { case set, setterEnded, timedOut }
        let outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                try await Reactor.shared.waitUntilReady(event, writable: false)
                return .set
            }
            if let exit {
                group.addTask {
                    try await Reactor.shared.waitUntilReady(exit, writable: false)
                    return .setterEnded
                }
            }
            if let timeout {
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return .timedOut
                }
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
        switch outcome {
        case .set: return true
        case .timedOut: return isSet(index)
        case .setterEnded:
            if isSet(index) { return true }
            throw setterEnded(index, setter ?? 0)
        }
    }

    private func setterEnded(_ index: Int, _ setter: Int32) -> EventGroupError {
        EventGroupError(.setterEnded, "the process \(setter), which was to set event \(index), ended without setting it")
    }

    // MARK: Crossing

    private enum CodingKeys: String, CodingKey { case count, memory, firstEvent }

    /// Attaches duplicates of the group's descriptors: this process keeps its own.
    public func encode(to encoder: any Encoder) throws {
        guard let outgoing = DescriptorTransfer.outgoing else {
            throw EventGroupError(.unavailable, """
                an EventGroup crosses only into another process: in an Skprocess's state, a tell()ed message, \
                pool work or an actor's spawn parameters (pass event indices in calls)
                """)
        }
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(count, forKey: .count)
        try container.encode(try outgoing.attach(memory, of: "an EventGroup"), forKey: .memory)
        var first = -1
        for fd in events {
            let index = try outgoing.attach(fd, of: "an EventGroup")
            if first < 0 { first = index }
        }
        try container.encode(first, forKey: .firstEvent)
    }

    /// Takes the descriptors that came with the frame being decoded.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let count = try container.decode(Int.self, forKey: .count)
        let memoryIndex = try container.decode(Int.self, forKey: .memory)
        let first = try container.decode(Int.self, forKey: .firstEvent)
        guard (1...Self.maximumCount).contains(count), let incoming = DescriptorTransfer.incoming else {
            throw EventGroupError(.unavailable, "an EventGroup arrived without its descriptors")
        }
        // What arrives is checked before it is used: a descriptor of another kind, or shared
        // memory that could shrink under the mapping, would make this process block or fault.
        guard first >= 0, first <= Int.max - count else {
            throw EventGroupError(.unavailable, "an EventGroup arrived with its descriptors out of range")
        }
        var taken: [Int32] = []
        let memory = incoming.take(memoryIndex)
        for offset in 0..<count { if let fd = incoming.take(first + offset) { taken.append(fd) } }
        let size = (count + 63) / 64 * 8
        func refuse(_ why: String) -> EventGroupError {
            for fd in taken { Syscall.close(fd) }
            if let memory { Syscall.close(memory) }
            return EventGroupError(.unavailable, "an EventGroup arrived \(why)")
        }
        guard let memory, taken.count == count else { throw refuse("without all of its descriptors") }
        guard taken.allSatisfy(Syscall.isEventFD) else { throw refuse("with a descriptor that is not an eventfd") }
        guard Syscall.isSealedAgainstShrinking(memory), ((try? Syscall.fileSize(memory)) ?? 0) >= size else {
            throw refuse("with shared memory that is too small or could shrink")
        }
        for fd in taken { try? Syscall.setNonBlocking(fd) }
        do {
            address = Int(bitPattern: try Syscall.mapShared(memory, offset: 0, length: size))
        } catch {
            throw refuse("with shared memory that could not be mapped: \(error)")
        }
        (self.count, self.memory, events) = (count, memory, taken)
    }
}
