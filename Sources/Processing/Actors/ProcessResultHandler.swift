import Distributed

/// Sends a distributed call's outcome back to the process that made it: the value, the end
/// of a `Void` func (acknowledged, so that its errors surface too), or the error.
public struct ProcessResultHandler: DistributedTargetInvocationResultHandler {
    /// What results must be.
    public typealias SerializationRequirement = Codable

    let connection: ActorConnection
    let callID: UInt64

    /// The call returned `value`.
    public func onReturn<Success: Codable>(value: Success) async throws {
        let reply: [UInt8]
        do {
            reply = try connection.replyFrame(callID, .value) { try BinaryEncoder().encode(value, appendingTo: &$0) }
        } catch {
            return try await onThrow(error: ProcessActorError(.callFailed, """
                the result (\(String(reflecting: Success.self))) did not encode: \(error)
                """))
        }
        try await connection.sendReply(reply)
    }

    /// A `Void` call returned.
    public func onReturnVoid() async throws {
        try await connection.sendReply(try connection.replyFrame(callID, .void) { _ in })
    }

    /// The call threw `error`: it crosses as itself when `Codable`, else by name and description.
    public func onThrow<Err: Error>(error: Err) async throws {
        let reply: [UInt8]
        if let actorError = error as? ProcessActorError {
            reply = try connection.replyFrame(callID, .systemError) {
                try BinaryEncoder().encode(ActorErrorPayload(actorError), appendingTo: &$0)
            }
        } else {
            let payload = RemoteErrorPayload(error)
            reply = try connection.replyFrame(callID, .error) { try BinaryEncoder().encode(payload, appendingTo: &$0) }
        }
        try await connection.sendReply(reply)
    }
}

/// How a `ProcessActorError` crosses.
struct ActorErrorPayload: Codable {
    var code: ProcessActorError.Code
    var message: String

    init(_ error: ProcessActorError) {
        (code, message) = (error.code, error.message)
    }

    var error: ProcessActorError { ProcessActorError(code, message) }
}
