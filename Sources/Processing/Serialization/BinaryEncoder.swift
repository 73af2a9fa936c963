import Foundation

/// Encodes `Encodable` values into the compact, tagged binary format described in
/// `BinaryFormat.swift`, for length-prefixed IPC frames.
///
/// The encoder streams: fields are appended to one growing buffer in the order `encode(to:)`
/// writes them, and container lengths are backpatched when a container is done. It holds no
/// state, so one instance can be shared by any number of threads.
struct BinaryEncoder: Sendable {
    /// Creates an encoder. There are no options.
    init() {}

    /// Encodes `value` and returns the bytes.
    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128)
        try encode(value, appendingTo: &bytes)
        return bytes
    }

    /// Appends the encoding of `value` to `bytes` (lets callers put a frame header first
    /// without a copy). On error, `bytes` is left as it was.
    func encode<T: Encodable>(_ value: T, appendingTo bytes: inout [UInt8]) throws {
        let start = bytes.count
        // Hand the caller's buffer to the storage; dropping our reference keeps it uniquely
        // referenced, so appends in the storage never copy it.
        let storage = BinaryEncodingStorage(bytes: bytes)
        bytes = []
        do {
            try storage.encodeRoot(value)
        } catch {
            storage.bytes.removeSubrange(start...)
            bytes = storage.takeBytes()
            throw error
        }
        bytes = storage.takeBytes()
    }
}

// MARK: - Storage

/// The output buffer and the stack of values being encoded, shared by every encoder and
/// container of one `encode` call. Created per call and never shared across threads.
///
/// Each value being encoded (that is not written by a fast path) has a frame on the stack.
/// Encoders and containers name their frame by (depth, serial); a serial is never reused,
/// so a container whose frame was already closed is detected instead of corrupting output.
final class BinaryEncodingStorage {
    enum FrameKind {
        /// Nothing written yet; closing it writes an empty keyed container.
        case empty
        case keyed
        case unkeyed
        /// A single value was written.
        case single
    }

    struct Frame {
        let serial: UInt64
        /// The path component leading to this value (nil for the root and single-value hops).
        let key: (any CodingKey)?
        var kind: FrameKind = .empty
        /// Offset of the container tag, for backpatching the length.
        var headerOffset = 0
        /// Elements written so far, for unkeyed containers.
        var elementCount = 0
    }

    // Runtime exclusivity checks cost about a third of the encode time for small values.
    // They are off for these properties because the storage is confined to one `encode`
    // call on one thread, and no method holds an access across a call that re-enters it.
    @exclusivity(unchecked) var bytes: [UInt8]
    @exclusivity(unchecked) private var frames: [Frame] = []
    @exclusivity(unchecked) private var lastSerial: UInt64 = 0
    /// The first misuse seen in a non-throwing call (such as `container(keyedBy:)`);
    /// reported when the value is done.
    @exclusivity(unchecked) private var misuse: (any Error)?

    init(bytes: [UInt8]) {
        self.bytes = bytes
        frames.reserveCapacity(16)
    }

    func takeBytes() -> [UInt8] {
        let result = bytes
        bytes = []
        return result
    }

    func encodeRoot<T: Encodable>(_ value: T) throws {
        if try !encodeFastPath(value) {
            try encodeNested(value, key: nil)
        }
        if let misuse { throw misuse }
    }

    // MARK: Frames

    func codingPath(depth: Int) -> [any CodingKey] {
        var path: [any CodingKey] = []
        var index = 0
        while index <= depth && index < frames.count {
            if let key = frames[index].key { path.append(key) }
            index += 1
        }
        return path
    }

    /// Checks that the frame is still open and closes any frames nested in it: writing to a
    /// container means its nested containers are finished.
    @inline(__always)
    func activate(depth: Int, serial: UInt64) throws {
        guard depth >= 0, depth < frames.count, frames[depth].serial == serial else {
            throw staleContainerError(depth: depth)
        }
        if frames.count > depth + 1 {
            try closeFrames(above: depth)
        }
    }

    private func staleContainerError(depth: Int) -> any Error {
        if let misuse { return misuse }
        return EncodingError.invalidValue(
            "container", EncodingError.Context(
                codingPath: codingPath(depth: depth),
                debugDescription: "a container was used after its parent or a sibling was written to; "
                    + "the streaming BinaryEncoder needs nested containers to be finished before the parent continues"))
    }

    func pushFrame(key: (any CodingKey)?, value: @autoclosure () -> Any) throws -> (depth: Int, serial: UInt64) {
        guard frames.count < BinaryFormat.maxDepth else {
            var path = codingPath(depth: frames.count - 1)
            if let key { path.append(key) }
            throw EncodingError.invalidValue(
                value(), EncodingError.Context(
                    codingPath: path, debugDescription: "nesting deeper than \(BinaryFormat.maxDepth) levels"))
        }
        lastSerial += 1
        frames.append(Frame(serial: lastSerial, key: key))
        return (frames.count - 1, lastSerial)
    }

    /// Finishes and pops every frame deeper than `depth` (-1 closes all).
    func closeFrames(above depth: Int) throws {
        while frames.count > depth + 1 {
            let frame = frames.removeLast()
            switch frame.kind {
            case .empty:
                // A value that wrote nothing still has to be one value on the wire.
                bytes.append(BinaryTag.keyed.rawValue)
                appendZeroLength()
            case .keyed, .unkeyed:
                try patchLength(headerOffset: frame.headerOffset, key: frame.key)
            case .single:
                break
            }
        }
    }

    /// Writes the length of the container whose tag is at `headerOffset`, now that its
    /// contents end at the end of the buffer.
    private func patchLength(headerOffset: Int, key: (any CodingKey)?) throws {
        let length = bytes.count - headerOffset - BinaryFormat.containerHeaderSize
        guard let length32 = UInt32(exactly: length) else {
            throw EncodingError.invalidValue(
                "container", EncodingError.Context(
                    codingPath: codingPath(depth: frames.count - 1) + (key.map { [$0] } ?? []),
                    debugDescription: "container contents of \(length) bytes exceed the 4 GiB limit"))
        }
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: length32.littleEndian, toByteOffset: headerOffset + 1, as: UInt32.self)
        }
    }

    /// Opens (or reuses) the container of the given kind for the frame at `depth`.
    func prepareContainer(_ kind: FrameKind, depth: Int, serial: UInt64) throws {
        try activate(depth: depth, serial: serial)
        let existing = frames[depth].kind
        if existing == kind { return }  // e.g. a subclass and its superclass share one container
        guard existing == .empty else {
            throw EncodingError.invalidValue(
                "container", EncodingError.Context(
                    codingPath: codingPath(depth: depth),
                    debugDescription: "requested \(Self.phrase(kind)) but this value already holds \(Self.phrase(existing))"))
        }
        openContainer(kind, depth: depth)
    }

    func openContainer(_ kind: FrameKind, depth: Int) {
        frames[depth].kind = kind
        frames[depth].headerOffset = bytes.count
        bytes.append(kind == .keyed ? BinaryTag.keyed.rawValue : BinaryTag.unkeyed.rawValue)
        appendZeroLength()  // backpatched on close
    }

    /// Appends a 4-byte zero container length (byte by byte: an array literal would allocate).
    @inline(__always)
    private func appendZeroLength() {
        bytes.append(0)
        bytes.append(0)
        bytes.append(0)
        bytes.append(0)
    }

    /// Marks the frame as holding its single value; a second value is an error.
    func claimSingleValue(depth: Int, serial: UInt64) throws {
        try activate(depth: depth, serial: serial)
        let existing = frames[depth].kind
        guard existing == .empty else {
            throw EncodingError.invalidValue(
                "value", EncodingError.Context(
                    codingPath: codingPath(depth: depth),
                    debugDescription: "single value container used but this value already holds \(Self.phrase(existing))"))
        }
        frames[depth].kind = .single
    }

    /// Returns the index of the next element of the unkeyed container at `depth`.
    func nextElementIndex(depth: Int) -> Int {
        let index = frames[depth].elementCount
        frames[depth].elementCount = index + 1
        return index
    }

    func elementCount(depth: Int, serial: UInt64) -> Int {
        guard depth >= 0, depth < frames.count, frames[depth].serial == serial else { return 0 }
        return frames[depth].elementCount
    }

    func record(_ error: any Error) {
        if misuse == nil { misuse = error }
    }

    private static func phrase(_ kind: FrameKind) -> String {
        switch kind {
        case .empty: "nothing"
        case .keyed: "a keyed container"
        case .unkeyed: "an unkeyed container"
        case .single: "a single value"
        }
    }

    // MARK: Values

    /// Encodes a value that is not a fast-path type: gives it a frame and lets it encode itself.
    func encodeNested<T: Encodable>(_ value: T, key: (any CodingKey)?) throws {
        let (depth, serial) = try pushFrame(key: key, value: value)
        try value.encode(to: BinaryValueEncoder(storage: self, depth: depth, serial: serial))
        // Only writing to an enclosing container from inside `encode(to:)` can close this frame early.
        guard depth < frames.count, frames[depth].serial == serial else {
            throw staleContainerError(depth: depth - 1)
        }
        try closeFrames(above: depth - 1)
    }

    /// Writes primitives, byte buffers and packed arrays directly (`BinaryPrimitive`). Returns
    /// false for other types.
    func encodeFastPath<T: Encodable>(_ value: T) throws -> Bool {
        guard let primitive = BinaryPrimitives.find(T.self) else { return false }
        try write(value, as: primitive)
        return true
    }

    private func write<T, P: BinaryPrimitive>(_ value: T, as _: P.Type) throws {
        try P.asPrimitive(value).write(to: self)
    }

    @inline(__always)
    func writeTag(_ tag: BinaryTag) {
        bytes.append(tag.rawValue)
    }

    func writeBool(_ value: Bool) {
        bytes.append(value ? BinaryTag.true.rawValue : BinaryTag.false.rawValue)
    }

    func writeSigned(_ value: Int64) {
        bytes.append(BinaryTag.signed.rawValue)
        BinaryFormat.appendVarint(BinaryFormat.zigzag(value), to: &bytes)
    }

    func writeUnsigned(_ value: UInt64) {
        bytes.append(BinaryTag.unsigned.rawValue)
        BinaryFormat.appendVarint(value, to: &bytes)
    }

    func writeSigned(_ value: Int128) {
        bytes.append(BinaryTag.signed.rawValue)
        BinaryFormat.appendVarint(BinaryFormat.zigzag(value), to: &bytes)
    }

    func writeUnsigned(_ value: UInt128) {
        bytes.append(BinaryTag.unsigned.rawValue)
        BinaryFormat.appendVarint(value, to: &bytes)
    }

    func writeFloat(_ value: Float) {
        bytes.append(BinaryTag.float32.rawValue)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    func writeDouble(_ value: Double) {
        bytes.append(BinaryTag.float64.rawValue)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    func writeString(_ value: String) {
        bytes.append(BinaryTag.string.rawValue)
        writeUTF8(value)
    }

    /// `[String]` is common enough to skip the generic `Array.encode(to:)`; the bytes are the
    /// same unkeyed container of strings it would produce.
    func writeStringArray(_ value: [String]) throws {
        let headerOffset = bytes.count
        bytes.append(BinaryTag.unkeyed.rawValue)
        appendZeroLength()
        for element in value {
            writeString(element)
        }
        try patchLength(headerOffset: headerOffset, key: nil)
    }

    /// A key is written like a string without the tag.
    @inline(__always)
    func writeKey(_ key: some CodingKey) {
        writeUTF8(key.stringValue)
    }

    private func writeUTF8(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            BinaryFormat.appendVarint(UInt64(utf8.count), to: &bytes)
            bytes.append(contentsOf: utf8)
        }
    }

    func writeBytes(_ value: Data) {
        bytes.append(BinaryTag.bytes.rawValue)
        BinaryFormat.appendVarint(UInt64(value.count), to: &bytes)
        value.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    func writeBytes(_ value: [UInt8]) {
        bytes.append(BinaryTag.bytes.rawValue)
        BinaryFormat.appendVarint(UInt64(value.count), to: &bytes)
        bytes.append(contentsOf: value)
    }

    func writeIntArray(_ value: [Int]) {
        bytes.append(BinaryTag.int64Array.rawValue)
        BinaryFormat.appendVarint(UInt64(value.count), to: &bytes)
        if BinaryFormat.packedArraysAreMemcpy {
            value.withUnsafeBytes { bytes.append(contentsOf: $0) }
        } else {
            bytes.reserveCapacity(bytes.count + value.count * 8)
            for element in value {
                withUnsafeBytes(of: Int64(element).littleEndian) { bytes.append(contentsOf: $0) }
            }
        }
    }

    func writeDoubleArray(_ value: [Double]) {
        bytes.append(BinaryTag.float64Array.rawValue)
        BinaryFormat.appendVarint(UInt64(value.count), to: &bytes)
        if BinaryFormat.packedArraysAreMemcpy {
            value.withUnsafeBytes { bytes.append(contentsOf: $0) }
        } else {
            bytes.reserveCapacity(bytes.count + value.count * 8)
            for element in value {
                withUnsafeBytes(of: element.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
            }
        }
    }
}

// MARK: - Encoder

/// The `Encoder` handed to `encode(to:)`. Three words, so passing it as `any Encoder`
/// needs no allocation.
private struct BinaryValueEncoder: Encoder {
    let storage: BinaryEncodingStorage
    let depth: Int
    let serial: UInt64

    var codingPath: [any CodingKey] { storage.codingPath(depth: depth) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        do {
            try storage.prepareContainer(.keyed, depth: depth, serial: serial)
            return KeyedEncodingContainer(BinaryKeyedEncodingContainer<Key>(storage: storage, depth: depth, serial: serial))
        } catch {
            storage.record(error)
            return KeyedEncodingContainer(BinaryKeyedEncodingContainer<Key>(storage: storage, depth: depth, serial: 0))
        }
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        do {
            try storage.prepareContainer(.unkeyed, depth: depth, serial: serial)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: depth, serial: serial)
        } catch {
            storage.record(error)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: depth, serial: 0)
        }
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        // Checked when a value is written, since only then is it a conflict.
        BinarySingleValueEncodingContainer(storage: storage, depth: depth, serial: serial)
    }
}

// Containers made after a misuse get serial 0, which never matches a frame, so every use
// of them throws the recorded error.

private struct BinaryKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: BinaryEncodingStorage
    let depth: Int
    let serial: UInt64

    var codingPath: [any CodingKey] { storage.codingPath(depth: depth) }

    @inline(__always)
    private func begin(_ key: Key) throws {
        try storage.activate(depth: depth, serial: serial)
        storage.writeKey(key)
    }

    mutating func encodeNil(forKey key: Key) throws {
        try begin(key)
        storage.writeTag(.null)
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws { try begin(key); storage.writeBool(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { try begin(key); storage.writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try begin(key); storage.writeDouble(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try begin(key); storage.writeFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try begin(key); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try begin(key); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try begin(key); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try begin(key); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try begin(key); storage.writeSigned(value) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { try begin(key); storage.writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try begin(key); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try begin(key); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try begin(key); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try begin(key); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try begin(key); storage.writeUnsigned(value) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { try begin(key); storage.writeUnsigned(value) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try begin(key)
        if try !storage.encodeFastPath(value) {
            try storage.encodeNested(value, key: key)
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        do {
            let (nestedDepth, nestedSerial) = try openNested(.keyed, key: key)
            return KeyedEncodingContainer(
                BinaryKeyedEncodingContainer<NestedKey>(storage: storage, depth: nestedDepth, serial: nestedSerial))
        } catch {
            storage.record(error)
            return KeyedEncodingContainer(BinaryKeyedEncodingContainer<NestedKey>(storage: storage, depth: depth, serial: 0))
        }
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        do {
            let (nestedDepth, nestedSerial) = try openNested(.unkeyed, key: key)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: nestedDepth, serial: nestedSerial)
        } catch {
            storage.record(error)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: depth, serial: 0)
        }
    }

    private func openNested(
        _ kind: BinaryEncodingStorage.FrameKind, key: Key
    ) throws -> (depth: Int, serial: UInt64) {
        try begin(key)
        let frame = try storage.pushFrame(key: key, value: "nested container")
        storage.openContainer(kind, depth: frame.depth)
        return frame
    }

    mutating func superEncoder() -> any Encoder {
        makeSuperEncoder(key: BinaryCodingKey.superKey) { storage.writeKey(BinaryCodingKey.superKey) }
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        makeSuperEncoder(key: key) { storage.writeKey(key) }
    }

    private func makeSuperEncoder(key: any CodingKey, writeKey: () -> Void) -> any Encoder {
        do {
            try storage.activate(depth: depth, serial: serial)
            writeKey()
            let (nestedDepth, nestedSerial) = try storage.pushFrame(key: key, value: "super encoder")
            return BinaryValueEncoder(storage: storage, depth: nestedDepth, serial: nestedSerial)
        } catch {
            storage.record(error)
            return BinaryValueEncoder(storage: storage, depth: depth, serial: 0)
        }
    }
}

private struct BinaryUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let storage: BinaryEncodingStorage
    let depth: Int
    let serial: UInt64

    var codingPath: [any CodingKey] { storage.codingPath(depth: depth) }
    var count: Int { storage.elementCount(depth: depth, serial: serial) }

    /// Returns the index of the element about to be written.
    @inline(__always)
    private func begin() throws -> Int {
        try storage.activate(depth: depth, serial: serial)
        return storage.nextElementIndex(depth: depth)
    }

    mutating func encodeNil() throws {
        _ = try begin()
        storage.writeTag(.null)
    }

    mutating func encode(_ value: Bool) throws { _ = try begin(); storage.writeBool(value) }
    mutating func encode(_ value: String) throws { _ = try begin(); storage.writeString(value) }
    mutating func encode(_ value: Double) throws { _ = try begin(); storage.writeDouble(value) }
    mutating func encode(_ value: Float) throws { _ = try begin(); storage.writeFloat(value) }
    mutating func encode(_ value: Int) throws { _ = try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { _ = try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { _ = try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { _ = try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { _ = try begin(); storage.writeSigned(value) }
    mutating func encode(_ value: Int128) throws { _ = try begin(); storage.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { _ = try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { _ = try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { _ = try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { _ = try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { _ = try begin(); storage.writeUnsigned(value) }
    mutating func encode(_ value: UInt128) throws { _ = try begin(); storage.writeUnsigned(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let index = try begin()
        if try !storage.encodeFastPath(value) {
            try storage.encodeNested(value, key: BinaryIndexKey(index: index))
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        do {
            let (nestedDepth, nestedSerial) = try openNested(.keyed)
            return KeyedEncodingContainer(
                BinaryKeyedEncodingContainer<NestedKey>(storage: storage, depth: nestedDepth, serial: nestedSerial))
        } catch {
            storage.record(error)
            return KeyedEncodingContainer(BinaryKeyedEncodingContainer<NestedKey>(storage: storage, depth: depth, serial: 0))
        }
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        do {
            let (nestedDepth, nestedSerial) = try openNested(.unkeyed)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: nestedDepth, serial: nestedSerial)
        } catch {
            storage.record(error)
            return BinaryUnkeyedEncodingContainer(storage: storage, depth: depth, serial: 0)
        }
    }

    private func openNested(_ kind: BinaryEncodingStorage.FrameKind) throws -> (depth: Int, serial: UInt64) {
        let index = try begin()
        let frame = try storage.pushFrame(key: BinaryIndexKey(index: index), value: "nested container")
        storage.openContainer(kind, depth: frame.depth)
        return frame
    }

    mutating func superEncoder() -> any Encoder {
        do {
            let index = try begin()
            let (nestedDepth, nestedSerial) = try storage.pushFrame(key: BinaryIndexKey(index: index), value: "super encoder")
            return BinaryValueEncoder(storage: storage, depth: nestedDepth, serial: nestedSerial)
        } catch {
            storage.record(error)
            return BinaryValueEncoder(storage: storage, depth: depth, serial: 0)
        }
    }
}

private struct BinarySingleValueEncodingContainer: SingleValueEncodingContainer {
    let storage: BinaryEncodingStorage
    let depth: Int
    let serial: UInt64

    var codingPath: [any CodingKey] { storage.codingPath(depth: depth) }

    @inline(__always)
    private func begin() throws {
        try storage.claimSingleValue(depth: depth, serial: serial)
    }

    mutating func encodeNil() throws {
        try begin()
        storage.writeTag(.null)
    }

    mutating func encode(_ value: Bool) throws { try begin(); storage.writeBool(value) }
    mutating func encode(_ value: String) throws { try begin(); storage.writeString(value) }
    mutating func encode(_ value: Double) throws { try begin(); storage.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try begin(); storage.writeFloat(value) }
    mutating func encode(_ value: Int) throws { try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { try begin(); storage.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { try begin(); storage.writeSigned(value) }
    mutating func encode(_ value: Int128) throws { try begin(); storage.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { try begin(); storage.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { try begin(); storage.writeUnsigned(value) }
    mutating func encode(_ value: UInt128) throws { try begin(); storage.writeUnsigned(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try begin()
        if try !storage.encodeFastPath(value) {
            // The nested value gets its own frame (no key: a single value adds no path component).
            try storage.encodeNested(value, key: nil)
        }
    }
}
