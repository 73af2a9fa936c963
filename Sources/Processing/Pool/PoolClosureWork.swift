import CProcessingShims

/// A non-capturing closure as pool work, carried to the worker as its function's offset
/// from the executable's base address.
///
/// A Swift closure is a (function, context) pair. Without captures the context is nil and
/// the function is code in the executable, which a worker (the same binary, re-executed)
/// has at the same offset from its own base. This relies on an ABI detail the compiler does
/// not promise; `PoolWork` values are the robust form and always exist beside it.
struct ClosureWork<Input: Codable & Sendable, Output: Codable & Sendable>: PoolWork {
    typealias Function = @Sendable (Input) async throws -> Output

    let function: Function
    private let offset: Int

    init(_ function: @escaping Function) throws {
        self.function = function
        offset = try ClosureAddress.offset(of: function, kind: "the closure given to the pool")
    }

    func callAsFunction(_ input: Input) async throws -> Output {
        try await function(input)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(offset)
    }

    init(from decoder: any Decoder) throws {
        offset = try decoder.singleValueContainer().decode(Int.self)
        function = ClosureAddress.function(at: offset, as: Function.self)
    }
}

/// A non-capturing closure of several parameters (`pool.star()`), each item's values spread
/// over them.
struct SpreadClosureWork<each Argument: Codable & Sendable, Output: Codable & Sendable>: PoolWork {
    typealias Function = @Sendable (repeat each Argument) async throws -> Output

    /// A variadic function value cannot be handled generically on its own, only inside a struct.
    struct Boxed: Sendable {
        let function: Function
    }

    let boxed: Boxed
    private let offset: Int

    init(_ function: @escaping Function) throws {
        boxed = Boxed(function: function)
        offset = try ClosureAddress.offset(of: boxed, kind: "the closure given to pool.star()")
    }

    func callAsFunction(_ input: SpreadArguments<repeat each Argument>) async throws -> Output {
        try await boxed.function(repeat each input.values)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(offset)
    }

    init(from decoder: any Decoder) throws {
        offset = try decoder.singleValueContainer().decode(Int.self)
        boxed = ClosureAddress.function(at: offset, as: Boxed.self)
    }
}

/// One item of a `star()` map: a tuple, which Swift cannot make `Codable`, as a value that is.
struct SpreadArguments<each Argument: Codable & Sendable>: Codable, Sendable {
    var values: (repeat each Argument)

    init(_ values: (repeat each Argument)) {
        self.values = values
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        for value in repeat each values {
            try container.encode(value)
        }
    }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        values = (repeat try container.decode((each Argument).self))
    }
}

/// Where a closure's code is, as an offset that means the same in every process running this
/// executable.
enum ClosureAddress {
    /// The two words of a closure value: its function and its context.
    private typealias Parts = (function: UnsafeRawPointer, context: UnsafeRawPointer?)

    /// The base of the image this library is linked into: the executable (the library is a
    /// static one, DESIGN.md).
    private static let executableBaseAddress: UInt? = {
        let anchor: @convention(c) () -> Int32 = processing_worker_control_fd
        return processing_image_base(unsafeBitCast(anchor, to: UnsafeRawPointer.self)).map { UInt(bitPattern: $0) }
    }()

    private static var executableBase: UnsafeRawPointer? {
        executableBaseAddress.flatMap { UnsafeRawPointer(bitPattern: $0) }
    }

    static func offset<Function>(of function: Function, kind: String) throws(ProcessingError) -> Int {
        precondition(MemoryLayout<Function>.size == MemoryLayout<Parts>.size, "not a closure type")
        let parts = unsafeBitCast(function, to: Parts.self)
        guard parts.context == nil else {
            throw ProcessingError(.closureNotTransferable, """
                \(kind) captures values (or is a function converted to another function type), so it \
                cannot be rebuilt in a worker. Pass what it needs as part of each item, or write the \
                work as a PoolWork type (a Codable struct with callAsFunction) whose properties carry \
                the values; a named function can be passed as a closure literal calling it: { f($0) }.
                """)
        }
        guard let executableBase,
              let imageBase = processing_image_base(parts.function).map({ UnsafeRawPointer($0) }),
              imageBase == executableBase else {
            throw ProcessingError(.closureNotTransferable, """
                \(kind) is not code of this executable (a dynamically loaded library?), so a worker \
                cannot find it. Write the work as a PoolWork type instead.
                """)
        }
        return executableBase.distance(to: parts.function)
    }

    static func function<Function>(at offset: Int, as type: Function.Type) -> Function {
        precondition(MemoryLayout<Function>.size == MemoryLayout<Parts>.size, "not a closure type")
        let parts: Parts = (executableBase!.advanced(by: offset), nil)
        return unsafeBitCast(parts, to: Function.self)
    }
}
