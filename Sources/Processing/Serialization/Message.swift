/// A value crossing between processes with its type's name, so the receiver can check that
/// it is what it asked for (and decode values whose type it only knows by name).
struct Message: Sendable {
    let typeName: String
    let body: [UInt8]
    /// Descriptors of the pipe points in the value.
    var attachments: AttachedDescriptors?

    /// Encodes `value` as a `.message` frame, with the descriptors of the pipe points in it
    /// (`moves`: the points are handed over, and closed here).
    static func frame<T: Encodable>(_ value: T, moves: Bool, to host: WorkerHost = .local) throws -> OutgoingFrame {
        let typeName = try TypeName.locatable(T.self, role: "a message")
        do {
            // Encoded straight into the frame (no copy of the value); the rare frame that carries
            // descriptors is rebuilt to announce them.
            let (bytes, attachments) = try HostCrossing.encoding(for: host) { try DescriptorTransfer.collecting(moves: moves) {
                try Frame.encode(.message) { bytes in
                    BinaryFormat.appendVarint(UInt64(typeName.utf8.count), to: &bytes)
                    bytes.append(contentsOf: typeName.utf8)
                    try BinaryEncoder().encode(value, appendingTo: &bytes)
                }
            } }
            return OutgoingFrame(bytes: Frame.announcing(attachments?.count ?? 0, in: bytes), attachments: attachments)
        } catch let error as ProcessingError {
            throw error
        } catch let error as PipeEndpointError {
            throw error
        } catch {
            throw ProcessingError(.encodingFailed, "\(String(reflecting: T.self)) could not be encoded to send to the other process: \(error)")
        }
    }

    /// Reads a `.message` frame.
    init(_ frame: Frame) throws(ProcessingError) {
        try self.init(payload: frame.payload)
        attachments = frame.attachments
    }

    /// Reads a `.message` frame's payload.
    init(payload: [UInt8]) throws(ProcessingError) {
        var offset = 0
        guard let length = BinaryFormat.readVarint(payload, at: &offset), length <= UInt64(payload.count - offset) else {
            throw ProcessingError(.malformedFrame, "a message frame of \(payload.count) bytes has no valid type name")
        }
        let end = offset + Int(length)
        typeName = String(decoding: payload[offset..<end], as: UTF8.self)
        body = Array(payload[end...])
    }

    /// Decodes the value as `T`, refusing (without consuming anything) if it is another type.
    func decode<T: Decodable>(as type: T.Type) throws(ProcessingError) -> T {
        guard typeName == TypeName.mangled(T.self) else { throw mismatch(expected: T.self) }
        do {
            return try DescriptorTransfer.receiving(attachments) { try BinaryDecoder().decode(T.self, from: body) }
        } catch {
            throw ProcessingError(.decodingFailed, "a \(String(reflecting: T.self)) message could not be decoded: \(error)")
        }
    }

    func mismatch(expected: Any.Type) -> ProcessingError {
        mismatch(expectedName: String(reflecting: expected))
    }

    /// The error of a listen for `expectedName` (a readable type name) finding this message.
    func mismatch(expectedName: String) -> ProcessingError {
        ProcessingError(.messageTypeMismatch, """
            listen expected a \(expectedName) but the next message is a \(TypeName.readable(typeName)); \
            it stays queued: listen for \(TypeName.readable(typeName)) to receive it
            """)
    }
}

extension BinaryFormat {
    /// Reads a varint of the few hand-written frame fields (the coder's own reader,
    /// bounds-checked); nil if it is truncated or too long.
    static func readVarint(_ bytes: [UInt8], at offset: inout Int) -> UInt64? {
        bytes.withUnsafeBytes { buffer in
            try? BinaryReader(buffer: buffer).varint(at: &offset, limit: buffer.count)
        }
    }
}
