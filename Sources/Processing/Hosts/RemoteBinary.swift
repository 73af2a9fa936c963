/// Where a remote host finds the build of this program that its workers run.
///
/// A worker must run the very build of its parent: type names and the frames between them
/// depend on it. Before a host's first worker, the parent asks the host what it has (each
/// candidate path, with its GNU build id); every worker checks the id again before it serves,
/// and a mismatch is an error naming the host and both ids.
public struct RemoteBinary: Sendable, Hashable {
    enum Choice: Sendable, Hashable {
        case automatic(cache: String)
        case samePath
        case at(String)
        case copied(cache: String)
    }

    let choice: Choice

    /// The directory copies are kept in, on the remote host, unless another is given: one
    /// folder per build id inside it.
    public static let defaultCacheDirectory = "~/.cache/processing"

    /// The copy in the cache if it is there, else the same path as here if that holds this
    /// build, else a copy made now (streamed over the launcher into the cache).
    public static let automatic = RemoteBinary(choice: .automatic(cache: defaultCacheDirectory))

    /// As `automatic`, with copies kept in `cacheDirectory` on the host (`~/` is the remote
    /// user's home).
    public static func automatic(cacheDirectory: String) -> RemoteBinary {
        RemoteBinary(choice: .automatic(cache: cacheDirectory))
    }

    /// The same path as this program's here (a shared file system, or a deployment that puts
    /// builds at one path); never copied.
    public static let samePath = RemoteBinary(choice: .samePath)

    /// This path on the host; never copied.
    public static func at(_ path: String) -> RemoteBinary { RemoteBinary(choice: .at(path)) }

    /// Always the copy in `cacheDirectory` (made if missing), whatever is at the same path.
    public static func copied(into cacheDirectory: String = defaultCacheDirectory) -> RemoteBinary {
        RemoteBinary(choice: .copied(cache: cacheDirectory))
    }
}
