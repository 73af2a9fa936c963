import Synchronization

/// A share's storage, whatever its state type (what the registry keeps).
protocol AnyShareStorage: AnyObject, Sendable {}

/// The shares this process has mapped, by token, so that decoding a share this process already
/// holds (a copy in a work value, a share that came back in a result) reuses its mapping
/// instead of opening the memory again. Entries are weak: the registry keeps nothing alive.
enum ShareRegistry {
    private struct Entry {
        weak var storage: (any AnyShareStorage)?
        let id: ObjectIdentifier
    }

    private static let entries = Mutex<[UInt64: Entry]>([:])

    /// The live storage for `token`, if this process has one.
    static func storage(for token: UInt64) -> (any AnyShareStorage)? {
        entries.withLock { $0[token]?.storage }
    }

    /// Registers `storage` under `token`, unless a live one is already there: returns the one to use.
    static func register(_ storage: any AnyShareStorage, token: UInt64) -> any AnyShareStorage {
        entries.withLock { entries in
            if let existing = entries[token]?.storage { return existing }
            entries[token] = Entry(storage: storage, id: ObjectIdentifier(storage))
            return storage
        }
    }

    /// Forgets `token` if it still names the storage with `id` (called from its deinit).
    static func remove(token: UInt64, id: ObjectIdentifier) {
        entries.withLock { entries in
            if entries[token]?.id == id { entries[token] = nil }
        }
    }
}
