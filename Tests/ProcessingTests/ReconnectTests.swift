import Foundation
import Synchronization
import Testing
@testable import Processing

// MARK: - A small loopback service that wants a password

/// The service's users and their passwords. The child reads them from its own copy of this
/// program (through `autoreconnect`), never from a frame.
let vaultPasswords = ["app": "s3cret-A-7f3c91", "auditor": "s3cret-B-91d2e4"]

/// A line protocol on 127.0.0.1: `AUTH <user> <password>` answers `OK` or `DENIED` (and
/// closes); after `OK`, `PING <text>` answers `PONG <text> as <user>`. One thread accepts and
/// one serves each connection (blocking calls, on threads of their own).
/// A TCP socket listening on 127.0.0.1 at a port the kernel chose.
func listenOnLoopback() throws -> (fd: Int32, port: UInt16) {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(listener, address, length) == 0 && Glibc.listen(listener, 16) == 0
                && getsockname(listener, address, &length) == 0
        }
    }
    guard bound else {
        close(listener)
        throw POSIXError(.EADDRNOTAVAIL)
    }
    return (listener, UInt16(bigEndian: address.sin_port))
}

final class VaultServer: Sendable {
    /// Logins, refusals and the sessions still open.
    final class Counts: Sendable {
        let state = TestMutex((accepted: 0, denied: 0, open: [Int32]()))
    }

    let port: UInt16
    private let listener: Int32
    private let counts = Counts()

    var denied: Int { counts.state.withLock { $0.denied } }
    var accepted: Int { counts.state.withLock { $0.accepted } }

    init(passwords: [String: String] = vaultPasswords) throws {
        let (listener, port) = try listenOnLoopback()
        self.listener = listener
        self.port = port
        let counts = counts
        let acceptor = Thread {
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }  // shut down
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                counts.state.withLock { $0.open.append(client) }
                let session = Thread { VaultServer.serve(client, passwords: passwords, counts: counts) }
                session.start()
            }
        }
        acceptor.start()
    }

    private static func serve(_ client: Int32, passwords: [String: String], counts: Counts) {
        var pending: [UInt8] = []
        var user: String?
        func reply(_ line: String) { _ = line.utf8CString.withUnsafeBytes { write(client, $0.baseAddress, $0.count - 1) } }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(client, &buffer, buffer.count)
            guard count > 0 else { break }
            pending.append(contentsOf: buffer[..<count])
            while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let words = String(decoding: pending[..<end], as: UTF8.self).split(separator: " ").map(String.init)
                pending.removeFirst(end + 1)
                if let current = user, words.first == "PING" {
                    reply("PONG \(words.dropFirst().joined(separator: " ")) as \(current)\n")
                } else if words.count == 3, words[0] == "AUTH", passwords[words[1]] == words[2] {
                    user = words[1]
                    counts.state.withLock { $0.accepted += 1 }
                    reply("OK\n")
                } else {
                    counts.state.withLock { $0.denied += 1 }
                    reply("DENIED\n")
                    shutdown(client, Int32(SHUT_RDWR))
                }
            }
        }
        counts.state.withLock { state in
            state.open.removeAll { $0 == client }
        }
        close(client)
    }

    /// Stops accepting and ends every session.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for client in counts.state.withLock({ $0.open }) { shutdown(client, Int32(SHUT_RDWR)) }
    }
}

/// Why the vault refused.
enum VaultError: Error, Codable {
    case noPassword
    case refused(user: String)
}

/// A client of the vault: a `TCPConnection` plus the login the service wants. It crosses as
/// its connection's host and port and its user name; the password comes from the
/// credentials in the process it lands in.
final class VaultClient: Reconnector {
    let connection: TCPConnection
    let user: String

    init(port: UInt16, user: String, password: String) async throws {
        connection = try await TCPConnection(host: "127.0.0.1", port: port)
        self.user = user
        try await logIn(password: password)
    }

    var isConnected: Bool { connection.isConnected }

    func reconnect(password: String?) async throws {
        guard let password else { throw VaultError.noPassword }
        try await connection.reconnect(password: nil)
        try await logIn(password: password)
    }

    private func logIn(password: String) async throws {
        try await connection.send("AUTH \(user) \(password)\n")
        guard try await connection.receiveLine() == "OK" else {
            connection.close()
            throw VaultError.refused(user: user)
        }
    }

    func ping(_ text: String) async throws -> String? {
        try await connection.send("PING \(text)\n")
        return try await connection.receiveLine()
    }
}

// MARK: - Processes

/// Two vault clients; `main` gets the `"*"` password, `audit` its own by property name.
struct VaultReader: Skprocess {
    static let autoreconnect = Autoreconnect([
        "ProcessingTests.VaultClient": ["*": vaultPasswords["app"]!, "audit": vaultPasswords["auditor"]!],
    ])
    var main: VaultClient
    var audit: VaultClient
    var processConfig = ProcessConfig(runs: 1)
    var replies: [String] = []
    mutating func run() async throws {
        replies.append(try await main.ping("from the child") ?? "closed")
        replies.append(try await audit.ping("from the child") ?? "closed")
    }
    func result() async throws -> [String] { replies }
}

/// Credentials with the wrong password for `main`; lives 3, so three children try.
struct WrongPasswordReader: Skprocess {
    static let autoreconnect = Autoreconnect(["VaultClient": ["*": "not-the-password"]])
    var main: VaultClient
    var processConfig = ProcessConfig(runs: 1, lives: 3)
    var ran = false
    mutating func run() async throws { ran = true }
    func result() async throws -> Bool { ran }
}

/// No autoreconnect: uses its client as it crossed, a placeholder.
struct PlaceholderUser: Skprocess {
    var main: VaultClient
    var processConfig = ProcessConfig(runs: 1)
    mutating func run() async throws { _ = try await main.connection.send("PING\n") }
}

/// Reconnects by hand in `prerun`, with a password it reads from its environment.
struct ManualReconnect: Skprocess {
    var clients: [VaultClient?]
    var processConfig = ProcessConfig(runs: 1)
    var reconnected = 0
    var replies: [String] = []
    mutating func prerun() async throws {
        let password = ProcessInfo.processInfo.environment["HOME"] != nil ? vaultPasswords["app"]! : ""
        reconnected = try await reconnectAll(self, auth: ["VaultClient": ["*": password]])
    }
    mutating func run() async throws {
        for case let client? in clients { replies.append(try await client.ping("by hand") ?? "closed") }
    }
    func result() async throws -> [String] { ["\(reconnected)"] + replies }
}

/// Reads `chunk` bytes of its file per run; its first life crashes in run 1, after reading.
struct FileChunks: Skprocess {
    static let autoreconnect = Autoreconnect()
    var file: OpenFile
    var marker: String
    var chunk = 2
    var processConfig = ProcessConfig(runs: 3, lives: 2)
    var got = ""
    mutating func run() async throws {
        got += String(decoding: try file.read(upTo: chunk), as: UTF8.self)
        if currentRun == 1, !FileManager.default.fileExists(atPath: marker) {
            _ = FileManager.default.createFile(atPath: marker, contents: nil)
            abort()
        }
    }
    func result() async throws -> String { got }
}

// MARK: - Tests

@Suite("Reconnectors and autoreconnect", .timeLimit(.minutes(2)))
struct ReconnectTests {
    @Test("clients cross into a child and log in there with passwords by type, \"*\" and property name; no frame holds a password",
          .enabled(if: FrameTap.isAvailable, "frames are recorded in debug builds only"))
    func autoreconnectWithCredentials() async throws {
        let server = try VaultServer()
        defer { server.stop() }
        let main = try await VaultClient(port: server.port, user: "app", password: vaultPasswords["app"]!)
        let audit = try await VaultClient(port: server.port, user: "auditor", password: vaultPasswords["auditor"]!)
        let (replies, frames) = try await FrameTap.recording {
            try await VaultReader(main: main, audit: audit).start().result()
        }
        #expect(replies == ["PONG from the child as app", "PONG from the child as auditor"])
        #expect(server.accepted == 4)  // two logins here, two in the child
        // The parent's clients still work: the child connected on its own.
        #expect(try await main.ping("here") == "PONG here as app")

        // The frames carried the connection parameters, and no password.
        // memchr and memcmp: the recording holds every frame of this process meanwhile, other
        // tests' bulk transfers included (hundreds of MiB); a compare at every offset in a
        // debug build took 45 s on a loaded machine.
        func contains(_ text: String) -> Bool {
            let needle = Array(text.utf8)
            return frames.withUnsafeBytes { haystack in
                needle.withUnsafeBytes { pattern in
                    guard let base = haystack.baseAddress, haystack.count >= pattern.count else { return false }
                    var offset = 0
                    while offset <= haystack.count - pattern.count {
                        guard let hit = memchr(base + offset, Int32(needle[0]), haystack.count - pattern.count + 1 - offset) else {
                            return false
                        }
                        let at = base.distance(to: UnsafeRawPointer(hit))
                        if memcmp(base + at, pattern.baseAddress!, pattern.count) == 0 { return true }
                        offset = at + 1
                    }
                    return false
                }
            }
        }
        #expect(contains("auditor") && contains("127.0.0.1"))
        for password in vaultPasswords.values { #expect(!contains(password), "a frame held a password") }
    }

    @Test("a connection's reader and writer wait at once: a send blocked behind a pending receive waits, it does not fail")
    func readerAndWriterAtOnce() async throws {
        // A server that accepts and never reads, so that a large send must wait for space.
        let (listener, port) = try listenOnLoopback()
        defer { close(listener) }
        let accepted = Synchronization.Mutex<Int32>(-1)
        Thread { let fd = accept(listener, nil, nil); accepted.withLock { $0 = fd } }.start()
        defer { accepted.withLock { if $0 >= 0 { close($0) } } }

        let connection = try await TCPConnection(host: "127.0.0.1", port: port)
        let reader = Task { try await connection.receive() }
        defer { reader.cancel() }
        try await Task.sleep(for: .milliseconds(100))  // the receive waits by now (if not, the test is weaker, not wrong)
        let sent = try await outcome(within: .seconds(2)) { try await connection.send([UInt8](repeating: 65, count: 64 << 20)) }
        if case .failure(let error)? = sent { Issue.record("the send failed instead of waiting: \(error)") }
        #expect(sent == nil, "64 MiB went to a peer that reads nothing")
    }

    @Test("a wrong password fails like prerun, with an error naming the property and key, once per life")
    func wrongPassword() async throws {
        let server = try VaultServer()
        defer { server.stop() }
        let main = try await VaultClient(port: server.port, user: "app", password: vaultPasswords["app"]!)
        let handle = try await WrongPasswordReader(main: main).start()
        let error = await expectError(PreRunError.self) { try await handle.result() }
        let message = error.map { String(describing: $0.underlying) } ?? ""
        #expect(message.contains("`main`") && message.contains("ProcessingTests.VaultClient"))
        #expect(message.contains("auth[\"VaultClient\"][\"*\"]") && message.contains("refused"))
        #expect(!message.contains("not-the-password"))
        #expect(server.denied == 3)  // lives: 3 children tried
    }

    @Test("a placeholder used without reconnecting says how to reconnect it")
    func placeholderUse() async throws {
        let server = try VaultServer()
        defer { server.stop() }
        let main = try await VaultClient(port: server.port, user: "app", password: vaultPasswords["app"]!)
        let error = await expectError(RunError.self) { try await PlaceholderUser(main: main).start().result() }
        let message = error.map { String(describing: $0.underlying) } ?? ""
        #expect(message.contains("not connected") && message.contains("autoreconnect"))
    }

    @Test("reconnectAll finds clients in optionals and arrays, and skips live ones")
    func reconnectAllByHand() async throws {
        let server = try VaultServer()
        defer { server.stop() }
        let first = try await VaultClient(port: server.port, user: "app", password: vaultPasswords["app"]!)
        let second = try await VaultClient(port: server.port, user: "app", password: vaultPasswords["app"]!)
        let replies = try await ManualReconnect(clients: [first, nil, second]).start().result()
        #expect(replies == ["2", "PONG by hand as app", "PONG by hand as app"])
        // Here both are live: nothing to do.
        #expect(try await reconnectAll(ManualReconnect(clients: [first, second]), auth: [:]) == 0)
    }

    @Test("an open file crosses at its offset, and a retried life reopens it at the checkpoint's")
    func openFileKeepsOffset() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("reconnect-\(UUID()).txt").path
        let marker = path + ".crashed"
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: marker) }
        try Data("xxabcdef".utf8).write(to: URL(fileURLWithPath: path))
        let file = try OpenFile(path: path)
        #expect(try file.read(upTo: 2) == Array("xx".utf8))
        let got = try await FileChunks(file: file, marker: marker).start().result()
        #expect(got == "abcdef")  // run 1 read "cd", crashed, and its retry read "cd" again
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(try file.offset == 2)  // the parent's file is its own
    }

    @Test("credentials: a property's password wins over \"*\", full type names over plain ones")
    func credentialLookup() async throws {
        let file = try OpenFile(path: "/dev/null")
        func key(_ property: String?, _ auth: ReconnectCredentials) -> String? {
            let found = ReconnectorSearch.Found(reconnector: file, property: property, path: property ?? "")
            return ReconnectorSearch.credentialKey(for: found, in: auth).map { "\($0.type)/\($0.property)" }
        }
        #expect(key("log", ["Processing.OpenFile": ["*": "a", "log": "b"]]) == "Processing.OpenFile/log")
        #expect(key("other", ["Processing.OpenFile": ["*": "a", "log": "b"]]) == "Processing.OpenFile/*")
        #expect(key("log", ["OpenFile": ["log": "b"], "Processing.OpenFile": ["*": "a"]]) == "Processing.OpenFile/*")
        #expect(key("log", ["OpenFile": ["log": "b"]]) == "OpenFile/log")
        #expect(key("log", ["Elsewhere.OpenFile": ["*": "a"]]) == nil)
    }
}
