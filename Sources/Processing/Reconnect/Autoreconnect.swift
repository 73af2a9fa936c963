/// A process's autoreconnect setting: in the child, before the first hook, every
/// `Reconnector` placeholder in the process is reconnected with these credentials, as
/// suitkaise's `@autoreconnect`.
///
/// ```swift
/// struct Report: Skprocess {
///     static let autoreconnect = Autoreconnect([
///         "MyApp.Database": ["*": "secret", "analytics": "other secret"],
///     ])
///     var main: Database
///     var analytics: Database
///     mutating func run() async throws {       // both live again here
///         print(main.isConnected, analytics.isConnected)
///     }
/// }
/// ```
///
/// It is a static property, evaluated in each process, so passwords never cross the process
/// boundary: they are in the program (or read there, say from the environment, which the
/// child inherits), not in the process's state. A reconnect that fails fails the process
/// like a throwing `prerun`: a `PreRunError` whose underlying error is a `ProcessingError`
/// (`.reconnectFailed`) naming the property, and a retry while lives are left.
public struct Autoreconnect: Sendable {
    /// Whether placeholders are reconnected at all.
    public let isEnabled: Bool
    /// The passwords, by type name and property name (`"*"` for the default).
    public let credentials: ReconnectCredentials

    /// Reconnects with these credentials (none: resources that need no password, such as
    /// `TCPConnection` and `OpenFile`).
    public init(_ credentials: ReconnectCredentials = [:]) {
        isEnabled = true
        self.credentials = credentials
    }

    private init(disabled: Void) {
        isEnabled = false
        credentials = [:]
    }

    /// No automatic reconnecting (the default); call `reconnectAll(_:auth:)` in a hook.
    public static let off = Autoreconnect(disabled: ())
}
