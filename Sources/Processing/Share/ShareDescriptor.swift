/// The published state, packed in the one 64-bit word that an update stores atomically to
/// publish: which slot holds the state, how large both slots are, and the encoding's length.
///
/// Bits: 63 the slot; 35...62 the slot size in 64-byte units (up to 16 GiB); 0...34 the length.
struct ShareDescriptor: Equatable {
    /// 0 or 1.
    var slot: Int
    /// Bytes per slot, generation included; a multiple of 64.
    var slotSize: Int
    /// Bytes of encoding in the slot, after its generation.
    var length: Int

    static let maximumSlotSize = ((1 << 28) - 1) * ShareLayout.alignment
    private static let lengthMask: UInt64 = (1 << 35) - 1
    private static let unitsMask: UInt64 = (1 << 28) - 1

    init(slot: Int, slotSize: Int, length: Int) {
        self.slot = slot
        self.slotSize = slotSize
        self.length = length
    }

    init(raw: UInt64) {
        slot = Int(raw >> 63)
        slotSize = Int((raw >> 35) & Self.unitsMask) * ShareLayout.alignment
        length = Int(raw & Self.lengthMask)
    }

    var raw: UInt64 {
        UInt64(slot) << 63 | UInt64(slotSize / ShareLayout.alignment) << 35 | UInt64(length)
    }

    /// Where this descriptor's slot starts in the data region.
    func slotOffset(slotsStart: Int) -> Int { slotsStart + slot * slotSize }

    /// The data region's size this layout needs.
    func requiredDataLength(slotsStart: Int) -> Int { slotsStart + 2 * slotSize }
}
