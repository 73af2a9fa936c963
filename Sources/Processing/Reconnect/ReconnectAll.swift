/// Reconnects every `Reconnector` placeholder in `value` (its stored properties, and theirs,
/// through optionals, collections and enums) that is not connected, in property order, and
/// returns how many it reconnected.
///
/// Each gets the password `auth[typeName][propertyName]`, else `auth[typeName]["*"]`, else
/// nil; `typeName` is the reconnector's full type name (`"MyModule.Vault"`) or its plain
/// name (`"Vault"`), and `propertyName` the stored property that holds it.
///
/// Throws `ProcessingError` (`.reconnectFailed`) naming the property, the type and the
/// credential key that was used (never the password) when a reconnect fails.
@discardableResult
public func reconnectAll<Value>(_ value: Value, auth: ReconnectCredentials = [:]) async throws -> Int {
    var search = ReconnectorSearch()
    search.visit(value, property: nil, path: "")
    for found in search.found {
        let key = ReconnectorSearch.credentialKey(for: found, in: auth)
        do {
            try await found.reconnector.reconnect(password: key.flatMap { auth[$0.type]?[$0.property] })
        } catch {
            let used = key.map { "the password at auth[\"\($0.type)\"][\"\($0.property)\"]" }
                ?? "no password (auth has no entry for \"\(found.typeName)\" with \"\(found.property ?? "*")\" or \"*\")"
            throw ProcessingError(.reconnectFailed, """
                could not reconnect \(found.path.isEmpty ? "the value" : "`\(found.path)`") (\(found.typeName)) with \(used): \
                \(error)
                """)
        }
    }
    return search.found.count
}

/// Finds the reconnectors in a value with `Mirror`.
struct ReconnectorSearch {
    struct Found {
        let reconnector: any Reconnector
        /// The stored property that holds it (its nearest named one), for the credentials.
        let property: String?
        /// Where it is, for messages (`clients[1]`).
        let path: String
        var typeName: String { String(reflecting: type(of: reconnector)) }
    }

    private(set) var found: [Found] = []
    private var visited: Set<ObjectIdentifier> = []

    mutating func visit(_ value: Any, property: String?, path: String) {
        if let reconnector = value as? any Reconnector {
            guard visited.insert(ObjectIdentifier(reconnector)).inserted else { return }
            if !reconnector.isConnected { found.append(Found(reconnector: reconnector, property: property, path: path)) }
            return
        }
        if Self.isLeaf(value) { return }
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .class {
            guard visited.insert(ObjectIdentifier(value as AnyObject)).inserted else { return }
        }
        visitChildren(of: mirror, property: property, path: path)
    }

    private mutating func visitChildren(of mirror: Mirror, property: String?, path: String) {
        // An enum's payload belongs to the property that holds the enum.
        let named = mirror.displayStyle == .struct || mirror.displayStyle == .class
        for (index, child) in mirror.children.enumerated() {
            switch mirror.displayStyle {
            case .optional:
                visit(child.value, property: property, path: path)
            case .collection, .set, .dictionary, .tuple:
                visit(child.value, property: property, path: "\(path)[\(child.label.map { $0.hasPrefix(".") ? "\(index)" : $0 } ?? "\(index)")]")
            default:
                let label = child.label ?? "\(index)"
                visit(child.value, property: named ? label : property, path: path.isEmpty ? label : "\(path).\(label)")
            }
        }
        if let superclass = mirror.superclassMirror { visitChildren(of: superclass, property: property, path: path) }
    }

    /// Values with no reconnector inside, skipped without reflecting their elements.
    private static func isLeaf(_ value: Any) -> Bool {
        switch value {
        case is String, is Substring, is Bool, is Int, is Int8, is Int16, is Int32, is Int64,
             is UInt, is UInt8, is UInt16, is UInt32, is UInt64, is Float, is Double, is Duration,
             is [UInt8], is [Int], is [Double], is [String], is ProcessConfig:
            true
        default:
            false
        }
    }

    /// The credentials entry for `found`: its type key, and the property key (its own name,
    /// or `"*"`); nil when there is none.
    static func credentialKey(for found: Found, in auth: ReconnectCredentials) -> (type: String, property: String)? {
        let full = found.typeName
        let plain = String(describing: type(of: found.reconnector))
        for typeKey in [full, plain] {
            guard let passwords = auth[typeKey] else { continue }
            if let property = found.property, passwords[property] != nil { return (typeKey, property) }
            if passwords["*"] != nil { return (typeKey, "*") }
        }
        return nil
    }
}
