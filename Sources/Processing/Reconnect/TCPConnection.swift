import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP client connection that reconnects in the process it crosses into: it crosses as its
/// host and port, and `reconnect` (or `reconnectAll`, or a process's `autoreconnect`)
/// connects again there.
///
/// ```swift
/// let connection = try await TCPConnection(host: "127.0.0.1", port: 6379)
/// try await connection.send("PING\n")
/// let reply = try await connection.receiveLine()
/// ```
///
/// All I/O is `async` and waits without blocking a thread. One reader and one writer may
/// run at once. Reading or writing a placeholder that was not reconnected throws
/// `ProcessingError` (`.notConnected`). TCP itself has no password: a service that wants
/// one wraps the connection in a `Reconnector` of its own that logs in (see `Reconnector`).
public final class TCPConnection: Reconnector {
    /// The host it connects to (a name or an address).
    public let host: String
    /// The port it connects to.
    public let port: UInt16

    private struct State {
        var fd: Int32?
        /// Bytes read past the last line `receiveLine` returned.
        var buffered: [UInt8] = []
    }

    private let state = Mutex(State())

    /// Connects to `host`:`port`.
    public init(host: String, port: UInt16) async throws {
        self.host = host
        self.port = port
        try await reconnect(password: nil)
    }

    private enum CodingKeys: String, CodingKey { case host, port }

    /// Decodes a placeholder: the host and port, not connected.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decode(String.self, forKey: .host)
        port = try container.decode(UInt16.self, forKey: .port)
    }

    /// Encodes the host and port (the connection itself stays in this process).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(host, forKey: .host)
        try container.encode(port, forKey: .port)
    }

    deinit { close() }

    /// Whether the connection is open in this process.
    public var isConnected: Bool { state.withLock { $0.fd != nil } }

    /// Connects again to `host`:`port` (closing the connection it had, if any). `password`
    /// is not used: plain TCP has none.
    public func reconnect(password: String?) async throws {
        close()
        let addresses = try await resolve()
        var lastError: any Error = ProcessingError(.reconnectFailed, "\(host) has no address to connect to")
        for address in addresses {
            do {
                let fd = try Syscall.tcpSocket(family: address.family)
                do {
                    if try !Syscall.connect(fd, to: address) {
                        try await Reactor.shared.waitUntilReady(fd, writable: true)
                        let error = Syscall.pendingSocketError(fd)
                        if error != 0 { throw SystemError(call: "connect", errno: error) }
                    }
                } catch {
                    Syscall.close(fd)
                    throw error
                }
                state.withLock { $0 = State(fd: fd) }
                return
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = error
            }
        }
        throw ProcessingError(.reconnectFailed, "could not connect to \(host):\(port): \(lastError)")
    }

    private func resolve() async throws -> [SocketAddress] {
        let (host, port) = (host, port)
        // getaddrinfo blocks (DNS): not on the cooperative pool.
        let result = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Syscall.resolveStream(host: host, port: port)) }
        }
        switch result {
        case .success(let addresses): return addresses
        case .failure(let error): throw ProcessingError(.reconnectFailed, "could not resolve \(host): \(error.reason)")
        }
    }

    /// Closes the connection; a placeholder again until `reconnect`.
    public func close() {
        let fd = state.withLock { state in
            defer { state = State() }
            return state.fd
        }
        if let fd { Syscall.close(fd) }
    }

    private func connectedFD(_ operation: String) throws -> Int32 {
        guard let fd = state.withLock({ $0.fd }) else {
            throw ProcessingError(.notConnected, """
                \(operation) on TCPConnection to \(host):\(port), which is not connected: it crossed into this process \
                as a placeholder (or was closed). Call reconnectAll(_:auth:) on the value that holds it, or give the \
                process `static let autoreconnect = Autoreconnect()`.
                """)
        }
        return fd
    }

    /// Sends all of `bytes`.
    public func send(_ bytes: [UInt8]) async throws {
        let fd = try connectedFD("send")
        var offset = 0
        while offset < bytes.count {
            let result = try bytes.withUnsafeBytes { buffer throws(SystemError) in
                try Syscall.send(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...]))
            }
            switch result {
            case .transferred(let count): offset += count
            case .wouldBlock: try await Reactor.shared.waitUntilReady(fd, writable: true)
            case .endOfFile: throw ProcessingError(.channelClosed, "\(host):\(port) closed the connection")
            }
        }
    }

    /// Sends `text` as UTF-8.
    public func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Up to `maximum` bytes, as soon as some arrive; empty when the server closed the
    /// connection.
    public func receive(upTo maximum: Int = 64 * 1024) async throws -> [UInt8] {
        let buffered = state.withLock { state in
            defer { state.buffered.removeAll() }
            return state.buffered
        }
        if !buffered.isEmpty { return buffered }
        return try await readSocket(upTo: maximum)
    }

    private func readSocket(upTo maximum: Int) async throws -> [UInt8] {
        let fd = try connectedFD("receive")
        var bytes = [UInt8](repeating: 0, count: max(1, maximum))
        while true {
            let result = try bytes.withUnsafeMutableBytes { buffer throws(SystemError) in try Syscall.read(fd, into: buffer) }
            switch result {
            case .transferred(let count): return Array(bytes[..<count])
            case .endOfFile: return []
            case .wouldBlock: try await Reactor.shared.waitUntilReady(fd, writable: false)
            }
        }
    }

    /// The next line (without its `\n` or `\r\n`); nil when the server closed the connection
    /// before a whole line came.
    public func receiveLine() async throws -> String? {
        while true {
            let line: [UInt8]? = state.withLock { state in
                guard let end = state.buffered.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                var line = Array(state.buffered[..<end])
                state.buffered.removeFirst(end + 1)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return line
            }
            if let line { return String(decoding: line, as: UTF8.self) }
            let more = try await readSocket(upTo: 64 * 1024)
            if more.isEmpty { return nil }
            state.withLock { $0.buffered.append(contentsOf: more) }
        }
    }
}
