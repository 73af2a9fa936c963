/// A live resource (a connection, an open file) that crosses into a child process as its
/// connection parameters and connects again there.
///
/// Encoding a reconnector writes what it needs to connect again (host, port, user, path,
/// offset), never a secret; decoding it gives a placeholder that is not connected. In the
/// child, `reconnectAll(_:auth:)`, or an `autoreconnect` setting on the process, finds every
/// placeholder in a value and calls `reconnect(password:)` with the password the credentials
/// name for it.
///
/// ```swift
/// final class Vault: Reconnector {
///     let connection: TCPConnection
///     let user: String
///     var isConnected: Bool { connection.isConnected }
///     func reconnect(password: String?) async throws {
///         try await connection.reconnect(password: nil)
///         try await connection.send("LOGIN \(user) \(password ?? "")\n")
///         guard try await connection.receiveLine() == "OK" else { throw VaultError.refused }
///     }
/// }
/// ```
///
/// Reconnectors are classes: a value that holds one shares it, so reconnecting it in place
/// reconnects it for every copy of the value.
public protocol Reconnector: AnyObject, Codable, Sendable {
    /// Whether the resource is live in this process (false for a placeholder that crossed).
    var isConnected: Bool { get }

    /// Connects again from the parameters the resource crossed with. `password` is the one
    /// the credentials give for this resource (nil when they give none).
    func reconnect(password: String?) async throws
}

/// Passwords for reconnecting, as suitkaise's processing structures them: keyed by the
/// reconnector's type name (`"MyModule.Vault"`, or plain `"Vault"`), then by the name of
/// the property that holds it, with `"*"` as the default for every property:
///
/// ```swift
/// let credentials: ReconnectCredentials = [
///     "MyApp.Database": ["*": "secret", "analytics": "other secret"],
/// ]
/// ```
public typealias ReconnectCredentials = [String: [String: String]]
