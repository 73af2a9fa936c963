#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims

/// A failed system call: which call, and the errno it left.
struct SystemError: Error, CustomStringConvertible, Sendable {
    let call: String
    let errno: Int32

    var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))" + (remedy.map { "; \($0)" } ?? "")
    }

    /// What to do about errors a user can fix (running out of descriptors, of processes).
    var remedy: String? {
        switch errno {
        case EMFILE:
            "this process has as many files open as its limit allows (RLIMIT_NOFILE; each running child holds 4): raise it with `ulimit -n`, or run fewer processes at once"
        case ENFILE:
            "the system has as many files open as it allows (fs.file-max): close some, or raise the limit"
        case EAGAIN where call.hasPrefix("posix_spawn"):
            "the user's process limit is reached (RLIMIT_NPROC, `ulimit -u`): raise it, or run fewer processes at once"
        default:
            nil
        }
    }
}
