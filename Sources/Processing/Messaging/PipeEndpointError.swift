/// A pipe endpoint was used in a way its kind or state does not allow: the anchor sent to
/// another process, a locked point sent, the wrong direction of a one-way pipe, an endpoint
/// used after `close()` or after it was handed to another process.
public struct PipeEndpointError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong and how to fix it.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    /// A readable account of the error.
    public var description: String { "PipeEndpointError: \(message)" }
}
