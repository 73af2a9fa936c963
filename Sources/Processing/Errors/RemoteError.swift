/// An error thrown in another process, as it crossed the boundary.
///
/// The type name and description always cross. Where the error's type is `Codable` (and
/// can be found by name), `value` holds the error itself, so `catch` can match on it:
/// `if let mine = remote.value as? MyError { ... }`.
public struct RemoteError: Error, Sendable, CustomStringConvertible {
    /// The error's type, as `String(reflecting:)` prints it (`MyModule.ParseError`).
    public let typeName: String
    /// `String(describing:)` of the error, taken in the process that threw it.
    public let errorDescription: String
    /// The error value itself, when its type is `Codable` and could be decoded here.
    public let value: (any Error)?

    /// A readable account of the error or value.
    public var description: String { "\(typeName): \(errorDescription)" }

    /// Wraps an error thrown in this process (the child), keeping the value itself.
    init(capturing error: any Error) {
        if let remote = error as? RemoteError {
            self = remote
        } else {
            self.init(typeName: String(reflecting: type(of: error)), errorDescription: String(describing: error), value: error)
        }
    }

    init(typeName: String, errorDescription: String, value: (any Error)?) {
        self.typeName = typeName
        self.errorDescription = errorDescription
        self.value = value
    }
}

/// How a `RemoteError` crosses: names and text, and the encoded value when it has one.
struct RemoteErrorPayload: Codable, Sendable {
    var typeName: String
    var errorDescription: String
    var mangledTypeName: String?
    var encodedValue: [UInt8]?

    init(_ error: any Error) {
        let remote = RemoteError(capturing: error)
        typeName = remote.typeName
        errorDescription = remote.errorDescription
        if let value = remote.value, let encodable = value as? any Encodable,
           let name = TypeName.mangled(type(of: value)) {
            mangledTypeName = name
            encodedValue = try? BinaryEncoder().encode(encodable)
        }
    }

    var remoteError: RemoteError {
        var value: (any Error)?
        if let mangledTypeName, let encodedValue,
           let type = TypeName.lookUp(mangledTypeName) as? any (Error & Decodable).Type {
            value = try? Self.decode(type, encodedValue)
        }
        return RemoteError(typeName: typeName, errorDescription: errorDescription, value: value)
    }

    private static func decode<E: Error & Decodable>(_ type: E.Type, _ bytes: [UInt8]) throws -> any Error {
        try BinaryDecoder().decode(type, from: bytes)
    }
}
