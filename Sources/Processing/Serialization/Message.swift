/// A value crossing between processes with its type's name, so the receiver can check that
/// it is what it asked for (and decode values whose type it only knows by name).
struct Message: Sendable {
    let typeName: String
    let body: [UInt8]

    /// Encodes `value` as a `.message` frame.
    static func frame<T: Encodable>(_ value: T) throws -> [UInt8] {
        let typeName = try TypeName.locatable(T.self, role: "a message")
        do {
            return try Frame.encode(.message) { bytes in
                Varint.append(UInt64(typeName.utf8.count), to: &bytes)
                bytes.append(contentsOf: typeName.utf8)
                try BinaryEncoder().encode(value, appendingTo: &bytes)
            }
        } catch {
            throw ProcessingError(.encodingFailed, "\(String(reflecting: T.self)) could not be encoded to send to the other process: \(error)")
        }
    }

    /// Reads a `.message` frame's payload.
    init(payload: [UInt8]) throws(ProcessingError) {
        var offset = 0
        guard let length = Varint.read(payload, at: &offset), length <= UInt64(payload.count - offset) else {
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
            return try BinaryDecoder().decode(T.self, from: body)
        } catch {
            throw ProcessingError(.decodingFailed, "a \(String(reflecting: T.self)) message could not be decoded: \(error)")
        }
    }

    func mismatch(expected: Any.Type) -> ProcessingError {
        ProcessingError(.messageTypeMismatch, """
            listen expected a \(String(reflecting: expected)) but the next message is a \(TypeName.readable(typeName)); \
            it stays queued: listen for \(TypeName.readable(typeName)) to receive it
            """)
    }
}

/// LEB128 varints for the few hand-written frame fields.
enum Varint {
    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func read(_ bytes: [UInt8], at offset: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count, shift < 64 {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}
