import Foundation

/// A type the binary coder writes and reads itself, past its `Codable` conformance: scalars,
/// strings, byte buffers and packed arrays. This list is the coder's fast path, written once;
/// the bytes are those `Codable` would produce through a single-value container (and, for the
/// arrays, an unkeyed one), so a value decodes the same whichever path wrote it.
///
/// The coder finds a type in `BinaryPrimitives.all` and then works on the value as that type
/// (`asPrimitive`), so no value is boxed.
protocol BinaryPrimitive: Codable, SendableMetatype {
    func write(to storage: BinaryEncodingStorage) throws
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self
}

/// A fixed-width integer: a zigzag varint if signed, a plain one if not.
protocol BinaryInteger64: BinaryPrimitive, FixedWidthInteger {}

extension BinaryInteger64 {
    func write(to storage: BinaryEncodingStorage) {
        if Self.isSigned { storage.writeSigned(Int64(self)) } else { storage.writeUnsigned(UInt64(self)) }
    }

    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeInteger(Self.self, at: &offset, limit: limit, key: key())
    }
}

extension Int: BinaryInteger64 {}
extension Int64: BinaryInteger64 {}
extension Int32: BinaryInteger64 {}
extension Int16: BinaryInteger64 {}
extension Int8: BinaryInteger64 {}
extension UInt: BinaryInteger64 {}
extension UInt64: BinaryInteger64 {}
extension UInt32: BinaryInteger64 {}
extension UInt16: BinaryInteger64 {}
extension UInt8: BinaryInteger64 {}

extension Int128: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeSigned(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeInteger(Self.self, at: &offset, limit: limit, key: key())
    }
}

extension UInt128: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeUnsigned(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeInteger(Self.self, at: &offset, limit: limit, key: key())
    }
}

extension Bool: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeBool(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeBool(at: &offset, limit: limit, key: key())
    }
}

extension Double: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeDouble(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeDouble(at: &offset, limit: limit, key: key())
    }
}

extension Float: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeFloat(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeFloat(at: &offset, limit: limit, key: key())
    }
}

extension String: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeString(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeString(at: &offset, limit: limit, key: key())
    }
}

extension Data: BinaryPrimitive {
    func write(to storage: BinaryEncodingStorage) { storage.writeBytes(self) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try decoder.decodeData(at: &offset, limit: limit, key: key())
    }
}

/// The arrays with a packed form. Only these element types: other arrays go through `Codable`.
extension Array: BinaryPrimitive where Element: BinaryArrayElement {
    func write(to storage: BinaryEncodingStorage) throws { try Element.write(self, to: storage) }
    static func read(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                     key: @autoclosure () -> (any CodingKey)?) throws -> Self {
        try Element.readArray(from: decoder, at: &offset, limit: limit, key: key())
    }
}

/// An element type whose arrays have a packed form: `[UInt8]`, `[Int]`, `[Double]`, `[String]`.
protocol BinaryArrayElement: Codable {
    static func write(_ array: [Self], to storage: BinaryEncodingStorage) throws
    static func readArray(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                          key: @autoclosure () -> (any CodingKey)?) throws -> [Self]
}

extension UInt8: BinaryArrayElement {
    static func write(_ array: [Self], to storage: BinaryEncodingStorage) { storage.writeBytes(array) }
    static func readArray(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                          key: @autoclosure () -> (any CodingKey)?) throws -> [Self] {
        try decoder.decodeByteArray(at: &offset, limit: limit, key: key())
    }
}

extension Int: BinaryArrayElement {
    static func write(_ array: [Self], to storage: BinaryEncodingStorage) { storage.writeIntArray(array) }
    static func readArray(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                          key: @autoclosure () -> (any CodingKey)?) throws -> [Self] {
        try decoder.decodeIntArray(at: &offset, limit: limit, key: key())
    }
}

extension Double: BinaryArrayElement {
    static func write(_ array: [Self], to storage: BinaryEncodingStorage) { storage.writeDoubleArray(array) }
    static func readArray(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                          key: @autoclosure () -> (any CodingKey)?) throws -> [Self] {
        try decoder.decodeDoubleArray(at: &offset, limit: limit, key: key())
    }
}

extension String: BinaryArrayElement {
    static func write(_ array: [Self], to storage: BinaryEncodingStorage) throws { try storage.writeStringArray(array) }
    static func readArray(from decoder: BinaryValueDecoder, at offset: inout Int, limit: Int,
                          key: @autoclosure () -> (any CodingKey)?) throws -> [Self] {
        try decoder.decodeStringArray(at: &offset, limit: limit, key: key())
    }
}

/// The types with a fast path, most common first: the one list the coder reads.
enum BinaryPrimitives {
    static let all: [any BinaryPrimitive.Type] = [
        String.self, Int.self, Double.self, Bool.self, Data.self, [UInt8].self, [Int].self, [Double].self,
        [String].self, Float.self, Int64.self, UInt64.self, Int32.self, UInt32.self, UInt8.self, UInt.self,
        Int16.self, UInt16.self, Int8.self, Int128.self, UInt128.self,
    ]

    /// `T` as a primitive, or nil. Metatype comparisons rather than `T.self as? any
    /// BinaryPrimitive.Type`: a conformance lookup, even cached, made a small value's round trip
    /// 15 % slower.
    @inline(__always)
    static func find<T>(_: T.Type) -> (any BinaryPrimitive.Type)? {
        let wanted = ObjectIdentifier(T.self)
        for type in all where ObjectIdentifier(type) == wanted { return type }
        return nil
    }
}

extension BinaryPrimitive {
    /// `value` as this type, which is its own (the caller checked `T.self` is `Self`).
    @inline(__always)
    static func asPrimitive<T>(_ value: T) -> Self { unsafeBitCast(value, to: Self.self) }
}
