import Foundation

/// How many of a pool's workers run where: `Pool(workers: [.local(2), .ssh("host-a", count: 4)])`.
public struct HostWorkers: Sendable, Hashable {
    /// Where these workers run.
    public let host: WorkerHost
    /// How many run there at most.
    public let count: Int

    /// `count` workers on `host`.
    public static func on(_ host: WorkerHost, count: Int) -> HostWorkers {
        HostWorkers(host: host, count: count)
    }

    /// `count` workers on this machine (nil: one per active CPU).
    public static func local(_ count: Int? = nil) -> HostWorkers {
        HostWorkers(host: .local, count: count ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// `count` workers on a host reached with ssh (see ``WorkerHost/ssh(_:options:binary:heartbeat:)``).
    public static func ssh(_ destination: String, count: Int, options: [String] = [],
                           binary: RemoteBinary = .automatic, heartbeat: Duration = .seconds(5)) -> HostWorkers {
        HostWorkers(host: .ssh(destination, options: options, binary: binary, heartbeat: heartbeat), count: count)
    }
}
