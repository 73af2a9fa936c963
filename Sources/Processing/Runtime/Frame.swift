import CProcessingShims

/// What a frame on a control channel carries.
enum FrameKind: UInt8, Sendable {
    /// Parent → child: the process to run (a `StartRequest`).
    case start = 1
    /// Either way: a `tell`ed message (type name, then the value).
    case message = 2
    /// Parent → child: finish the current run, then `onFinish` and `result`.
    case stop = 3
    /// Child → parent: a `Checkpoint` (the run reached, section timings since the last one,
    /// and, when the process has lives to spare, its state to resume from).
    case checkpoint = 4
    /// Child → parent: the encoded `Output`, then the child exits.
    case result = 5
    /// Child → parent: a `FailureReport`, then the child exits.
    case failure = 6
    /// Child → parent: entering a section the parent times out (section index, then the run
    /// as a varint), or leaving it (the single byte `SectionMarker.left`).
    case section = 7
    /// Parent → pool worker: a work value to keep (`PoolWorkInstall`).
    case work = 8
    /// Parent → pool worker: a batch of items for an installed work (id, work id, encoded items).
    case batch = 9
    /// Pool worker → parent: the outcome of a batch (id, then the work's encoded `BatchReply`).
    case batchReply = 10
    /// Child → parent: a `LogEntry`, for the main process's log handler.
    case log = 11
    /// Relay stage → next stage: a batch of messages (the first one's sequence number as a
    /// varint, then the encoded array).
    case relayBatch = 12
    /// Relay stage → the stage that sends to it: room for more messages (a varint count).
    case relayCredit = 13
    /// Relay stage → next stage: nothing more comes on this connection.
    case relayEnd = 14
    /// Either way between actor systems: a distributed call (call ID, actor number, target
    /// identifier, then the `ProcessInvocationEncoder`'s recording).
    case actorCall = 15
    /// Either way: a call's outcome (call ID, a `ReplyStatus` byte, then the value or error).
    case actorReply = 16
    /// Either way: a call given up on, a stop, the spawned actor's ready, credit for messages.
    case actorControl = 17
    /// Actor process → parent: a message it sent out (`sendOut`), encoded.
    case actorMessage = 18
    /// Parent → spare worker, before anything else: it is taken; the two descriptors that
    /// come with it become its stderr and stdout.
    case spare = 19
}

/// One length-prefixed frame: `[UInt32 LE length of kind + payload][kind][payload]`.
///
/// A frame that carries file descriptors (SCM_RIGHTS, sent with its first byte) has the high
/// bit of its kind byte set, and its payload starts with their count as a varint.
struct Frame: Sendable {
    /// The length field can say no more than this.
    static let lengthFieldLimit = Int(UInt32.max)
    static let headerLength = 4
    static let attachmentsFlag: UInt8 = 0x80

    let kind: FrameKind
    let payload: [UInt8]
    /// How many descriptors came with the frame (read from the wire).
    var attachmentCount = 0
    /// The descriptors that came with the frame, once the channel has matched them.
    var attachments: AttachedDescriptors?

    init(kind: FrameKind, payload: [UInt8], attachmentCount: Int = 0) {
        (self.kind, self.payload, self.attachmentCount) = (kind, payload, attachmentCount)
    }

    /// Builds the wire bytes of a frame with no payload.
    static func encode(_ kind: FrameKind) -> [UInt8] {
        control(kind) { _ in }
    }

    /// Builds the wire bytes of a small frame the library writes itself (a section marker, a
    /// ready reply: a few bytes, never near the size limit).
    static func control(_ kind: FrameKind, _ writePayload: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0, 0, kind.rawValue]
        writePayload(&bytes)
        setLength(of: &bytes)
        return bytes
    }

    /// Builds the wire bytes of a frame whose payload `writePayload` appends, with no extra copy.
    /// `attachmentCount` descriptors must be sent with it (`Channel.send(_:attaching:)`). Throws
    /// `ProcessingError` (`.messageTooLarge`) for a frame over `ProcessingLimits.maximumMessageSize`.
    static func encode(_ kind: FrameKind, attachmentCount: Int = 0, _ writePayload: (inout [UInt8]) throws -> Void) throws -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0, 0, kind.rawValue]
        if attachmentCount > 0 {
            bytes[headerLength] |= attachmentsFlag
            BinaryFormat.appendVarint(UInt64(attachmentCount), to: &bytes)
        }
        try writePayload(&bytes)
        try checkSize(bytes.count - headerLength, of: kind)
        setLength(of: &bytes)
        return bytes
    }

    /// Refuses a frame of `length` bytes (kind and payload) over the limit, before it is sent.
    static func checkSize(_ length: Int, of kind: FrameKind) throws(ProcessingError) {
        let limit = ProcessingLimits.maximumMessageSize
        guard length > limit || length > lengthFieldLimit else { return }
        throw ProcessingError(.messageTooLarge, """
            \(kind.role) of \(length) bytes is over the limit of \(limit) bytes \
            (ProcessingLimits.maximumMessageSize), so it was not sent and the channel is unchanged; \
            send it in parts (a pipe, or several messages), or raise the limit in the parent before \
            starting the process
            """)
    }

    /// The same frame, announcing `attachmentCount` descriptors (for a frame whose count was
    /// only known once its payload was encoded). Copies the frame; frames with descriptors are rare.
    static func announcing(_ attachmentCount: Int, in frame: [UInt8]) -> [UInt8] {
        guard attachmentCount > 0 else { return frame }
        var bytes = Array(frame[..<(headerLength + 1)])
        bytes[headerLength] |= attachmentsFlag
        BinaryFormat.appendVarint(UInt64(attachmentCount), to: &bytes)
        bytes.append(contentsOf: frame[(headerLength + 1)...])
        setLength(of: &bytes)
        return bytes
    }

    private static func setLength(of bytes: inout [UInt8]) {
        let length = UInt32(bytes.count - headerLength)
        bytes[0] = UInt8(truncatingIfNeeded: length)
        bytes[1] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[3] = UInt8(truncatingIfNeeded: length >> 24)
    }
}

extension FrameKind {
    /// What a frame of this kind is, for errors ("a message", "the state of a process").
    var role: String {
        switch self {
        case .message: "a message"
        case .start: "a process's start request (its state)"
        case .checkpoint: "a checkpoint (the process's state)"
        case .result: "a result"
        case .failure: "a failure report"
        case .work: "pool work"
        case .batch: "a batch of pool items"
        case .batchReply: "a batch's results"
        case .log: "a log entry"
        case .relayBatch: "a batch of relay messages"
        case .actorCall: "a distributed call (its arguments)"
        case .actorReply: "a distributed call's result"
        case .actorMessage: "a message sent out by an actor process"
        case .stop, .actorControl, .section, .relayCredit, .relayEnd, .spare: "a control frame"
        }
    }
}

/// A frame ready to send: its bytes and the descriptors that go with it.
struct OutgoingFrame: Sendable {
    let bytes: [UInt8]
    let attachments: AttachedDescriptors?
}

/// A frame that could not be read: what was wrong, for the error the user sees.
struct MalformedFrame: Error, CustomStringConvertible, Sendable {
    let description: String
}

/// Reassembles frames from the bytes a stream socket delivers, in any split.
///
/// A pure state machine: the channel feeds it bytes and gets frames back. Large frames are
/// read straight into their final buffer (`fillBody`) to avoid a second copy.
///
/// A frame header is untrusted input: its buffer starts at most `initialBodyCapacity` bytes
/// large and doubles as bytes arrive, so five bytes announcing a gigabyte cost nothing much;
/// a length over `ProcessingLimits.maximumMessageSize` is refused at once.
struct FrameReader {
    /// The length field and the kind byte.
    private static let prefixLength = Frame.headerLength + 1
    /// What a frame's buffer starts at, at most: a 1 MiB message fits without growing.
    static let initialBodyCapacity = 2 << 20

    private var prefix: [UInt8] = []
    private var kind = FrameKind.message
    /// The current frame's bytes so far, and room for more (`bodyFilled` of them are filled).
    private var body: [UInt8] = []
    private var bodyLength = 0
    private var bodyFilled = 0
    private var inFrame = false
    private var hasAttachments = false

    /// Whether the reader is between frames (an EOF here is a clean end).
    var isAtFrameBoundary: Bool { !inFrame && prefix.isEmpty }

    /// How many bytes of the current frame are still missing (0 between frames).
    var missingBodyBytes: Int { inFrame ? bodyLength - bodyFilled : 0 }

    /// How many bytes the current frame's buffer holds (filled or not): what a frame in
    /// progress costs now.
    var bufferedCapacity: Int { body.count }

    var partialDescription: String {
        inFrame ? "a truncated frame: \(bodyFilled) of \(bodyLength) payload bytes arrived"
            : "a truncated frame header: \(prefix.count) of \(Self.prefixLength) bytes arrived"
    }

    /// Feeds bytes in; appends complete frames to `frames`.
    mutating func consume(_ bytes: UnsafeRawBufferPointer, into frames: inout [Frame]) throws(MalformedFrame) {
        var offset = 0
        while offset < bytes.count {
            if !inFrame {
                let taken = min(Self.prefixLength - prefix.count, bytes.count - offset)
                prefix.append(contentsOf: bytes[offset..<offset + taken])
                offset += taken
                guard prefix.count == Self.prefixLength else { return }
                try beginFrame()
                if bodyLength == 0 { frames.append(try finishFrame()); continue }
            }
            let taken = min(bodyLength - bodyFilled, bytes.count - offset)
            reserve(taken)
            let filled = bodyFilled
            body.withUnsafeMutableBytes { target in
                target.baseAddress!.advanced(by: filled)
                    .copyMemory(from: bytes.baseAddress!.advanced(by: offset), byteCount: taken)
            }
            bodyFilled += taken
            offset += taken
            if bodyFilled == bodyLength { frames.append(try finishFrame()) }
        }
    }

    /// Lets a reader fill the current frame's body directly; returns the frame if complete.
    mutating func fillBody(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Frame? {
        reserve(1)
        let filled = bodyFilled
        let count = try body.withUnsafeMutableBytes { target in
            try read(UnsafeMutableRawBufferPointer(rebasing: target[filled...]))
        }
        bodyFilled += count
        return bodyFilled == bodyLength ? try finishFrame() : nil
    }

    /// Makes room for at least `count` more bytes (at most up to the frame's length), doubling.
    private mutating func reserve(_ count: Int) {
        let needed = min(bodyFilled + count, bodyLength)
        guard needed > body.count else { return }
        let grown = min(bodyLength, max(needed, body.count * 2))
        let filled = bodyFilled
        // Uninitialised: pages are touched only as bytes arrive.
        let old = body
        body = [UInt8](unsafeUninitializedCapacity: grown) { buffer, count in
            if filled > 0 {
                old.withUnsafeBufferPointer { buffer.baseAddress!.update(from: $0.baseAddress!, count: filled) }
            }
            count = grown
        }
    }

    private mutating func beginFrame() throws(MalformedFrame) {
        let length = Int(prefix[0]) | Int(prefix[1]) << 8 | Int(prefix[2]) << 16 | Int(prefix[3]) << 24
        let rawKind = prefix[4] & ~Frame.attachmentsFlag
        hasAttachments = prefix[4] & Frame.attachmentsFlag != 0
        prefix.removeAll(keepingCapacity: true)
        let limit = ProcessingLimits.maximumMessageSize
        guard length >= 1, length <= limit else {
            throw MalformedFrame(description: """
                a frame header announced \(length) bytes, over the limit of \(limit) \
                (ProcessingLimits.maximumMessageSize, set in the parent)
                """)
        }
        guard let kind = FrameKind(rawValue: rawKind) else {
            throw MalformedFrame(description: "a frame of unknown kind \(rawKind) (announced \(length) bytes)")
        }
        self.kind = kind
        bodyLength = length - 1
        bodyFilled = 0
        body = []
        reserve(min(bodyLength, Self.initialBodyCapacity))
        inFrame = true
    }

    private mutating func finishFrame() throws(MalformedFrame) -> Frame {
        inFrame = false
        defer { body = [] }
        if body.count > bodyLength { body.removeLast(body.count - bodyLength) }
        guard hasAttachments else { return Frame(kind: kind, payload: body) }
        var offset = 0
        guard let count = BinaryFormat.readVarint(body, at: &offset), count > 0, count <= UInt64(PROCESSING_MAX_ATTACHED_FDS) else {
            throw MalformedFrame(description: "a \(kind) frame flagged as carrying descriptors has no valid count of them")
        }
        return Frame(kind: kind, payload: Array(body[offset...]), attachmentCount: Int(count))
    }
}
