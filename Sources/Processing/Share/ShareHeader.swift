import CProcessingShims

/// Typed access to the header page's fields.
struct ShareHeader {
    let base: UnsafeMutableRawPointer

    var magic: UInt64 { base.load(fromByteOffset: ShareLayout.magicOffset, as: UInt64.self) }
    var token: UInt64 { base.load(fromByteOffset: ShareLayout.tokenOffset, as: UInt64.self) }
    var initialLength: Int { Int(base.load(fromByteOffset: ShareLayout.initialLengthOffset, as: UInt64.self)) }
    var slotsStart: Int { Int(base.load(fromByteOffset: ShareLayout.slotsStartOffset, as: UInt64.self)) }

    /// Written once by the creator, before any other process can see the memory.
    func initialize(token: UInt64, initialLength: Int, slotsStart: Int) {
        base.storeBytes(of: ShareLayout.magic, toByteOffset: ShareLayout.magicOffset, as: UInt64.self)
        base.storeBytes(of: token, toByteOffset: ShareLayout.tokenOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(initialLength), toByteOffset: ShareLayout.initialLengthOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(slotsStart), toByteOffset: ShareLayout.slotsStartOffset, as: UInt64.self)
    }

    /// Changed under the mutex; read without it by `isRunning`.
    var stopped: Bool {
        get { processing_atomic_load_u32(base + ShareLayout.stoppedOffset) != 0 }
        nonmutating set { processing_atomic_store_u32(base + ShareLayout.stoppedOffset, newValue ? 1 : 0) }
    }

    /// How many times a process found the lock's owner dead (it died inside a read or an
    /// update). Changed under the mutex.
    var recoveries: UInt64 {
        get { processing_atomic_load_u64(base + ShareLayout.recoveriesOffset) }
        nonmutating set { processing_atomic_store_u64(base + ShareLayout.recoveriesOffset, newValue) }
    }

    /// The published state. Stored with release order after the slot it names is written, so a
    /// process killed before this store leaves the previous state published.
    var descriptor: ShareDescriptor {
        get { ShareDescriptor(raw: processing_atomic_load_u64(base + ShareLayout.descriptorOffset)) }
        nonmutating set { processing_atomic_store_u64(base + ShareLayout.descriptorOffset, newValue.raw) }
    }
}
