// Wire format shared by `BinaryEncoder` and `BinaryDecoder`.
//
// Every value starts with one tag byte (`BinaryTag`), followed by:
//   nil, false, true         nothing
//   signed                   zigzag LEB128 varint (up to 19 bytes, so Int128 fits)
//   unsigned                 LEB128 varint (up to 19 bytes)
//   float32 / float64        4 / 8 bytes, IEEE 754 bit pattern, little-endian
//   string                   varint byte count, then UTF-8
//   bytes                    varint byte count, then the raw bytes (`Data`, `[UInt8]`)
//   int64Array               varint element count, then 8 bytes LE per element (`[Int]`)
//   float64Array             varint element count, then 8 bytes LE per element (`[Double]`)
//   unkeyed                  UInt32 LE byte length of the contents, then the elements
//   keyed                    UInt32 LE byte length of the contents, then entries of
//                            (varint key length, key UTF-8 from `stringValue`, value)
//
// Containers carry a fixed-width length so the encoder can backpatch it after streaming
// the contents, and so a reader can skip a container of any size in O(1).
// A value whose `encode(to:)` writes nothing is encoded as an empty keyed container.
// Encoder and decoder are always the same version; there is no version byte.

/// The first byte of every encoded value.
enum BinaryTag: UInt8 {
    case null = 0x00
    case `false` = 0x01
    case `true` = 0x02
    case signed = 0x03
    case unsigned = 0x04
    case float32 = 0x05
    case float64 = 0x06
    case string = 0x07
    case bytes = 0x08
    case unkeyed = 0x09
    case keyed = 0x0A
    case int64Array = 0x0B
    case float64Array = 0x0C

    /// A phrase for error messages ("expected X but found <phrase>").
    var phrase: String {
        switch self {
        case .null: "nil"
        case .false, .true: "a boolean"
        case .signed: "a signed integer"
        case .unsigned: "an unsigned integer"
        case .float32: "a 32-bit float"
        case .float64: "a 64-bit float"
        case .string: "a string"
        case .bytes: "a byte buffer"
        case .unkeyed: "an unkeyed container"
        case .keyed: "a keyed container"
        case .int64Array: "a packed Int array"
        case .float64Array: "a packed Double array"
        }
    }
}

/// Constants and varint helpers of the wire format.
enum BinaryFormat {
    /// Deepest allowed nesting of values; deeper input throws instead of overflowing the stack.
    static let maxDepth = 512
    /// Tag byte plus the 4-byte content length.
    static let containerHeaderSize = 5
    /// Key under which `superEncoder()` / `superDecoder()` store the superclass.
    static let superKey = "super"
    /// Longest varint we accept: 128 bits need 19 groups of 7.
    static let maxVarintBytes = 19

    /// True when `[Int]` / `[Double]` memory already is the wire layout (8 bytes, little-endian).
    static let packedArraysAreMemcpy: Bool = {
        #if _endian(little)
        return MemoryLayout<Int>.size == 8
        #else
        return false
        #endif
    }()

    @inline(__always)
    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: rest))
    }

    static func appendVarint(_ value: UInt128, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: rest))
    }

    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
    }

    static func zigzag(_ value: Int128) -> UInt128 {
        UInt128(bitPattern: (value << 1) ^ (value >> 127))
    }

    static func unzigzag(_ value: UInt128) -> Int128 {
        Int128(bitPattern: value >> 1) ^ -Int128(bitPattern: value & 1)
    }

    static func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return byte < 0x10 ? "0x0" + digits : "0x" + digits
    }
}

/// A malformed-input problem found while parsing; the decoder turns it into
/// `DecodingError.dataCorrupted` with the coding path attached.
struct BinaryFormatError: Error {
    var message: String
}

/// Bounds-checked reads from the input. Every read takes a `limit` (the end of the enclosing
/// container, or of the buffer) and throws instead of reading past it.
struct BinaryReader {
    let buffer: UnsafeRawBufferPointer

    var count: Int { buffer.count }

    @inline(__always)
    func require(_ needed: Int, at offset: Int, limit: Int) throws(BinaryFormatError) {
        if needed > limit - offset {
            throw BinaryFormatError(
                message: "truncated input: needed \(needed) bytes at offset \(offset), \(max(0, limit - offset)) remain")
        }
    }

    @inline(__always)
    func byte(at offset: Int, limit: Int) throws(BinaryFormatError) -> UInt8 {
        try require(1, at: offset, limit: limit)
        return buffer[offset]
    }

    @inline(__always)
    func tag(at offset: Int, limit: Int) throws(BinaryFormatError) -> BinaryTag {
        let raw = try byte(at: offset, limit: limit)
        guard let tag = BinaryTag(rawValue: raw) else {
            throw BinaryFormatError(message: "unknown tag \(BinaryFormat.hex(raw)) at offset \(offset)")
        }
        return tag
    }

    /// Reads a varint of at most 64 bits and advances `offset` past it.
    @inline(__always)
    func varint(at offset: inout Int, limit: Int) throws(BinaryFormatError) -> UInt64 {
        // Fast path: single-byte varints are the common case (small ints, short strings).
        if offset < limit {
            let first = buffer[offset]
            if first < 0x80 {
                offset += 1
                return UInt64(first)
            }
        }
        return try varintSlow(at: &offset, limit: limit)
    }

    private func varintSlow(at offset: inout Int, limit: Int) throws(BinaryFormatError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var position = offset
        while true {
            guard position < limit else {
                throw BinaryFormatError(
                    message: "truncated input: varint at offset \(start) runs past the end at offset \(limit)")
            }
            let byte = buffer[position]
            position += 1
            if shift == 63 && byte > 1 {
                throw BinaryFormatError(message: "integer at offset \(start) does not fit in 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        offset = position
        return result
    }

    /// Reads a varint of at most 128 bits and advances `offset` past it.
    func varint128(at offset: inout Int, limit: Int) throws(BinaryFormatError) -> UInt128 {
        let start = offset
        var result: UInt128 = 0
        var shift: UInt128 = 0
        var position = offset
        while true {
            guard position < limit else {
                throw BinaryFormatError(
                    message: "truncated input: varint at offset \(start) runs past the end at offset \(limit)")
            }
            let byte = buffer[position]
            position += 1
            if shift == 126 && byte > 3 {
                throw BinaryFormatError(message: "integer at offset \(start) does not fit in 128 bits")
            }
            result |= UInt128(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        offset = position
        return result
    }

    /// Skips a varint without decoding it.
    func skipVarint(at offset: inout Int, limit: Int) throws(BinaryFormatError) {
        let start = offset
        var position = offset
        while true {
            guard position < limit else {
                throw BinaryFormatError(
                    message: "truncated input: varint at offset \(start) runs past the end at offset \(limit)")
            }
            let byte = buffer[position]
            position += 1
            if byte < 0x80 { break }
            if position - start >= BinaryFormat.maxVarintBytes {
                throw BinaryFormatError(message: "varint at offset \(start) is longer than \(BinaryFormat.maxVarintBytes) bytes")
            }
        }
        offset = position
    }

    /// Reads an element count and checks that `count * elementSize` bytes remain before `limit`,
    /// so absurd claims fail here instead of in an allocation.
    @inline(__always)
    func count(
        at offset: inout Int, limit: Int, elementSize: Int = 1, what: @autoclosure () -> String
    ) throws(BinaryFormatError) -> Int {
        let start = offset
        let raw = try varint(at: &offset, limit: limit)
        let remaining = limit - offset
        guard raw <= UInt64(remaining / elementSize) else {
            let unit = elementSize == 1 ? "bytes" : "elements of \(elementSize) bytes"
            throw BinaryFormatError(
                message: "\(what()) claims \(raw) \(unit) (length at offset \(start)) but only \(remaining) bytes remain")
        }
        return Int(raw)
    }

    func uint32(at offset: Int, limit: Int) throws(BinaryFormatError) -> UInt32 {
        try require(4, at: offset, limit: limit)
        return UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    func uint64(at offset: Int, limit: Int) throws(BinaryFormatError) -> UInt64 {
        try require(8, at: offset, limit: limit)
        return UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The range of a container's contents, validated against `limit`. `offset` is the tag's offset.
    func containerContents(at offset: Int, tag: BinaryTag, limit: Int) throws(BinaryFormatError) -> Range<Int> {
        let length = Int(try uint32(at: offset + 1, limit: limit))
        let start = offset + BinaryFormat.containerHeaderSize
        guard length <= limit - start else {
            let kind = tag == .keyed ? "keyed" : "unkeyed"
            throw BinaryFormatError(
                message: "truncated input: \(kind) container at offset \(offset) claims \(length) bytes of contents "
                    + "but only \(limit - start) remain")
        }
        return start..<(start + length)
    }

    /// The offset just past the value starting at `offset`, validating only what is needed to
    /// find its end: O(1) for containers, whatever their size.
    func valueEnd(at offset: Int, limit: Int) throws(BinaryFormatError) -> Int {
        let tag = try tag(at: offset, limit: limit)
        var position = offset + 1
        switch tag {
        case .null, .false, .true:
            return position
        case .signed, .unsigned:
            try skipVarint(at: &position, limit: limit)
            return position
        case .float32:
            try require(4, at: position, limit: limit)
            return position + 4
        case .float64:
            try require(8, at: position, limit: limit)
            return position + 8
        case .string, .bytes:
            let length = try count(at: &position, limit: limit, what: tag.phrase)
            return position + length
        case .int64Array, .float64Array:
            let elements = try count(at: &position, limit: limit, elementSize: 8, what: tag.phrase)
            return position + elements * 8
        case .unkeyed, .keyed:
            return try containerContents(at: offset, tag: tag, limit: limit).upperBound
        }
    }

    /// The UTF-8 string in `range` (validated by the caller to lie in the buffer), or nil if
    /// the bytes are not valid UTF-8.
    func string(in range: Range<Int>) -> String? {
        let bytes = slice(range)
        // ASCII is always valid, and `String(decoding:)` is much cheaper than the generic
        // `String(validating:)`; most keys and many values are ASCII.
        var index = 0
        var highBits: UInt64 = 0
        while index + 8 <= bytes.count {
            highBits |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < bytes.count {
            highBits |= UInt64(bytes[index])
            index += 1
        }
        if highBits & 0x8080_8080_8080_8080 == 0 {
            return String(decoding: bytes, as: UTF8.self)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The raw bytes in `range`; the caller has validated it.
    @inline(__always)
    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[range])
    }
}

/// Coding key for string keys the coder itself introduces ("super").
struct BinaryCodingKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }

    init(stringValue: String) {
        self.stringValue = stringValue
    }

    init?(intValue: Int) {
        return nil
    }

    static let superKey = BinaryCodingKey(stringValue: BinaryFormat.superKey)
}

/// Coding key for an array position. One word, so it fits an existential's inline
/// buffer and costs no allocation per element.
struct BinaryIndexKey: CodingKey {
    let index: Int

    init(index: Int) {
        self.index = index
    }

    init?(stringValue: String) {
        return nil
    }

    init?(intValue: Int) {
        self.index = intValue
    }

    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }
}

extension BinaryFormat {
    /// " for key 'name'", " at index 3", or "" for the top-level value.
    static func describe(_ key: (any CodingKey)?) -> String {
        guard let key else { return "" }
        if let index = key as? BinaryIndexKey { return " at index \(index.index)" }
        return " for key '\(key.stringValue)'"
    }
}
