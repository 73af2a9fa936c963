import Foundation

/// Decodes `Decodable` values from the binary format written by `BinaryEncoder`
/// (see `BinaryFormat.swift`).
///
/// Input is untrusted: malformed or truncated bytes never read out of bounds or trap; they
/// throw a `DecodingError` that names the problem and its byte offset. The decoder holds no
/// state, so one instance can be shared by any number of threads.
struct BinaryDecoder: Sendable {
    /// Creates a decoder. There are no options.
    init() {}

    /// Decodes a value of `type` from `bytes`, which must hold exactly one encoded value.
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes from a raw buffer (e.g. a slice of a frame); never reads outside it.
    /// The buffer must hold exactly one encoded value; trailing bytes are an error.
    func decode<T: Decodable>(_ type: T.Type, from buffer: UnsafeRawBufferPointer) throws -> T {
        let reader = BinaryReader(buffer: buffer)
        let end: Int
        do throws(BinaryFormatError) {
            end = try reader.valueEnd(at: 0, limit: buffer.count)
        } catch {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: [], debugDescription: error.message))
        }
        guard end == buffer.count else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: [],
                    debugDescription: "trailing bytes: the value ends at offset \(end) but the input has \(buffer.count) bytes"))
        }
        // The decoders only live for this call, while `buffer` is valid; a Decodable that keeps
        // its decoder beyond init(from:) is already outside the Decodable contract.
        let root = BinaryValueDecoder(reader: reader, offset: 0, limit: end, depth: 0, parent: nil, key: nil)
        return try root.decodeRoot(type)
    }
}

/// One entry of a keyed container: where its key bytes and its value start.
struct BinaryKeyEntry {
    let keyStart: Int
    let keyCount: Int
    let valueStart: Int
}

/// The `Decoder` for one value. A class, so its container state (the key table and the
/// unkeyed cursor) can change under the non-mutating protocol methods and is shared when a
/// subclass and its superclass both ask for a container, mirroring the encoder. It doubles as
/// the coding-path node (`parent` + `key`), so each nested value costs one allocation.
/// Created per decode call and never shared across threads.
final class BinaryValueDecoder: Decoder {
    let reader: BinaryReader
    /// Offset of this value's tag.
    let offset: Int
    /// The value lies before this offset (the end of the enclosing container).
    let limit: Int
    let depth: Int
    let parent: BinaryValueDecoder?
    let key: (any CodingKey)?

    // Runtime exclusivity checks are off for the mutable state below: it is confined to one
    // `decode` call on one thread, and no method holds an access across a re-entrant call.

    /// Contents of this value's container, once a container was requested.
    @exclusivity(unchecked) var contents: Range<Int> = 0..<0
    // Keyed container state.
    @exclusivity(unchecked) var keyedPrepared = false
    @exclusivity(unchecked) var keyEntries: [BinaryKeyEntry] = []
    /// Index of the last key found; lookups start there since fields are usually decoded in order.
    @exclusivity(unchecked) var searchHint = 0
    // Unkeyed container state.
    @exclusivity(unchecked) var unkeyedPrepared = false
    @exclusivity(unchecked) var cursor = 0
    @exclusivity(unchecked) var elementIndex = 0
    @exclusivity(unchecked) var cachedElementCount: Int?

    init(reader: BinaryReader, offset: Int, limit: Int, depth: Int, parent: BinaryValueDecoder?, key: (any CodingKey)?) {
        self.reader = reader
        self.offset = offset
        self.limit = limit
        self.depth = depth
        self.parent = parent
        self.key = key
    }

    var codingPath: [any CodingKey] {
        var reversed: [any CodingKey] = []
        var node: BinaryValueDecoder? = self
        while let current = node {
            if let key = current.key { reversed.append(key) }
            node = current.parent
        }
        return reversed.reversed()
    }

    var userInfo: [CodingUserInfoKey: Any] { ActorDecoding.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try prepareKeyed(KeyedDecodingContainer<Key>.self)
        return KeyedDecodingContainer(BinaryKeyedDecodingContainer<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try prepareUnkeyed()
        return BinaryUnkeyedDecodingContainer(decoder: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        BinarySingleValueDecodingContainer(decoder: self)
    }

    // MARK: Errors

    /// Errors about a value read through this decoder: `key` names the child value, or nil for
    /// this decoder's own value.
    func errorPath(_ key: (any CodingKey)?) -> [any CodingKey] {
        guard let key else { return codingPath }
        var path = codingPath
        path.append(key)
        return path
    }

    /// The key to name in a message: the child's, or the nearest one above this value.
    func errorKey(_ key: (any CodingKey)?) -> (any CodingKey)? {
        if let key { return key }
        var node: BinaryValueDecoder? = self
        while let current = node {
            if let key = current.key { return key }
            node = current.parent
        }
        return nil
    }

    func corrupted(_ error: BinaryFormatError, key: (any CodingKey)?) -> DecodingError {
        .dataCorrupted(DecodingError.Context(codingPath: errorPath(key), debugDescription: error.message))
    }

    func corrupted(_ message: String, key: (any CodingKey)?) -> DecodingError {
        .dataCorrupted(DecodingError.Context(codingPath: errorPath(key), debugDescription: message))
    }

    /// `typeMismatch`, or `valueNotFound` when the value is an explicit nil.
    func mismatch(
        _ type: Any.Type, expected: String, found tag: BinaryTag, at offset: Int, key: (any CodingKey)?
    ) -> DecodingError {
        let location = BinaryFormat.describe(errorKey(key))
        let context = DecodingError.Context(
            codingPath: errorPath(key),
            debugDescription: "expected \(expected)\(location) but found \(tag.phrase) at offset \(offset)")
        return tag == .null ? .valueNotFound(type, context) : .typeMismatch(type, context)
    }

    // MARK: Containers

    private func prepareKeyed(_ containerType: Any.Type) throws {
        if keyedPrepared { return }
        let tag = try readTag(at: offset, limit: limit, key: nil)
        guard tag == .keyed else {
            throw mismatch(containerType, expected: "a keyed container", found: tag, at: offset, key: nil)
        }
        do throws(BinaryFormatError) {
            let range = try reader.containerContents(at: offset, tag: .keyed, limit: limit)
            // Every entry takes at least 2 bytes; the cap keeps huge containers from over-reserving.
            keyEntries.reserveCapacity(min(range.count / 2, 16))
            var position = range.lowerBound
            while position < range.upperBound {
                let keyCount = try reader.count(at: &position, limit: range.upperBound, what: "a key")
                let keyStart = position
                position += keyCount
                let valueStart = position
                position = try reader.valueEnd(at: position, limit: range.upperBound)
                keyEntries.append(BinaryKeyEntry(keyStart: keyStart, keyCount: keyCount, valueStart: valueStart))
            }
            contents = range
        } catch {
            keyEntries.removeAll()
            throw corrupted(error, key: nil)
        }
        keyedPrepared = true
    }

    private func prepareUnkeyed() throws {
        if unkeyedPrepared { return }
        let tag = try readTag(at: offset, limit: limit, key: nil)
        guard tag == .unkeyed else {
            throw mismatch([Any].self, expected: "an unkeyed container", found: tag, at: offset, key: nil)
        }
        do throws(BinaryFormatError) {
            contents = try reader.containerContents(at: offset, tag: .unkeyed, limit: limit)
        } catch {
            throw corrupted(error, key: nil)
        }
        cursor = contents.lowerBound
        unkeyedPrepared = true
    }

    /// Finds the entry for `key`: first the one after the last match, then a wrapping scan
    /// from the last match, so in-order and repeated lookups are O(1).
    func entryIndex(for key: some CodingKey) -> Int? {
        let count = keyEntries.count
        guard count > 0 else { return nil }
        var name = key.stringValue
        return name.withUTF8 { utf8 -> Int? in
            let next = searchHint + 1 < count ? searchHint + 1 : 0
            if keyMatches(keyEntries[next], utf8) {
                searchHint = next
                return next
            }
            var index = searchHint
            for _ in 0..<count {
                if index != next && keyMatches(keyEntries[index], utf8) {
                    searchHint = index
                    return index
                }
                index = index + 1 < count ? index + 1 : 0
            }
            return nil
        }
    }

    @inline(__always)
    private func keyMatches(_ entry: BinaryKeyEntry, _ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        guard entry.keyCount == utf8.count else { return false }
        guard entry.keyCount > 0, let stored = reader.buffer.baseAddress, let wanted = utf8.baseAddress else {
            return true  // both empty
        }
        return memcmp(stored + entry.keyStart, wanted, entry.keyCount) == 0
    }

    func keyString(_ entry: BinaryKeyEntry) -> String? {
        reader.string(in: entry.keyStart..<(entry.keyStart + entry.keyCount))
    }

    /// Number of elements of the unkeyed container, counted on first request (O(elements),
    /// O(1) each). Nil if the contents are malformed; decoding then reports where.
    var elementCount: Int? {
        if let cachedElementCount { return cachedElementCount }
        var position = contents.lowerBound
        var count = 0
        while position < contents.upperBound {
            guard let end = try? reader.valueEnd(at: position, limit: contents.upperBound) else { return nil }
            position = end
            count += 1
        }
        cachedElementCount = count
        return count
    }

    /// A decoder for the child value at `offset`, refusing to nest too deep.
    func child(at offset: Int, limit: Int, key: (any CodingKey)?) throws -> BinaryValueDecoder {
        guard depth + 1 < BinaryFormat.maxDepth else {
            throw corrupted("nesting deeper than \(BinaryFormat.maxDepth) levels at offset \(offset)", key: key)
        }
        return BinaryValueDecoder(reader: reader, offset: offset, limit: limit, depth: depth + 1, parent: self, key: key)
    }

    func valueEnd(at offset: Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> Int {
        do throws(BinaryFormatError) {
            return try reader.valueEnd(at: offset, limit: limit)
        } catch {
            throw corrupted(error, key: key())
        }
    }

    // MARK: Values

    func decodeRoot<T: Decodable>(_ type: T.Type) throws -> T {
        if let primitive = BinaryPrimitives.find(T.self) {
            var position = offset
            return try read(primitive, at: &position, limit: limit, key: nil)
        }
        return try T(from: self)
    }

    /// Decodes the child value at `offset` and advances `offset` past it.
    func decodeValue<T: Decodable>(
        _ type: T.Type, at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?
    ) throws -> T {
        if let primitive = BinaryPrimitives.find(T.self) {
            return try read(primitive, at: &offset, limit: limit, key: key())
        }
        let start = offset
        let value = try T(from: child(at: start, limit: limit, key: key()))
        offset = try valueEnd(at: start, limit: limit, key: key())
        return value
    }

    /// Reads a primitive, byte buffer or packed array directly (`BinaryPrimitive`), as `T`,
    /// which `P` is.
    private func read<T, P: BinaryPrimitive>(
        _: P.Type, at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?
    ) throws -> T {
        unsafeBitCast(try P.read(from: self, at: &offset, limit: limit, key: key()), to: T.self)
    }

    @inline(__always)
    func readTag(at offset: Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> BinaryTag {
        do throws(BinaryFormatError) {
            return try reader.tag(at: offset, limit: limit)
        } catch {
            throw corrupted(error, key: key())
        }
    }

    func decodeBool(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> Bool {
        let tag = try readTag(at: offset, limit: limit, key: key())
        switch tag {
        case .true:
            offset += 1
            return true
        case .false:
            offset += 1
            return false
        default:
            throw mismatch(Bool.self, expected: "a boolean", found: tag, at: offset, key: key())
        }
    }

    func decodeInteger<I: FixedWidthInteger>(
        _ type: I.Type, at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?
    ) throws -> I {
        let start = offset
        let tag = try readTag(at: start, limit: limit, key: key())
        guard tag == .signed || tag == .unsigned else {
            throw mismatch(I.self, expected: "an integer (\(I.self))", found: tag, at: start, key: key())
        }
        var position = start + 1
        // Range checks compare a truncated round trip and the sign instead of using
        // `I(exactly:)`, whose `I?` result needs a runtime metadata lookup when unspecialized.
        do throws(BinaryFormatError) {
            if I.bitWidth <= 64 {
                let raw = try reader.varint(at: &position, limit: limit)
                if tag == .signed {
                    let value = BinaryFormat.unzigzag(raw)
                    let result = I(truncatingIfNeeded: value)
                    if Int64(truncatingIfNeeded: result) == value && (result < 0) == (value < 0) {
                        offset = position
                        return result
                    }
                    throw overflow(value, I.self, at: start, key: key())
                } else {
                    let result = I(truncatingIfNeeded: raw)
                    if UInt64(truncatingIfNeeded: result) == raw && result >= 0 {
                        offset = position
                        return result
                    }
                    throw overflow(raw, I.self, at: start, key: key())
                }
            } else {
                let raw = try reader.varint128(at: &position, limit: limit)
                if tag == .signed {
                    let value = BinaryFormat.unzigzag(raw)
                    let result = I(truncatingIfNeeded: value)
                    if Int128(truncatingIfNeeded: result) == value && (result < 0) == (value < 0) {
                        offset = position
                        return result
                    }
                    throw overflow(value, I.self, at: start, key: key())
                } else {
                    let result = I(truncatingIfNeeded: raw)
                    if UInt128(truncatingIfNeeded: result) == raw && result >= 0 {
                        offset = position
                        return result
                    }
                    throw overflow(raw, I.self, at: start, key: key())
                }
            }
        } catch {
            throw corrupted(error, key: key())
        }
    }

    private func overflow(
        _ value: some BinaryInteger, _ type: Any.Type, at offset: Int, key: (any CodingKey)?
    ) -> BinaryFormatError {
        BinaryFormatError(
            message: "integer \(value) at offset \(offset) does not fit in \(type)\(BinaryFormat.describe(errorKey(key)))")
    }

    func decodeDouble(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> Double {
        let tag = try readTag(at: offset, limit: limit, key: key())
        do throws(BinaryFormatError) {
            switch tag {
            case .float64:
                let bits = try reader.uint64(at: offset + 1, limit: limit)
                offset += 9
                return Double(bitPattern: bits)
            case .float32:
                let bits = try reader.uint32(at: offset + 1, limit: limit)
                offset += 5
                return Double(Float(bitPattern: bits))
            default:
                break
            }
        } catch {
            throw corrupted(error, key: key())
        }
        throw mismatch(Double.self, expected: "a floating-point number", found: tag, at: offset, key: key())
    }

    func decodeFloat(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> Float {
        let tag = try readTag(at: offset, limit: limit, key: key())
        switch tag {
        case .float32:
            do throws(BinaryFormatError) {
                let bits = try reader.uint32(at: offset + 1, limit: limit)
                offset += 5
                return Float(bitPattern: bits)
            } catch {
                throw corrupted(error, key: key())
            }
        case .float64:
            var position = offset
            let wide = try decodeDouble(at: &position, limit: limit, key: key())
            // Like JSONDecoder: a finite Double beyond Float's range is an error, not infinity.
            guard !wide.isFinite || abs(wide) <= Double(Float.greatestFiniteMagnitude) else {
                throw corrupted("64-bit float \(wide) at offset \(offset) does not fit in Float", key: key())
            }
            offset = position
            return Float(wide)
        default:
            throw mismatch(Float.self, expected: "a floating-point number", found: tag, at: offset, key: key())
        }
    }

    /// Reads the tag and length of a string or byte buffer; returns the content range.
    private func lengthPrefixed(
        _ expectedTag: BinaryTag, _ type: Any.Type, expected: String,
        at offset: Int, limit: Int, key: @autoclosure () -> (any CodingKey)?
    ) throws -> Range<Int> {
        let tag = try readTag(at: offset, limit: limit, key: key())
        guard tag == expectedTag else {
            throw mismatch(type, expected: expected, found: tag, at: offset, key: key())
        }
        var position = offset + 1
        do throws(BinaryFormatError) {
            let count = try reader.count(at: &position, limit: limit, what: tag.phrase)
            return position..<(position + count)
        } catch {
            throw corrupted(error, key: key())
        }
    }

    func decodeString(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> String {
        let range = try lengthPrefixed(.string, String.self, expected: "a string", at: offset, limit: limit, key: key())
        guard let string = reader.string(in: range) else {
            throw corrupted("invalid UTF-8 in the string at offset \(offset)", key: key())
        }
        offset = range.upperBound
        return string
    }

    /// `[String]` without the generic `Array.init(from:)`; same bytes as the generic path.
    func decodeStringArray(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> [String] {
        let tag = try readTag(at: offset, limit: limit, key: key())
        guard tag == .unkeyed else {
            throw mismatch([String].self, expected: "an unkeyed container", found: tag, at: offset, key: key())
        }
        let contents: Range<Int>
        do throws(BinaryFormatError) {
            contents = try reader.containerContents(at: offset, tag: .unkeyed, limit: limit)
        } catch {
            throw corrupted(error, key: key())
        }
        var result: [String] = []
        var position = contents.lowerBound
        do {
            while position < contents.upperBound {
                result.append(try decodeString(at: &position, limit: contents.upperBound, key: nil))
            }
        } catch {
            // Rerun the generic path, which reports the failing element with its full coding path.
            return try [String](from: child(at: offset, limit: limit, key: key()))
        }
        offset = contents.upperBound
        return result
    }

    func decodeData(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> Data {
        let range = try lengthPrefixed(.bytes, Data.self, expected: "a byte buffer", at: offset, limit: limit, key: key())
        offset = range.upperBound
        return Data(reader.slice(range))
    }

    func decodeByteArray(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> [UInt8] {
        let range = try lengthPrefixed(.bytes, [UInt8].self, expected: "a byte buffer", at: offset, limit: limit, key: key())
        offset = range.upperBound
        let source = reader.slice(range)
        // Never a capacity of 0: that writes the count into the shared empty-array storage,
        // which two threads decoding at once do together (a race ThreadSanitizer reports).
        guard !source.isEmpty else { return [] }
        return [UInt8](unsafeUninitializedCapacity: source.count) { destination, initialized in
            UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
            initialized = source.count
        }
    }

    /// Reads the tag and element count of a packed 8-byte array; returns the payload range.
    private func packedArray(
        _ expectedTag: BinaryTag, _ type: Any.Type, at offset: Int, limit: Int, key: @autoclosure () -> (any CodingKey)?
    ) throws -> Range<Int> {
        let tag = try readTag(at: offset, limit: limit, key: key())
        guard tag == expectedTag else {
            throw mismatch(type, expected: expectedTag.phrase, found: tag, at: offset, key: key())
        }
        var position = offset + 1
        do throws(BinaryFormatError) {
            let count = try reader.count(at: &position, limit: limit, elementSize: 8, what: tag.phrase)
            return position..<(position + count * 8)
        } catch {
            throw corrupted(error, key: key())
        }
    }

    func decodeIntArray(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> [Int] {
        let range = try packedArray(.int64Array, [Int].self, at: offset, limit: limit, key: key())
        let source = reader.slice(range)
        let count = range.count / 8
        if BinaryFormat.packedArraysAreMemcpy {
            offset = range.upperBound
            guard count > 0 else { return [] }  // see decodeByteArray
            return [Int](unsafeUninitializedCapacity: count) { destination, initialized in
                UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
                initialized = count
            }
        }
        var result: [Int] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            let value = Int64(littleEndian: source.loadUnaligned(fromByteOffset: index * 8, as: Int64.self))
            guard let element = Int(exactly: value) else {
                throw corrupted("integer \(value) at offset \(range.lowerBound + index * 8) does not fit in Int", key: key())
            }
            result.append(element)
        }
        offset = range.upperBound
        return result
    }

    func decodeDoubleArray(at offset: inout Int, limit: Int, key: @autoclosure () -> (any CodingKey)?) throws -> [Double] {
        let range = try packedArray(.float64Array, [Double].self, at: offset, limit: limit, key: key())
        let source = reader.slice(range)
        let count = range.count / 8
        offset = range.upperBound
        if BinaryFormat.packedArraysAreMemcpy {
            guard count > 0 else { return [] }  // see decodeByteArray
            return [Double](unsafeUninitializedCapacity: count) { destination, initialized in
                UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
                initialized = count
            }
        }
        return (0..<count).map { index in
            Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)))
        }
    }
}

// MARK: - Containers

private struct BinaryKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: BinaryValueDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] {
        decoder.keyEntries.compactMap { entry in decoder.keyString(entry).flatMap(Key.init(stringValue:)) }
    }

    func contains(_ key: Key) -> Bool {
        decoder.entryIndex(for: key) != nil
    }

    private var end: Int { decoder.contents.upperBound }

    private func valueOffset(_ key: Key) throws -> Int {
        guard let index = decoder.entryIndex(for: key) else {
            throw DecodingError.keyNotFound(
                key, DecodingError.Context(
                    codingPath: codingPath,
                    debugDescription: "no value for key '\(key.stringValue)' in the keyed container at offset \(decoder.offset)"))
        }
        return decoder.keyEntries[index].valueStart
    }

    /// The value's offset, or nil when the key is missing or holds an explicit nil.
    private func presentOffset(_ key: Key) throws -> Int? {
        guard let index = decoder.entryIndex(for: key) else { return nil }
        let offset = decoder.keyEntries[index].valueStart
        return try decoder.readTag(at: offset, limit: end, key: key) == .null ? nil : offset
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        try decoder.readTag(at: valueOffset(key), limit: end, key: key) == .null
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        var offset = try valueOffset(key)
        return try decoder.decodeBool(at: &offset, limit: end, key: key)
    }

    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        var offset = try valueOffset(key)
        return try decoder.decodeString(at: &offset, limit: end, key: key)
    }

    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        var offset = try valueOffset(key)
        return try decoder.decodeDouble(at: &offset, limit: end, key: key)
    }

    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        var offset = try valueOffset(key)
        return try decoder.decodeFloat(at: &offset, limit: end, key: key)
    }

    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(type, key) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try integer(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(type, key) }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try integer(type, key) }

    private func integer<I: FixedWidthInteger>(_ type: I.Type, _ key: Key) throws -> I {
        var offset = try valueOffset(key)
        return try decoder.decodeInteger(type, at: &offset, limit: end, key: key)
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        var offset = try valueOffset(key)
        return try decoder.decodeValue(type, at: &offset, limit: end, key: key)
    }

    // One lookup instead of the default implementation's contains + decodeNil + decode.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeValue(type, at: &offset, limit: end, key: key)
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeBool(at: &offset, limit: end, key: key)
    }

    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeString(at: &offset, limit: end, key: key)
    }

    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeDouble(at: &offset, limit: end, key: key)
    }

    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeFloat(at: &offset, limit: end, key: key)
    }

    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try integerIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? { try integerIfPresent(type, key) }

    private func integerIfPresent<I: FixedWidthInteger>(_ type: I.Type, _ key: Key) throws -> I? {
        guard var offset = try presentOffset(key) else { return nil }
        return try decoder.decodeInteger(type, at: &offset, limit: end, key: key)
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder.child(at: valueOffset(key), limit: end, key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.child(at: valueOffset(key), limit: end, key: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        let superKey = BinaryCodingKey.superKey
        guard let index = decoder.entryIndex(for: superKey) else {
            throw DecodingError.keyNotFound(
                superKey, DecodingError.Context(
                    codingPath: codingPath,
                    debugDescription: "no value for key 'super' in the keyed container at offset \(decoder.offset)"))
        }
        return try decoder.child(at: decoder.keyEntries[index].valueStart, limit: end, key: superKey)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try decoder.child(at: valueOffset(key), limit: end, key: key)
    }
}

private struct BinaryUnkeyedDecodingContainer: UnkeyedDecodingContainer {
    let decoder: BinaryValueDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { decoder.elementCount }
    var isAtEnd: Bool { decoder.cursor >= decoder.contents.upperBound }
    var currentIndex: Int { decoder.elementIndex }

    private var end: Int { decoder.contents.upperBound }

    private func atEndError(_ type: Any.Type) -> DecodingError {
        let key = BinaryIndexKey(index: decoder.elementIndex)
        return DecodingError.valueNotFound(
            type, DecodingError.Context(
                codingPath: decoder.errorPath(key),
                debugDescription: "unkeyed container at offset \(decoder.offset) has no element at index \(key.index)"))
    }

    /// Decodes the next element with `body` and advances only if it succeeds.
    @inline(__always)
    private func next<R>(
        _ type: R.Type, _ body: (inout Int, BinaryIndexKey) throws -> R
    ) throws -> R {
        guard !isAtEnd else { throw atEndError(type) }
        var offset = decoder.cursor
        let value = try body(&offset, BinaryIndexKey(index: decoder.elementIndex))
        decoder.cursor = offset
        decoder.elementIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { throw atEndError(Optional<Any>.self) }
        let key = BinaryIndexKey(index: decoder.elementIndex)
        guard try decoder.readTag(at: decoder.cursor, limit: end, key: key) == .null else { return false }
        decoder.cursor += 1
        decoder.elementIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        try next(type) { try decoder.decodeBool(at: &$0, limit: end, key: $1) }
    }

    mutating func decode(_ type: String.Type) throws -> String {
        try next(type) { try decoder.decodeString(at: &$0, limit: end, key: $1) }
    }

    mutating func decode(_ type: Double.Type) throws -> Double {
        try next(type) { try decoder.decodeDouble(at: &$0, limit: end, key: $1) }
    }

    mutating func decode(_ type: Float.Type) throws -> Float {
        try next(type) { try decoder.decodeFloat(at: &$0, limit: end, key: $1) }
    }

    mutating func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { try integer(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try integer(type) }

    private func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        try next(type) { try decoder.decodeInteger(type, at: &$0, limit: end, key: $1) }
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next(type) { try decoder.decodeValue(type, at: &$0, limit: end, key: $1) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { offset, key in
            let container = try decoder.child(at: offset, limit: end, key: key).container(keyedBy: type)
            offset = try decoder.valueEnd(at: offset, limit: end, key: key)
            return container
        }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { offset, key in
            let container = try decoder.child(at: offset, limit: end, key: key).unkeyedContainer()
            offset = try decoder.valueEnd(at: offset, limit: end, key: key)
            return container
        }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next((any Decoder).self) { offset, key in
            let child = try decoder.child(at: offset, limit: end, key: key)
            offset = try decoder.valueEnd(at: offset, limit: end, key: key)
            return child
        }
    }
}

private struct BinarySingleValueDecodingContainer: SingleValueDecodingContainer {
    let decoder: BinaryValueDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool {
        (try? decoder.reader.tag(at: decoder.offset, limit: decoder.limit)) == .null
    }

    func decode(_ type: Bool.Type) throws -> Bool {
        var offset = decoder.offset
        return try decoder.decodeBool(at: &offset, limit: decoder.limit, key: nil)
    }

    func decode(_ type: String.Type) throws -> String {
        var offset = decoder.offset
        return try decoder.decodeString(at: &offset, limit: decoder.limit, key: nil)
    }

    func decode(_ type: Double.Type) throws -> Double {
        var offset = decoder.offset
        return try decoder.decodeDouble(at: &offset, limit: decoder.limit, key: nil)
    }

    func decode(_ type: Float.Type) throws -> Float {
        var offset = decoder.offset
        return try decoder.decodeFloat(at: &offset, limit: decoder.limit, key: nil)
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: Int128.Type) throws -> Int128 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try integer(type) }

    private func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        var offset = decoder.offset
        return try decoder.decodeInteger(type, at: &offset, limit: decoder.limit, key: nil)
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        var offset = decoder.offset
        return try decoder.decodeValue(type, at: &offset, limit: decoder.limit, key: nil)
    }
}
