import Synchronization

/// Types by name: how a child finds the type the parent means.
///
/// `_typeByName(_mangledTypeName(T.self))` finds public and internal types, nested and
/// generic ones, in executables and test targets alike; it returns nil for `private`,
/// `fileprivate` and function-local types even in the same process. So the parent checks
/// before spawning, and refuses with an error that says what to change.
///
/// Mangling and, above all, looking a name up walk the runtime's metadata (tens of
/// microseconds), and a type's answers never change: they are computed once per type.
enum TypeName {
    private static let mangledNames = Mutex<[ObjectIdentifier: String?]>([:])
    private static let locatableNames = Mutex<[ObjectIdentifier: String?]>([:])

    static func mangled(_ type: Any.Type) -> String? {
        let key = ObjectIdentifier(type)
        if let cached = mangledNames.withLock({ $0[key] }) { return cached }
        let name = _mangledTypeName(type)
        mangledNames.withLock { $0[key] = name }
        return name
    }

    static func lookUp(_ mangledName: String) -> Any.Type? { _typeByName(mangledName) }

    /// A readable name for a mangled one (the type's own name where it can be found here).
    static func readable(_ mangledName: String) -> String {
        lookUp(mangledName).map { String(reflecting: $0) } ?? mangledName
    }

    /// The mangled name of `type`, after checking that a child can find it by that name.
    static func locatable(_ type: Any.Type, role: @autoclosure () -> String) throws(ProcessingError) -> String {
        let key = ObjectIdentifier(type)
        let cached = locatableNames.withLock { $0[key] }
        let name: String?
        if let cached {
            name = cached
        } else {
            let mangled = mangled(type)
            name = mangled.flatMap { lookUp($0) } == type ? mangled : nil
            locatableNames.withLock { $0[key] = name }
        }
        guard let name else {
            throw ProcessingError(.typeNotLocatable, """
                \(String(reflecting: type)) cannot be used as \(role()): a child process finds types by name, and \
                private, fileprivate and function-local types have none it can look up. Declare it internal \
                or public, at file scope or nested in such a type.
                """)
        }
        return name
    }

    /// A value to rebuild in a child from its type's name: checks that the child can find the
    /// value's type and `output` (what it gives back) by name, and encodes the value.
    static func encodeForChild<Value: Encodable>(
        _ value: Value, as role: String, giving output: Any.Type, to recipient: String
    ) throws -> (typeName: String, state: [UInt8]) {
        let typeName = try locatable(Value.self, role: role)
        _ = try locatable(output, role: "what \(String(reflecting: Value.self)) gives back")
        do {
            return (typeName, try BinaryEncoder().encode(value))
        } catch let error as PipeEndpointError {
            throw error
        } catch {
            throw ProcessingError(.encodingFailed, "\(String(reflecting: Value.self)) could not be encoded to send to \(recipient): \(error)")
        }
    }
}
