import CProcessingShims

/// How this process starts workers on a remote host: the launcher's arguments around a
/// shell script, the binary the host runs (found once per host, copied if need be), and the
/// script that runs a worker there.
struct RemoteLauncher: Sendable {
    let host: WorkerHost

    // MARK: Commands on the host

    /// The arguments that run `script` with `sh` on the host.
    func arguments(running script: String) -> [String] {
        switch host.launcher {
        case .local:
            return ["sh", "-c", script]
        case .ssh(let destination, let options, let heartbeat):
            let seconds = max(1, heartbeat.components.seconds)
            // The user's options first: for an option given twice, ssh keeps the first.
            return ["ssh"] + options + [
                "-T", "-e", "none",
                "-o", "BatchMode=yes",
                "-o", "ServerAliveInterval=\(seconds)",
                "-o", "ServerAliveCountMax=1",
                "-o", "ConnectTimeout=\(max(10, seconds))",
                "--", destination,
                // ssh hands the rest to the remote user's shell as one line.
                "sh -c \(Self.quoted(script))",
            ]
        case .command(let launcher):
            return launcher + ["sh", "-c", script]
        }
    }

    /// `text` as one word for a POSIX shell.
    static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// A path for the remote shell: `~/…` is the remote user's home, anything else literal.
    static func remotePath(_ path: String) -> String {
        if path == "~" { return "\"$HOME\"" }
        if path.hasPrefix("~/") { return "\"$HOME\"/" + quoted(String(path.dropFirst(2))) }
        return quoted(path)
    }

    // MARK: The binary

    /// This program's name, as its copies are named.
    private static var programName: String {
        let path = Syscall.executablePath()
        return path.split(separator: "/").last.map(String.init) ?? "program"
    }

    private var cacheDirectory: String? {
        switch host.binary.choice {
        case .automatic(let cache), .copied(let cache): cache
        case .samePath, .at: nil
        }
    }

    /// The copy's path in the cache (for the remote shell).
    private func cachedPath(_ cache: String) -> String {
        let directory = cache.hasSuffix("/") ? String(cache.dropLast()) : cache
        return Self.remotePath("\(directory)/\(Syscall.ownBuildID)/\(Self.programName)")
    }

    /// The paths to look at, in order (for the remote shell).
    private var candidates: [String] {
        let same = Self.quoted(Syscall.executablePath())
        switch host.binary.choice {
        case .automatic(let cache): return [cachedPath(cache), same]
        case .copied(let cache): return [cachedPath(cache)]
        case .samePath: return [same]
        case .at(let path): return [Self.remotePath(path)]
        }
    }

    /// What the host has: each candidate that exists, with the build id it reports.
    private func survey() async throws -> [(path: String, buildID: String)] {
        // Each present candidate prints "<path>\t<its build id>". A Processing program answers
        // from its first instructions; another program at that path gets 10 s (where coreutils'
        // timeout exists), so that it cannot hold the start.
        let script = "t=; if command -v timeout >/dev/null 2>&1; then t='timeout 10'; fi; "
            + "for b in \(candidates.joined(separator: " ")); do if [ -f \"$b\" ] && [ -x \"$b\" ]; then "
            + "printf '%s\\t%s\\n' \"$b\" \"$(\(WorkerMarker.variable)=buildid $t \"$b\" </dev/null 2>/dev/null | head -n 1)\"; fi; done"
        let outcome = try await HostCommand(arguments: arguments(running: script)).run()
        guard outcome.succeeded else {
            throw ProcessingError(.hostUnavailable, """
                \(host.name) could not be reached (\(describe(outcome.status))); \(outcome.stderrSummary). \
                Check that `\(commandLine)` works from this machine without a prompt
                """)
        }
        return outcome.stdout.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            guard fields.count == 2 else { return nil }
            return (String(fields[0]), String(fields[1]))
        }
    }

    /// Copies this program's image into the host's cache.
    private func copy(into cache: String) async throws {
        let target = cachedPath(cache)
        let script = "set -e; t=\(target); d=$(dirname \"$t\"); mkdir -p \"$d\"; "
            + "cat > \"$t.part.$$\"; chmod 755 \"$t.part.$$\"; mv -f \"$t.part.$$\" \"$t\""
        let outcome = try await HostCommand(arguments: arguments(running: script)).run(stdinPath: Syscall.ownImage)
        guard outcome.succeeded else {
            throw ProcessingError(.hostUnavailable, """
                this program could not be copied to \(host.name) (into \(cache)): \(describe(outcome.status)); \
                \(outcome.stderrSummary)
                """)
        }
    }

    /// Finds (and if allowed, copies) the build of this program the host runs: its path there.
    func resolveBinary() async throws -> String {
        let want = Syscall.ownBuildID
        var found = try await survey()
        if let match = found.first(where: { $0.buildID == want }) { return match.path }
        if let cache = cacheDirectory {
            try await copy(into: cache)
            found = try await survey()
            if let match = found.first(where: { $0.buildID == want }) { return match.path }
        }
        if let other = found.first {
            throw ProcessingError(.buildMismatch, """
                the binary on \(host.name) at \(other.path) is build \(other.buildID.isEmpty ? "(none: not a Processing program)" : other.buildID), \
                and this program is build \(want): put this build there, or let Processing copy it \
                (binary: .automatic or .copied())
                """)
        }
        throw ProcessingError(.hostUnavailable, """
            \(host.name) has no binary at \(candidates.joined(separator: " or ")): build or copy this program \
            there, or let Processing copy it (binary: .automatic or .copied())
            """)
    }

    /// The launcher as a command line, for messages.
    private var commandLine: String {
        switch host.launcher {
        case .local: "sh"
        case .ssh(let destination, let options, _): (["ssh"] + options + [destination, "true"]).joined(separator: " ")
        case .command(let launcher): (launcher + ["true"]).joined(separator: " ")
        }
    }

    private func describe(_ status: ExitStatus) -> String {
        switch (status, host.launcher) {
        case (.exited(255), .ssh): "ssh failed with status 255"
        case (.exited(let code), _): "it exited with status \(code)"
        case (.signaled(let signal), _): "it was killed by \(Syscall.signalName(signal))"
        case (.unavailable, _): "its exit status is unknown"
        }
    }

    // MARK: A worker

    /// The arguments that run a worker from `binary` on the host. The shell stays as the
    /// worker's parent, to say when a signal killed it (ssh reports only a status).
    func workerArguments(binary: String) -> [String] {
        let marker = "stdio:\(ProcessingLimits.maximumMessageSize):\(Syscall.ownBuildID):\(host.name)"
        let script = "\(WorkerMarker.variable)=\(Self.quoted(marker)) SWIFT_BACKTRACE=enable=no \(Self.quoted(binary)); exit $?"
        return arguments(running: script)
    }
}

extension RemoteLauncher {
    /// The arguments that run a connector from `binary` on the host, joining its stdio to
    /// the abstract socket `name` (`RemoteConnector`).
    func connectorArguments(binary: String, name: String) -> [String] {
        arguments(running: "\(WorkerMarker.variable)=\(Self.quoted("connect:\(name)")) exec \(Self.quoted(binary))")
    }
}

/// The C header's worker marker, for scripts.
enum WorkerMarker {
    static let variable = PROCESSING_WORKER_ENV
}
