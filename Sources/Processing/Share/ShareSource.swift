/// Where a process can find a share's memory: a process that holds it, and that process's fd
/// number for it, through which another process opens it (`Syscall.processFilePath`).
struct ShareSource: Sendable, Equatable, CustomStringConvertible {
    var pid: Int32
    var fd: Int32

    var description: String { Syscall.processFilePath(pid: pid, fd: fd) }
}
