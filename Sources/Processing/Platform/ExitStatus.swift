/// How a reaped child ended.
enum ExitStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
    /// It ended, but its status was gone: this program ignores SIGCHLD (the kernel then
    /// discards children's statuses), or something else reaped it.
    case unavailable
}
