#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What a local worker inherits from this process when it is spawned: the environment, the
/// working directory and the message size limit. A spare worker was spawned with the setting
/// of its moment; it stands in for a fresh spawn only while the setting is still the same.
struct WorkerSetting: Equatable, Sendable {
    var environment: [String: String]
    var directory: String
    var messageLimit: Int

    /// This process's setting now.
    static func current() -> WorkerSetting {
        WorkerSetting(environment: ProcessInfo.processInfo.environment, directory: Syscall.currentDirectory(),
                      messageLimit: ProcessingLimits.maximumMessageSize)
    }
}
