/// Where a worker process runs: this machine, another host reached with OpenSSH, or any
/// command that runs a program with its stdin and stdout connected (a cluster's launcher).
///
/// ```swift
/// let handle = try await Counter().start(on: .ssh("me@build-box"))
/// let pool = try Pool(workers: [.local(2), .ssh("host-a", count: 4)])
/// let detector = try await system.spawn(Detector.self, on: .ssh("host-b"))
/// ```
///
/// A remote worker runs this program's own build (``RemoteBinary`` says where it finds it),
/// and talks to its parent over the launcher's stdin and stdout with the same frames as a
/// local one: type names, lives, time-outs, cancellation, logging and events work alike.
/// What only one machine can share (a ``Share``, a ``ProcessPipe`` point, an ``EventGroup``,
/// any descriptor) is refused before anything is sent. A lost connection is a crash of that
/// worker. See <doc:RemoteHosts>.
public struct WorkerHost: Sendable, Hashable, CustomStringConvertible {
    enum Launcher: Sendable, Hashable {
        case local
        case ssh(destination: String, options: [String], heartbeat: Duration)
        case command([String])
    }

    let launcher: Launcher
    /// The host's name in errors, events and a worker's output: `local`, the ssh destination,
    /// or the name given to a command launcher.
    public let name: String
    /// Where a remote host finds this program's build.
    public let binary: RemoteBinary

    /// This machine: a worker is a child process, as `start()` makes it.
    public static let local = WorkerHost(launcher: .local, name: "local", binary: .samePath)

    /// A host reached with OpenSSH's `ssh` client, with the user's own keys, agent and
    /// `~/.ssh/config` (`destination` is what `ssh` takes: `host`, `user@host`, an alias).
    ///
    /// - Parameters:
    ///   - destination: what `ssh` connects to: `host`, `user@host`, an alias of its config.
    ///   - options: more arguments for `ssh`, before the destination (`["-p", "2222"]`,
    ///     `["-F", "/path/to/config"]`). `ssh` runs with `-T` and `BatchMode=yes`: it never
    ///     asks for a password, so a key must let it in.
    ///   - binary: where the host finds this build; by default the same path, else a copy
    ///     this process makes.
    ///   - heartbeat: how often ssh checks a silent connection (`ServerAliveInterval`); a
    ///     host that stops answering is given up after a second missed one, and its workers
    ///     count as crashed. Whole seconds, at least 1.
    public static func ssh(_ destination: String, options: [String] = [], binary: RemoteBinary = .automatic,
                           heartbeat: Duration = .seconds(5)) -> WorkerHost {
        WorkerHost(launcher: .ssh(destination: destination, options: options, heartbeat: heartbeat),
             name: destination, binary: binary)
    }

    /// A host reached through a command that runs a program there with its stdin and stdout
    /// connected to this process: `["kubectl", "exec", "-i", "my-pod", "--"]`,
    /// `["srun", "--nodes=1"]`, `["docker", "exec", "-i", "box"]`. The worker runs as
    /// `launcher + ["sh", "-c", script]`. The command must pass stdin and stdout through
    /// unchanged (no terminal) and end when the connection does.
    ///
    /// - Parameters:
    ///   - launcher: the command and its arguments, before `sh -c script`.
    ///   - name: the host's name in errors, events and output.
    ///   - binary: where the host finds this build: by default at the same path. It can
    ///     also be copied through the launcher (`.copied()`, `.automatic`).
    public static func command(_ launcher: [String], name: String, binary: RemoteBinary = .samePath) -> WorkerHost {
        WorkerHost(launcher: .command(launcher), name: name, binary: binary)
    }

    /// Whether this is this machine.
    public var isLocal: Bool { launcher == .local }

    /// The host's name.
    public var description: String { name }

    /// Refuses a host that cannot work, naming it and the fix.
    func validate() throws(ProcessingError) {
        switch launcher {
        case .local:
            return
        case .ssh(let destination, _, let heartbeat):
            if destination.isEmpty || destination.hasPrefix("-") {
                throw ProcessingError(.invalidConfiguration, """
                    WorkerHost.ssh needs a destination such as "user@host" (got "\(destination)"); put ssh's \
                    own flags in options:
                    """)
            }
            if heartbeat < .seconds(1) {
                throw ProcessingError(.invalidConfiguration, """
                    the heartbeat of WorkerHost.ssh("\(destination)") is \(heartbeat): ssh counts it in whole \
                    seconds, so give at least .seconds(1)
                    """)
            }
        case .command(let arguments):
            if arguments.isEmpty || arguments[0].isEmpty {
                throw ProcessingError(.invalidConfiguration, """
                    WorkerHost.command(_:name:) for "\(name)" needs a launcher command, such as \
                    ["kubectl", "exec", "-i", "my-pod", "--"]
                    """)
            }
        }
    }
}
