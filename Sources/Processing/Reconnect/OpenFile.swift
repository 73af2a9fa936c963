import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An open file that reopens in the process it crosses into, at the offset it had: it crosses
/// as its path, mode and offset, and `reconnect` (or `reconnectAll`, or a process's
/// `autoreconnect`) opens it again there and seeks back.
///
/// ```swift
/// let log = try OpenFile(path: "/tmp/run.log", mode: .append, create: true)
/// try log.write("started\n")
/// ```
///
/// Reads and writes are plain blocking calls: regular files are always ready, so they do not
/// wait on other processes. Using a placeholder that was not reconnected throws
/// `ProcessingError` (`.notConnected`).
public final class OpenFile: Reconnector {
    /// How the file is opened.
    public enum Mode: String, Codable, Sendable {
        /// Reading only.
        case read
        /// Writing only, from the offset (the start when opened).
        case write
        /// Reading and writing.
        case readWrite
        /// Writing at the end, whatever the offset.
        case append

        var flags: Int32 {
            switch self {
            case .read: O_RDONLY
            case .write: O_WRONLY
            case .readWrite: O_RDWR
            case .append: O_WRONLY | O_APPEND
            }
        }
    }

    /// The file's path.
    public let path: String
    /// How it is opened.
    public let mode: Mode

    private struct State {
        var fd: Int32?
        /// The offset to seek to when it reopens (the offset it crossed with).
        var offset = 0
    }

    private let state: Mutex<State>

    /// Opens `path`; with `create`, a missing file is created (empty, mode 0644).
    public init(path: String, mode: Mode = .read, create: Bool = false) throws {
        self.path = path
        self.mode = mode
        let fd: Int32
        do {
            fd = try Syscall.openFile(path, flags: mode.flags | (create ? O_CREAT : 0))
        } catch {
            throw ProcessingError(.reconnectFailed, "could not open \(path): \(error)")
        }
        state = Mutex(State(fd: fd))
    }

    private enum CodingKeys: String, CodingKey { case path, mode, offset }

    /// Decodes a placeholder: the path, mode and offset, not open.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        path = try container.decode(String.self, forKey: .path)
        mode = try container.decode(Mode.self, forKey: .mode)
        state = Mutex(State(fd: nil, offset: try container.decode(Int.self, forKey: .offset)))
    }

    /// Encodes the path, mode and current offset (the descriptor stays in this process).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(mode, forKey: .mode)
        try container.encode(try offset, forKey: .offset)
    }

    deinit { close() }

    /// Whether the file is open in this process.
    public var isConnected: Bool { state.withLock { $0.fd != nil } }

    /// The offset the next read or write starts at.
    public var offset: Int {
        get throws {
            try state.withLock { state throws(SystemError) in
                guard let fd = state.fd else { return state.offset }
                return try Syscall.seek(fd, to: 0, from: SEEK_CUR)
            }
        }
    }

    /// Opens the file again and seeks to the offset it crossed with. `password` is not used.
    public func reconnect(password: String?) async throws {
        try state.withLock { state throws(ProcessingError) in
            if let fd = state.fd { Syscall.close(fd) }
            state.fd = nil
            do {
                let fd = try Syscall.openFile(path, flags: mode.flags)
                do {
                    try Syscall.seek(fd, to: state.offset, from: SEEK_SET)
                } catch {
                    Syscall.close(fd)
                    throw error
                }
                state.fd = fd
            } catch {
                throw ProcessingError(.reconnectFailed, "could not reopen \(path) at offset \(state.offset): \(error)")
            }
        }
    }

    /// Closes the file; a placeholder again (at the offset it had) until `reconnect`.
    public func close() {
        state.withLock { state in
            guard let fd = state.fd else { return }
            if let offset = try? Syscall.seek(fd, to: 0, from: SEEK_CUR) { state.offset = offset }
            Syscall.close(fd)
            state.fd = nil
        }
    }

    private func withFD<T>(_ operation: String, _ body: (Int32) throws -> T) throws -> T {
        try state.withLock { state throws(ProcessingError) in
            guard let fd = state.fd else {
                throw ProcessingError(.notConnected, """
                    \(operation) on OpenFile \(path), which is not open: it crossed into this process as a placeholder \
                    (or was closed). Call reconnectAll(_:auth:) on the value that holds it, or give the process \
                    `static let autoreconnect = Autoreconnect()`.
                    """)
            }
            do {
                return try body(fd)
            } catch {
                throw ProcessingError(.channelClosed, "\(operation) on \(path) failed: \(error)")
            }
        }
    }

    /// Up to `maximum` bytes from the offset; empty at the end of the file.
    public func read(upTo maximum: Int = 64 * 1024) throws -> [UInt8] {
        try withFD("read") { fd in
            var bytes = [UInt8](repeating: 0, count: max(1, maximum))
            let result = try bytes.withUnsafeMutableBytes { try Syscall.read(fd, into: $0) }
            guard case .transferred(let count) = result else { return [] }
            return Array(bytes[..<count])
        }
    }

    /// Writes all of `bytes` at the offset (at the end, in `.append` mode).
    public func write(_ bytes: [UInt8]) throws {
        try withFD("write") { fd in
            try bytes.withUnsafeBytes { try Syscall.writeFile(fd, $0) }
        }
    }

    /// Writes `text` as UTF-8.
    public func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Moves the offset to `offset` bytes from the start.
    public func seek(to offset: Int) throws {
        try withFD("seek") { fd in _ = try Syscall.seek(fd, to: offset, from: SEEK_SET) }
    }
}
