import Distributed

/// Records a distributed call for `ProcessActorSystem`: the generic substitutions (by mangled
/// type name) and the arguments, each in the library's binary format, back to back.
public struct ProcessInvocationEncoder: DistributedTargetInvocationEncoder {
    /// What the arguments must be.
    public typealias SerializationRequirement = Codable

    /// The generic substitutions' mangled names, in order.
    var generics: [String] = []
    /// The arguments, each a self-delimiting encoded value.
    var arguments: [UInt8] = []
    var argumentCount = 0

    init() {}

    /// Records one generic substitution (a call of a generic distributed func).
    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = TypeName.mangled(T.self) else {
            throw ProcessActorError(.callFailed, """
                the generic argument \(String(reflecting: T.self)) has no mangled name this process can send; \
                use a type declared at file scope
                """)
        }
        generics.append(name)
    }

    /// Records one argument, encoded now.
    public mutating func recordArgument<Value: Codable>(_ argument: RemoteCallArgument<Value>) throws {
        do {
            try BinaryEncoder().encode(argument.value, appendingTo: &arguments)
        } catch {
            throw ProcessActorError(.callFailed, """
                the argument \(argument.label ?? argument.effectiveLabel) (\(String(reflecting: Value.self))) did not encode: \(error)
                """)
        }
        argumentCount += 1
    }

    /// Not needed: the reply says what it is.
    public mutating func recordReturnType<R: Codable>(_ type: R.Type) throws {}

    /// Not needed: errors cross with their type's name.
    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}

    /// Nothing left to do.
    public mutating func doneRecording() throws {}

    /// Appends the recorded call to a frame being built.
    func append(to bytes: inout [UInt8]) {
        BinaryFormat.appendVarint(UInt64(generics.count), to: &bytes)
        for name in generics {
            BinaryFormat.appendVarint(UInt64(name.utf8.count), to: &bytes)
            bytes.append(contentsOf: name.utf8)
        }
        BinaryFormat.appendVarint(UInt64(argumentCount), to: &bytes)
        bytes.append(contentsOf: arguments)
    }
}
