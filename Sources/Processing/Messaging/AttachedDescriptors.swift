#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// File descriptors travelling with one frame (SCM_RIGHTS), owned here: each is closed when
/// this goes away unless a decoded value took it.
final class AttachedDescriptors: Sendable {
    private let slots: Mutex<[Int32?]>

    /// Takes ownership of `fds`.
    init(_ fds: [Int32]) {
        slots = Mutex(fds.map(Optional.some))
    }

    deinit {
        for fd in slots.withLock({ $0 }) { if let fd { Syscall.close(fd) } }
    }

    var count: Int { slots.withLock { $0.count } }

    /// The descriptors, still owned here (to send them: the kernel duplicates them).
    var descriptors: [Int32] { slots.withLock { $0.compactMap { $0 } } }

    /// Takes descriptor `index` out (the caller owns it now); nil if absent or taken already.
    func take(_ index: Int) -> Int32? {
        slots.withLock { slots in
            guard slots.indices.contains(index) else { return nil }
            defer { slots[index] = nil }
            return slots[index]
        }
    }
}

/// Collects the descriptors of values being encoded for another process (pipe points).
final class OutgoingDescriptors: Sendable {
    private let fds = Mutex<[Int32]>([])
    /// Whether values handed to the other process leave this one (parent → child): a pipe
    /// point sent to a child is closed here, so its peer sees the end when the child dies.
    let moves: Bool

    init(moves: Bool) {
        self.moves = moves
    }

    deinit {
        for fd in fds.withLock({ $0 }) { Syscall.close(fd) }
    }

    /// Attaches a duplicate of `fd`, which belongs to `thing` (named in the error if the frame
    /// goes to another host); returns its index in the frame's attachments.
    func attach(_ fd: Int32, of thing: @autoclosure () -> String) throws -> Int {
        try HostCrossing.refuseIfRemote(thing())
        let copy = try Syscall.duplicate(fd)
        return fds.withLock { fds in
            fds.append(copy)
            return fds.count - 1
        }
    }

    /// The collected descriptors as a frame's attachments (nil if none); ownership moves.
    func takeAttachments() -> AttachedDescriptors? {
        let taken = fds.withLock { fds in
            defer { fds = [] }
            return fds
        }
        return taken.isEmpty ? nil : AttachedDescriptors(taken)
    }
}

/// Where pipe points find the descriptors of the frame being encoded or decoded: set around
/// the encoding of every value that crosses to another process, and around its decoding.
enum DescriptorTransfer {
    @TaskLocal static var outgoing: OutgoingDescriptors?
    @TaskLocal static var incoming: AttachedDescriptors?

    /// Runs `encode`, collecting the descriptors of the values it encodes.
    static func collecting<T>(moves: Bool, _ encode: () throws -> T) rethrows -> (T, AttachedDescriptors?) {
        let collector = OutgoingDescriptors(moves: moves)
        let value = try $outgoing.withValue(collector) { try encode() }
        return (value, collector.takeAttachments())
    }

    /// Runs `decode` with `attachments` available to the values it decodes.
    static func receiving<T>(_ attachments: AttachedDescriptors?, _ decode: () throws -> T) rethrows -> T {
        guard let attachments else { return try decode() }
        return try $incoming.withValue(attachments) { try decode() }
    }
}
