import Foundation
import Testing

@testable import Processing

// MARK: - Fixtures

private struct Address: Codable, Equatable {
    var street: String
    var number: Int
    var tags: [String]
}

private struct Person: Codable, Equatable {
    var name: String
    var age: UInt8
    var height: Double
    var address: Address
    var previous: [Address]
    var nickname: String?
    var manager: Bool
}

private enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case rectangle(Double, Double)
    case labeled(String, inner: Address)
    case empty
}

private struct Optionals: Codable, Equatable {
    var present: Int?
    var absent: String?
    var nested: Address?
}

/// Writes an explicit nil where synthesized code would omit the key.
private struct ExplicitNil: Codable, Equatable {
    var value: Int?

    enum CodingKeys: String, CodingKey { case value }

    init(value: Int?) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        value = try container.decodeIfPresent(Int.self, forKey: .value)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeNil(forKey: .value)
    }
}

/// Encodes nothing at all.
private struct Nothing: Codable, Equatable {
    init() {}
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
}

private struct HoldsNothing: Codable, Equatable {
    var before: Int
    var nothing: Nothing
    var after: String
}

private class Animal: Codable {
    var name: String
    init(name: String) { self.name = name }
}

private final class Dog: Animal {
    var breed: String
    var goodBoy: Bool

    enum CodingKeys: String, CodingKey { case breed, goodBoy }

    init(name: String, breed: String) {
        self.breed = breed
        self.goodBoy = true
        super.init(name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        breed = try container.decode(String.self, forKey: .breed)
        goodBoy = try container.decode(Bool.self, forKey: .goodBoy)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(breed, forKey: .breed)
        try super.encode(to: container.superEncoder())
        try container.encode(goodBoy, forKey: .goodBoy)
    }
}

/// A subclass that shares the encoder with its superclass instead of using superEncoder.
private final class Cat: Animal {
    var lives: Int

    enum CodingKeys: String, CodingKey { case lives }

    init(name: String, lives: Int) {
        self.lives = lives
        super.init(name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lives = try container.decode(Int.self, forKey: .lives)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(lives, forKey: .lives)
        try super.encode(to: encoder)
    }
}

/// Arrays nested `depth` deep: [[[...[leaf]...]]].
private indirect enum NestedList: Codable, Equatable {
    case leaf(Int)
    case list([NestedList])

    init(from decoder: any Decoder) throws {
        if var container = try? decoder.unkeyedContainer() {
            var items: [NestedList] = []
            while !container.isAtEnd { items.append(try container.decode(NestedList.self)) }
            self = .list(items)
        } else {
            self = .leaf(try decoder.singleValueContainer().decode(Int.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .leaf(let value):
            var container = encoder.singleValueContainer()
            try container.encode(value)
        case .list(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        }
    }

    static func nested(depth: Int) -> NestedList {
        var value = NestedList.leaf(7)
        for _ in 0..<depth { value = .list([value]) }
        return value
    }
}

/// Uses nested keyed and unkeyed containers by hand, and decodes keys out of order.
private struct Manual: Codable, Equatable {
    var id: Int
    var point: (x: Int, y: Int)
    var list: [String]

    enum Keys: String, CodingKey { case id, point, list }
    enum PointKeys: String, CodingKey { case x, y }

    init(id: Int, point: (x: Int, y: Int), list: [String]) {
        self.id = id
        self.point = point
        self.list = list
    }

    static func == (lhs: Manual, rhs: Manual) -> Bool {
        lhs.id == rhs.id && lhs.point == rhs.point && lhs.list == rhs.list
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        var listContainer = try container.nestedUnkeyedContainer(forKey: .list)
        var list: [String] = []
        #expect(listContainer.count == 3)
        while !listContainer.isAtEnd { list.append(try listContainer.decode(String.self)) }
        self.list = list
        let point = try container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        self.point = (try point.decode(Int.self, forKey: .y), try point.decode(Int.self, forKey: .x))
        self.point = (self.point.y, self.point.x)
        id = try container.decode(Int.self, forKey: .id)
        #expect(Set(container.allKeys.map(\.stringValue)) == ["id", "point", "list"])
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(id, forKey: .id)
        var point = container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        try point.encode(self.point.x, forKey: .x)
        try point.encode(self.point.y, forKey: .y)
        var list = container.nestedUnkeyedContainer(forKey: .list)
        for item in self.list { try list.encode(item) }
    }
}

/// Everything at once, for truncation and garbage tests.
private struct Everything: Codable, Equatable {
    var person: Person
    var shapes: [Shape]
    var byName: [String: Int]
    var byID: [Int: String]
    var blob: Data
    var bytes: [UInt8]
    var ints: [Int]
    var doubles: [Double]
    var small: Int8
    var big: UInt64
    var float: Float
    var optionals: Optionals
    var nothing: Nothing

    static let sample = Everything(
        person: .sample,
        shapes: [.circle(radius: 1.5), .rectangle(2, 3), .labeled("x", inner: .sample), .empty],
        byName: ["one": 1, "two": 2],
        byID: [1: "one", -2: "minus two"],
        blob: Data([1, 2, 3, 255]),
        bytes: [9, 8, 7],
        ints: [1, -1, .max, .min],
        doubles: [0.5, -2.25],
        small: -5,
        big: .max,
        float: 3.25,
        optionals: Optionals(present: 4, absent: nil, nested: .sample),
        nothing: Nothing())
}

private extension Address {
    static let sample = Address(street: "Rue de l'Été 🌞", number: 42, tags: ["a", "", "ç"])
}

private extension Person {
    static let sample = Person(
        name: "Zoë", age: 200, height: 1.75, address: .sample,
        previous: [.sample, Address(street: "", number: -1, tags: [])],
        nickname: nil, manager: true)
}

/// Deterministic generator so garbage tests are reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Helpers

private func roundTrip<T: Codable>(_ value: T) throws -> T {
    let bytes = try BinaryEncoder().encode(value)
    return try BinaryDecoder().decode(T.self, from: bytes)
}

private func decodingContext(_ error: DecodingError?) -> DecodingError.Context? {
    switch error {
    case .typeMismatch(_, let context), .valueNotFound(_, let context),
        .keyNotFound(_, let context), .dataCorrupted(let context):
        return context
    default:
        return nil
    }
}

/// The debug description of a decoding error, or "" if there was none.
private func message(_ error: DecodingError?) -> String {
    decodingContext(error)?.debugDescription ?? ""
}

private func path(_ context: DecodingError.Context?) -> [String] {
    context?.codingPath.map(\.stringValue) ?? []
}

/// Decodes `bytes`, requiring a `DecodingError`; returns it.
private func decodeFailure<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) -> DecodingError? {
    do {
        _ = try BinaryDecoder().decode(type, from: bytes)
        return nil
    } catch let error as DecodingError {
        return error
    } catch {
        return nil
    }
}

// MARK: - Tests

@Suite struct BinaryCoderTests {
    /// Under `.ci/tsan` this reported a data race before the fix: decoding an empty packed
    /// array wrote its count into the shared empty-array storage. In a plain build it checks
    /// that empty arrays still decode as empty.
    @Test func emptyArraysDecodeOnManyThreadsAtOnce() async throws {
        struct Empties: Codable, Equatable { var bytes: [UInt8] = []; var ints: [Int] = []; var doubles: [Double] = [] }
        let encoded = try BinaryEncoder().encode(Empties())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<200 {
                        let decoded = try BinaryDecoder().decode(Empties.self, from: encoded)
                        #expect(decoded == Empties())
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func integerWidthsAtTheirLimits() throws {
        func check<I: FixedWidthInteger & Codable>(_ type: I.Type) throws {
            for value in [I.min, I.max, 0, 1, I.max / 2] {
                #expect(try roundTrip(value) == value)
                #expect(try roundTrip([value, value]) == [value, value])
            }
        }
        try check(Int.self)
        try check(Int8.self)
        try check(Int16.self)
        try check(Int32.self)
        try check(Int64.self)
        try check(Int128.self)
        try check(UInt.self)
        try check(UInt8.self)
        try check(UInt16.self)
        try check(UInt32.self)
        try check(UInt64.self)
        try check(UInt128.self)
        try check(Int8.self)
        #expect(try roundTrip(Int(-1)) == -1)
    }

    @Test func integersInKeyedContainers() throws {
        struct Widths: Codable, Equatable {
            var i: Int, i8: Int8, i16: Int16, i32: Int32, i64: Int64, i128: Int128
            var u: UInt, u8: UInt8, u16: UInt16, u32: UInt32, u64: UInt64, u128: UInt128
        }
        let low = Widths(
            i: .min, i8: .min, i16: .min, i32: .min, i64: .min, i128: .min,
            u: .min, u8: .min, u16: .min, u32: .min, u64: .min, u128: .min)
        let high = Widths(
            i: .max, i8: .max, i16: .max, i32: .max, i64: .max, i128: .max,
            u: .max, u8: .max, u16: .max, u32: .max, u64: .max, u128: .max)
        #expect(try roundTrip(low) == low)
        #expect(try roundTrip(high) == high)
    }

    @Test func floatingPoint() throws {
        for value in [0.0, -0.0, 1.5, -2.25, .pi, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude] {
            let decoded = try roundTrip(value)
            #expect(decoded == value && decoded.sign == value.sign)
        }
        for value: Float in [0, 1.5, -.infinity, .infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude] {
            #expect(try roundTrip(value) == value)
        }
        #expect(try roundTrip(Double.nan).isNaN)
        #expect(try roundTrip(Float.nan).isNaN)
        #expect(try roundTrip([Double.nan, 1])[0].isNaN)
        // A Float field may be read as Double.
        let floatBytes = try BinaryEncoder().encode(Float(0.5))
        #expect(try BinaryDecoder().decode(Double.self, from: floatBytes) == 0.5)
    }

    @Test func boolsAndStrings() throws {
        #expect(try roundTrip(true) == true)
        #expect(try roundTrip(false) == false)
        for string in ["", "plain", "Zoë 🌞 日本語 \u{0}", String(repeating: "é", count: 10_000)] {
            #expect(try roundTrip(string) == string)
        }
    }

    @Test func nestedStructsAndArraysOfStructs() throws {
        #expect(try roundTrip(Person.sample) == Person.sample)
        let people = Array(repeating: Person.sample, count: 50)
        #expect(try roundTrip(people) == people)
        #expect(try roundTrip([Person]()) == [])
    }

    @Test func enumsWithAssociatedValues() throws {
        let shapes: [Shape] = [.circle(radius: 2), .rectangle(1, -1), .labeled("tag", inner: .sample), .empty]
        #expect(try roundTrip(shapes) == shapes)
    }

    @Test func optionalsPresentAbsentAndNil() throws {
        let full = Optionals(present: 1, absent: "here", nested: .sample)
        let empty = Optionals(present: nil, absent: nil, nested: nil)
        #expect(try roundTrip(full) == full)
        #expect(try roundTrip(empty) == empty)
        #expect(try roundTrip(ExplicitNil(value: 3)) == ExplicitNil(value: nil))
        #expect(try roundTrip(Int?.none) == nil)
        #expect(try roundTrip(Int?.some(5)) == 5)
        #expect(try roundTrip([1, nil, 3] as [Int?]) == [1, nil, 3])
        #expect(try roundTrip([nil, .sample] as [Address?]) == [nil, .sample])

        // Explicit nil in the input where synthesized code expects an optional.
        let explicitBytes = try BinaryEncoder().encode(ExplicitNil(value: nil))
        struct ReadsValue: Decodable { var value: Int? }
        #expect(try BinaryDecoder().decode(ReadsValue.self, from: explicitBytes).value == nil)
        // ...and where it expects a value: valueNotFound.
        struct NeedsValue: Decodable { var value: Int }
        let error = decodeFailure(NeedsValue.self, explicitBytes)
        guard case .valueNotFound = error else {
            Issue.record("expected valueNotFound, got \(String(describing: error))")
            return
        }
    }

    @Test func dictionaries() throws {
        let byName = ["one": 1, "two": 2, "": 0, "ü": -4]
        let byID = [1: "one", -7: "minus seven", Int.max: "max"]
        let nested = ["a": ["x": [1.5]], "b": [:]]
        #expect(try roundTrip(byName) == byName)
        #expect(try roundTrip(byID) == byID)
        #expect(try roundTrip(nested) == nested)
        #expect(try roundTrip([String: Int]()) == [:])
        let bigDictionary = Dictionary(uniqueKeysWithValues: (0..<2_000).map { ("key\($0)", $0) })
        #expect(try roundTrip(bigDictionary) == bigDictionary)
    }

    @Test func classHierarchyWithSuperEncoder() throws {
        let dog = Dog(name: "Rex", breed: "Collie")
        let decoded = try roundTrip(dog)
        #expect(decoded.name == "Rex" && decoded.breed == "Collie" && decoded.goodBoy)

        let cat = Cat(name: "Tom", lives: 9)
        let decodedCat = try roundTrip(cat)
        #expect(decodedCat.name == "Tom" && decodedCat.lives == 9)
        // Both classes share one keyed container rather than nesting.
        let bytes = try BinaryEncoder().encode(cat)
        #expect(bytes.filter { $0 == BinaryTag.keyed.rawValue }.count == 1)
    }

    @Test func byteBuffersAndPackedArrays() throws {
        var generator = SplitMix64(state: 1)
        let mebibyte = Data((0..<(1 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let encoded = try BinaryEncoder().encode(mebibyte)
        #expect(encoded.count < mebibyte.count + 8)  // raw bytes, not an element-per-byte container
        #expect(try BinaryDecoder().decode(Data.self, from: encoded) == mebibyte)

        let bytes: [UInt8] = [0, 1, 254, 255]
        #expect(try roundTrip(bytes) == bytes)
        #expect(try roundTrip([UInt8]()) == [])
        #expect(try roundTrip(Data()) == Data())

        let ints = (0..<10_000).map { $0 * 7919 - 5_000_000 } + [.min, .max]
        #expect(try roundTrip(ints) == ints)
        #expect(try roundTrip([Int]()) == [])
        let doubles = (0..<10_000).map { Double($0) * 0.25 - 17 } + [.infinity, -0.0]
        #expect(try roundTrip(doubles) == doubles)

        struct Holder: Codable, Equatable {
            var data: Data
            var bytes: [UInt8]
            var ints: [Int]
            var doubles: [Double]
            var maybe: Data?
        }
        let holder = Holder(data: Data([1, 2]), bytes: [3], ints: [4, -5], doubles: [6.5], maybe: Data([7]))
        #expect(try roundTrip(holder) == holder)
    }

    @Test func deeplyNestedArrays() throws {
        let deep = NestedList.nested(depth: 100)
        #expect(try roundTrip(deep) == deep)
        let wide = NestedList.list((0..<100).map { .list([.leaf($0), .list([])]) })
        #expect(try roundTrip(wide) == wide)
    }

    @Test func valueThatEncodesNothing() throws {
        #expect(try roundTrip(Nothing()) == Nothing())
        let holder = HoldsNothing(before: 1, nothing: Nothing(), after: "end")
        #expect(try roundTrip(holder) == holder)
        // An empty keyed container stands in for it.
        #expect(try BinaryEncoder().encode(Nothing()) == [BinaryTag.keyed.rawValue, 0, 0, 0, 0])
    }

    @Test func manualNestedContainersAndOutOfOrderKeys() throws {
        let value = Manual(id: 12, point: (x: -3, y: 4), list: ["a", "bb", "ccc"])
        #expect(try roundTrip(value) == value)
    }

    @Test func wireFormatBasics() throws {
        let encoder = BinaryEncoder()
        #expect(try encoder.encode(1) == [BinaryTag.signed.rawValue, 2])
        #expect(try encoder.encode(-1) == [BinaryTag.signed.rawValue, 1])
        #expect(try encoder.encode(UInt(300)) == [BinaryTag.unsigned.rawValue, 0xAC, 0x02])
        #expect(try encoder.encode("hi") == [BinaryTag.string.rawValue, 2, 0x68, 0x69])
        struct One: Codable { var a: Bool }
        #expect(
            try encoder.encode(One(a: true))
                == [BinaryTag.keyed.rawValue, 3, 0, 0, 0, 1, 0x61, BinaryTag.true.rawValue])
        #expect(
            try encoder.encode([true, false] as [Bool])
                == [BinaryTag.unkeyed.rawValue, 2, 0, 0, 0, BinaryTag.true.rawValue, BinaryTag.false.rawValue])
    }

    @Test func appendingToAndDecodingFromASlice() throws {
        var frame: [UInt8] = [0xEE, 0xEE, 0xEE, 0xEE]
        try BinaryEncoder().encode(Person.sample, appendingTo: &frame)
        #expect(frame.prefix(4).allSatisfy { $0 == 0xEE })
        let decoded = try frame.withUnsafeBytes { raw in
            try BinaryDecoder().decode(Person.self, from: UnsafeRawBufferPointer(rebasing: raw[4...]))
        }
        #expect(decoded == Person.sample)

        // A failed encode leaves the caller's buffer untouched.
        struct Fails: Encodable {
            func encode(to encoder: any Encoder) throws {
                var container = encoder.unkeyedContainer()
                try container.encode(1)
                throw CancellationError()
            }
        }
        var untouched: [UInt8] = [1, 2, 3]
        #expect(throws: CancellationError.self) { try BinaryEncoder().encode(Fails(), appendingTo: &untouched) }
        #expect(untouched == [1, 2, 3])
    }

    @Test func everythingRoundTrips() throws {
        #expect(try roundTrip(Everything.sample) == Everything.sample)
    }

    // MARK: Errors

    @Test func everyTruncationThrows() throws {
        let bytes = try BinaryEncoder().encode(Everything.sample)
        for length in 0..<bytes.count {
            let error = decodeFailure(Everything.self, Array(bytes.prefix(length)))
            #expect(error != nil, "prefix of \(length) bytes did not throw a DecodingError")
        }
        let personBytes = try BinaryEncoder().encode(Person.sample)
        for length in 0..<personBytes.count {
            #expect(decodeFailure(Person.self, Array(personBytes.prefix(length))) != nil)
        }
        let truncated = message(decodeFailure(Person.self, Array(personBytes.prefix(3))))
        #expect(truncated.contains("truncated input") && truncated.contains("offset"), "\(truncated)")
    }

    @Test func randomGarbageNeverCrashes() throws {
        var generator = SplitMix64(state: 0xC0DE)
        let valid = try BinaryEncoder().encode(Everything.sample)
        var thrown = 0
        for round in 0..<4_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                // Pure noise, biased toward valid tags so parsing gets somewhere.
                let count = Int.random(in: 0...64, using: &generator)
                bytes = (0..<count).map { _ in
                    Bool.random(using: &generator)
                        ? UInt8.random(in: 0...0x0C, using: &generator) : UInt8.random(in: .min ... .max, using: &generator)
                }
            } else {
                // A valid encoding with a few corrupted bytes reaches deeper code.
                bytes = valid
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: .min ... .max, using: &generator)
                }
            }
            for attempt in 0..<4 {
                do {
                    switch attempt {
                    case 0: _ = try BinaryDecoder().decode(Everything.self, from: bytes)
                    case 1: _ = try BinaryDecoder().decode(NestedList.self, from: bytes)
                    case 2: _ = try BinaryDecoder().decode([String: [Int?]].self, from: bytes)
                    default: _ = try BinaryDecoder().decode(Shape.self, from: bytes)
                    }
                } catch is DecodingError {
                    thrown += 1
                } catch {
                    Issue.record("unexpected error type: \(error)")
                }
            }
        }
        #expect(thrown > 0)
    }

    @Test func wrongTypeIsTypeMismatch() throws {
        let bytes = try BinaryEncoder().encode(42)
        let error = decodeFailure(String.self, bytes)
        guard case .typeMismatch(let type, let context) = error else {
            Issue.record("expected typeMismatch, got \(String(describing: error))")
            return
        }
        #expect(type is String.Type)
        #expect(context.debugDescription.contains("expected a string"))

        struct Named: Codable { var name: String }
        struct NamedStruct: Codable { var name: Address }
        let named = try BinaryEncoder().encode(Named(name: "x"))
        let nestedError = decodeFailure(NamedStruct.self, named)
        guard case .typeMismatch(_, let nestedContext) = nestedError else {
            Issue.record("expected typeMismatch, got \(String(describing: nestedError))")
            return
        }
        #expect(path(nestedContext) == ["name"])
        #expect(
            nestedContext.debugDescription.hasPrefix("expected a keyed container for key 'name' but found a string at offset"),
            "\(nestedContext.debugDescription)")
    }

    @Test func stringArrayErrorsNameTheElement() throws {
        struct Flags: Codable { var tags: [Bool] }
        struct Labels: Codable { var tags: [String] }
        let bytes = try BinaryEncoder().encode(Flags(tags: [true, false]))
        let error = decodeFailure(Labels.self, bytes)
        guard case .typeMismatch(_, let context) = error else {
            Issue.record("expected typeMismatch, got \(String(describing: error))")
            return
        }
        #expect(path(context) == ["tags", "Index 0"])
        #expect(
            context.debugDescription.contains("expected a string at index 0 but found a boolean"),
            "\(context.debugDescription)")

        struct Numbers: Codable { var tags: [Int] }
        let packed = decodeFailure(Labels.self, try BinaryEncoder().encode(Numbers(tags: [1])))
        #expect(message(packed).contains("expected an unkeyed container for key 'tags' but found a packed Int array"))
    }

    @Test func missingKeyIsKeyNotFound() throws {
        struct Small: Codable { var street: String }
        let bytes = try BinaryEncoder().encode([Small(street: "s")])
        let error = decodeFailure([Address].self, bytes)
        guard case .keyNotFound(let key, let context) = error else {
            Issue.record("expected keyNotFound, got \(String(describing: error))")
            return
        }
        #expect(key.stringValue == "number")
        #expect(path(context) == ["Index 0"])
    }

    @Test func integerOverflowIsDataCorrupted() throws {
        struct Wide: Codable { var inner: [String: Int] }
        struct Narrow: Codable { var inner: [String: Int8] }
        let bytes = try BinaryEncoder().encode(Wide(inner: ["v": 300]))
        let error = decodeFailure(Narrow.self, bytes)
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(path(context) == ["inner", "v"])
        #expect(context.debugDescription.contains("300") && context.debugDescription.contains("Int8"))

        // Negative into unsigned, and a 128-bit value into 64 bits.
        #expect(decodeFailure(UInt.self, try BinaryEncoder().encode(-1)) != nil)
        #expect(decodeFailure(Int64.self, try BinaryEncoder().encode(Int128.max)) != nil)
        #expect(decodeFailure(Float.self, try BinaryEncoder().encode(1e300)) != nil)
    }

    @Test func hugeLengthClaimsAreRejected() throws {
        // A string claiming 2^60 bytes.
        var bytes: [UInt8] = [BinaryTag.string.rawValue]
        BinaryFormat.appendVarint(UInt64(1) << 60, to: &bytes)
        bytes += [0x41, 0x42]
        let stringMessage = message(decodeFailure(String.self, bytes))
        #expect(stringMessage.contains("claims 1152921504606846976 bytes"), "\(stringMessage)")

        // The same for packed arrays and byte buffers.
        var ints: [UInt8] = [BinaryTag.int64Array.rawValue]
        BinaryFormat.appendVarint(UInt64.max >> 4, to: &ints)
        #expect(decodeFailure([Int].self, ints) != nil)
        var blob: [UInt8] = [BinaryTag.bytes.rawValue]
        BinaryFormat.appendVarint(UInt64.max, to: &blob)
        #expect(decodeFailure(Data.self, blob) != nil)

        // A container whose length runs past the input.
        let container: [UInt8] = [BinaryTag.keyed.rawValue, 0xFF, 0xFF, 0xFF, 0x7F, 1, 0x61]
        let containerMessage = message(decodeFailure(Address.self, container))
        #expect(containerMessage.contains("claims 2147483647 bytes"), "\(containerMessage)")
    }

    @Test func malformedInputMessages() throws {
        #expect(message(decodeFailure(Int.self, [0x7F])) == "unknown tag 0x7f at offset 0")
        #expect(message(decodeFailure(Int.self, [BinaryTag.signed.rawValue, 2, 0])).contains("trailing bytes"))

        let overlong = [BinaryTag.unsigned.rawValue] + [UInt8](repeating: 0xFF, count: 30)
        #expect(decodeFailure(UInt64.self, overlong) != nil)

        let badUTF8: [UInt8] = [BinaryTag.string.rawValue, 2, 0xC3, 0x28]
        #expect(message(decodeFailure(String.self, badUTF8)).contains("invalid UTF-8"))

        // Container contents that overrun: an unkeyed container holding a truncated element.
        let overrun: [UInt8] = [BinaryTag.unkeyed.rawValue, 2, 0, 0, 0, BinaryTag.float64.rawValue, 0]
        #expect(decodeFailure([Double?].self, overrun) != nil)
    }

    @Test func excessiveNestingThrows() throws {
        // Decoding: 600 nested unkeyed containers, built by hand.
        let depth = 600
        var bytes: [UInt8] = [BinaryTag.signed.rawValue, 2]
        for _ in 0..<depth {
            let length = UInt32(bytes.count)
            bytes = [BinaryTag.unkeyed.rawValue] + withUnsafeBytes(of: length.littleEndian, Array.init) + bytes
        }
        let nestingMessage = message(decodeFailure(NestedList.self, bytes))
        #expect(nestingMessage.contains("nesting deeper than"), "\(nestingMessage)")

        // Encoding.
        #expect(throws: EncodingError.self) { try BinaryEncoder().encode(NestedList.nested(depth: depth)) }
        // Just under the limit still works.
        let limit = NestedList.nested(depth: BinaryFormat.maxDepth - 1)
        #expect(try roundTrip(limit) == limit)
    }

    @Test func containerMisuseThrowsInsteadOfCorrupting() throws {
        /// Writes to a nested container after its parent moved on, which a streaming encoder cannot honor.
        struct Interleaved: Encodable {
            enum Keys: String, CodingKey { case a, b }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: Keys.self)
                var nested = container.nestedUnkeyedContainer(forKey: .a)
                try container.encode(1, forKey: .b)
                try nested.encode(2)
            }
        }
        #expect(throws: EncodingError.self) { try BinaryEncoder().encode(Interleaved()) }

        /// Asks for two different kinds of container.
        struct Conflicting: Encodable {
            enum Keys: String, CodingKey { case a }
            func encode(to encoder: any Encoder) throws {
                var keyed = encoder.container(keyedBy: Keys.self)
                try keyed.encode(1, forKey: .a)
                var unkeyed = encoder.unkeyedContainer()
                try? unkeyed.encode(2)
            }
        }
        #expect(throws: EncodingError.self) { try BinaryEncoder().encode(Conflicting()) }
    }

    @Test func concurrentUse() async throws {
        let encoder = BinaryEncoder()
        let decoder = BinaryDecoder()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                group.addTask {
                    var person = Person.sample
                    person.name = "worker \(index)"
                    for _ in 0..<50 {
                        let bytes = try encoder.encode(person)
                        guard try decoder.decode(Person.self, from: bytes) == person else { return false }
                    }
                    return true
                }
            }
            for try await ok in group { #expect(ok) }
        }
    }
}
