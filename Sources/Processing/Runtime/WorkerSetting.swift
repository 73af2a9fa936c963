#if canImport(Glibc)
import Glibc
#endif

/// What a local worker inherits from this process when it is spawned: the environment, the
/// working directory and the message size limit. A spare worker was spawned with the setting
/// of its moment; it stands in for a fresh spawn only while the setting is still the same.
struct WorkerSetting: Equatable, Sendable {
    /// The environment as `environ` held it: each `NAME=value` entry followed by a 0 byte. Kept
    /// as bytes, not a dictionary: every start with spares compares it, and building
    /// Foundation's dictionary costs more than the comparison (25 µs for 35 variables).
    var environmentBlock: [UInt8]
    var directory: String
    var messageLimit: Int

    /// This process's setting now.
    static func current() -> WorkerSetting {
        WorkerSetting(environmentBlock: Syscall.environmentBlock(), directory: Syscall.currentDirectory(),
                      messageLimit: ProcessingLimits.maximumMessageSize)
    }

    /// The environment's entries (`NAME=value`), in `environ`'s order.
    var environment: [String] {
        environmentBlock.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
    }
}
