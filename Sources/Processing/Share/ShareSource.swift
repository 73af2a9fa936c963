/// Where a process can find a share's memfd: a process that holds it, and that process's fd
/// number for it. Another process opens it as `/proc/<pid>/fd/<fd>`.
struct ShareSource: Sendable, Equatable, CustomStringConvertible {
    var pid: Int32
    var fd: Int32

    var description: String { "/proc/\(pid)/fd/\(fd)" }
}
