/// Where things live in a share's shared memory. `ShareStorage` describes the protocol that uses them.
///
/// ```
/// file offset 0           header page: magic, token, initial length, slots start, stopped
///                         flag, the descriptor word, a count of recovered locks, the robust mutex
/// file offset headerSize  data region: [initial state's encoding][slot 0][slot 1]
/// a slot                  [generation: UInt64][encoding ...]
/// ```
///
/// The header page is mapped on its own and never moved while mapped: the mutex in it sits on
/// the robust list of whichever thread holds it, by address. The data region is mapped
/// separately and remapped when the slots grow. The file only ever grows (it is sealed against
/// shrinking), so no mapping can fault past its end.
enum ShareLayout {
    /// "PRSHARE1", little-endian: the layout's version is its last byte.
    static let magic: UInt64 = 0x3145_5241_4853_5250
    /// The shared memory's name (what `Syscall.sharedMemoryLink` checks).
    static let memoryName = "processing-share"

    /// The header's size: one page, so that the data region starts page-aligned.
    static let headerSize = max(4096, Syscall.pageSize())

    static let magicOffset = 0
    static let tokenOffset = 8
    static let initialLengthOffset = 16
    static let slotsStartOffset = 24
    static let stoppedOffset = 32
    static let descriptorOffset = 40
    static let recoveriesOffset = 48
    static let mutexOffset = 64

    /// Slots and the slots' start are multiples of this (a cache line; keeps the generation aligned).
    static let alignment = 64
    /// The generation that starts each slot.
    static let slotHeaderSize = 8
    /// The smallest slot.
    static let minimumSlotSize = 256

    static func roundUp(_ value: Int, to multiple: Int = alignment) -> Int {
        (value + multiple - 1) / multiple * multiple
    }
}
