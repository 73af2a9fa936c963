import Synchronization

/// What is being encoded for a process on another host: values that only one machine can
/// share refuse to be encoded then, so that nothing is sent.
enum HostCrossing {
    /// The remote host the value being encoded goes to, and the refusal, once one was made.
    final class Destination: Sendable {
        let host: WorkerHost
        let refusal = Mutex<ProcessingError?>(nil)

        init(host: WorkerHost) {
            self.host = host
        }
    }

    @TaskLocal static var destination: Destination?

    /// Throws if the value being encoded goes to another host: `thing` (a `Share<Int>`, a
    /// pipe point) cannot cross a network.
    static func refuseIfRemote(_ thing: @autoclosure () -> String) throws(ProcessingError) {
        guard let destination else { return }
        let error = ProcessingError(.cannotCrossHosts, """
            \(thing()) cannot go to a process on \(destination.host.name): it shares memory or a descriptor \
            with this machine, and a network carries neither. Run that process locally (WorkerHost.local), \
            or send the values themselves (in the process's properties, by tell, or as items)
            """)
        destination.refusal.withLock { $0 = $0 ?? error }
        throw error
    }

    /// Runs `body` with values encoded for `host` refusing what cannot cross (nothing is
    /// refused for `.local`). A refusal is thrown as itself, however the encoder wrapped it.
    static func encoding<T>(for host: WorkerHost, _ body: () throws -> T) throws -> T {
        guard !host.isLocal else { return try body() }
        let destination = Destination(host: host)
        do {
            return try $destination.withValue(destination) { try body() }
        } catch {
            if let refusal = destination.refusal.withLock({ $0 }) { throw refusal }
            throw error
        }
    }
}
