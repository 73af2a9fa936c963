import Distributed

/// Reads a distributed call that `ProcessInvocationEncoder` recorded, in the process that
/// runs it. Input is untrusted: anything malformed throws, naming what is wrong.
public struct ProcessInvocationDecoder: DistributedTargetInvocationDecoder {
    /// What the arguments must be.
    public typealias SerializationRequirement = Codable

    private let payload: [UInt8]
    private var offset: Int
    private let system: ProcessActorSystem
    private var argumentsLeft = 0

    /// Reads the call in `payload` from `offset` (where its generic substitutions start).
    init(payload: [UInt8], offset: Int, system: ProcessActorSystem) {
        (self.payload, self.offset, self.system) = (payload, offset, system)
    }

    private func malformed(_ what: String) -> ProcessActorError {
        ProcessActorError(.callFailed, "a malformed call arrived: \(what)")
    }

    /// The generic substitutions' mangled names, read once (the runtime asks for them only
    /// for a generic method, and the arguments follow them).
    private var genericNames: [String]?

    private mutating func readHeader() throws -> [String] {
        if let genericNames { return genericNames }
        guard let count = BinaryFormat.readVarint(payload, at: &offset), count <= 64 else {
            throw malformed("no count of generic substitutions")
        }
        var names: [String] = []
        for _ in 0..<count {
            guard let length = BinaryFormat.readVarint(payload, at: &offset), length <= payload.count - offset else {
                throw malformed("a generic substitution's name is cut off")
            }
            names.append(String(decoding: payload[offset..<(offset + Int(length))], as: UTF8.self))
            offset += Int(length)
        }
        guard let arguments = BinaryFormat.readVarint(payload, at: &offset), arguments <= payload.count else {
            throw malformed("no count of arguments")
        }
        argumentsLeft = Int(arguments)
        genericNames = names
        return names
    }

    /// The generic substitutions, found by their mangled names.
    public mutating func decodeGenericSubstitutions() throws -> [Any.Type] {
        try readHeader().map { name in
            guard let type = TypeName.lookUp(name) else {
                throw ProcessActorError(.callFailed, """
                    the generic argument \(TypeName.readable(name)) is not a type this process knows \
                    (is it the same build of the program?)
                    """)
            }
            return type
        }
    }

    /// The next argument, decoded as the method's parameter type.
    public mutating func decodeNextArgument<Argument: Codable>() throws -> Argument {
        _ = try readHeader()
        guard argumentsLeft > 0 else { throw malformed("fewer arguments than the method takes") }
        argumentsLeft -= 1
        let start = offset
        let system = system
        return try payload.withUnsafeBytes { buffer in
            let end: Int
            do throws(BinaryFormatError) {
                end = try BinaryReader(buffer: buffer).valueEnd(at: start, limit: buffer.count)
            } catch {
                throw malformed("argument \(String(reflecting: Argument.self)): \(error.message)")
            }
            offset = end
            do {
                return try ActorDecoding.$system.withValue(system) {
                    try BinaryDecoder().decode(Argument.self, from: UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
                }
            } catch let error as ProcessActorError {
                throw error
            } catch {
                throw ProcessActorError(.callFailed, "an argument did not decode as \(String(reflecting: Argument.self)): \(error)")
            }
        }
    }

    /// Not recorded: nil.
    public mutating func decodeErrorType() throws -> Any.Type? { nil }

    /// Not recorded: nil.
    public mutating func decodeReturnType() throws -> Any.Type? { nil }
}

/// The system that decodes actor references (`CodingUserInfoKey.actorSystemKey`) in the
/// values being decoded now.
enum ActorDecoding {
    @TaskLocal static var system: ProcessActorSystem?

    /// The decoders' `userInfo`: the system, when one decodes.
    static var userInfo: [CodingUserInfoKey: Any] {
        guard let system else { return [:] }
        return [.actorSystemKey: system]
    }
}
