#if canImport(Glibc)
import Glibc
#endif

/// The second session an actor process on another host needs: its calls travel on a socket
/// of their own, and a network carries no socket. A connector (this binary, run there over
/// the host's launcher) joins its stdin and stdout to the abstract socket the actor process
/// listens on; here its stdin and stdout are the parent's end of the actor connection.
enum RemoteConnector {
    /// Starts the connector; it ends by itself once either side closes, and is reaped then.
    /// If the actor process ends first, the connector is killed.
    static func start(on host: WorkerHost, name: String, joining end: RelayLinkEnd, of core: ProcessCore) async throws {
        let binary = try await RemoteBinaries.shared.path(on: host)
        let fd = try end.takeForChannel("to the connector")
        defer { Syscall.close(fd) }  // the connector has its own copies
        let errors = FileDescriptor(owning: try Syscall.makeSharedMemory(name: "processing-connector-stderr"))
        let child = try await Spawner.shared.spawnCommand(
            RemoteLauncher(host: host).connectorArguments(binary: binary, name: name),
            stdin: fd, stdout: fd, stderr: errors.rawValue)
        Task.detached {
            // Whichever comes first: the connector's end, or the actor process's.
            let ended = Task.detached { _ = try? await core.waitForEnd(timeout: nil) }
            let reaped = Task.detached {
                try? await Reactor.shared.waitUntilReady(child.exitDescriptor, writable: false)
                ended.cancel()
            }
            await ended.value
            Syscall.signalGroup(child.pid, SIGKILL)
            Syscall.signal(exitDescriptor: child.exitDescriptor, SIGKILL)
            await reaped.value
            _ = try? Syscall.reap(child.exitDescriptor)
            Syscall.close(child.exitDescriptor)
        }
    }
}
