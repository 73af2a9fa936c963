#if canImport(Glibc)
import Glibc
#endif
import CProcessingShims

extension Syscall {
    /// The stream addresses of `host`:`port`, or `getaddrinfo`'s reason. Blocks (DNS): call it
    /// off the cooperative pool.
    static func resolveStream(host: String, port: UInt16) -> Result<[SocketAddress], ResolveError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, String(port), &hints, &list)
        guard code == 0 else { return .failure(ResolveError(reason: String(cString: gai_strerror(code)))) }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let info = entry?.pointee {
            if let address = info.ai_addr {
                let bytes = UnsafeRawBufferPointer(start: address, count: Int(info.ai_addrlen))
                addresses.append(SocketAddress(family: info.ai_family, bytes: Array(bytes)))
            }
            entry = info.ai_next
        }
        return .success(addresses)
    }

    /// Why a host name did not resolve.
    struct ResolveError: Error {
        let reason: String
    }

    /// Starts connecting `fd`; true when connected already, false while in progress (wait
    /// until writable, then read `pendingSocketError`).
    static func connect(_ fd: Int32, to address: SocketAddress) throws(SystemError) -> Bool {
        let result = address.bytes.withUnsafeBytes { bytes in
            Glibc.connect(fd, bytes.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count))
        }
        if result == 0 { return true }
        if Glibc.errno == EINPROGRESS || Glibc.errno == EINTR { return false }
        throw SystemError(call: "connect", errno: Glibc.errno)
    }

    /// The error a nonblocking connect ended with (0: connected).
    static func pendingSocketError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return Glibc.errno }
        return error
    }

    /// Opens a file, close-on-exec.
    static func openFile(_ path: String, flags: Int32, permissions: mode_t = 0o644) throws(SystemError) -> Int32 {
        try descriptor("open") { Glibc.open(path, flags | O_CLOEXEC, permissions) }
    }

    /// Moves a file's offset; returns the new one.
    @discardableResult
    static func seek(_ fd: Int32, to offset: Int, from whence: Int32) throws(SystemError) -> Int {
        while true {
            let result = lseek(fd, off_t(offset), whence)
            if result >= 0 { return Int(result) }
            if Glibc.errno == EINTR { continue }
            throw SystemError(call: "lseek", errno: Glibc.errno)
        }
    }

    /// Writes all of `buffer` to a file (blocking).
    static func writeFile(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < buffer.count {
            let count = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if count >= 0 {
                offset += count
            } else if Glibc.errno != EINTR {
                throw SystemError(call: "write", errno: Glibc.errno)
            }
        }
    }
}
