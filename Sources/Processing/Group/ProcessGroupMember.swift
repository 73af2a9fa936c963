/// Something a `ProcessGroup` owns and ends with the others: a process, a pool, an actor
/// system's processes, a relay. Conform your own types to have the group end them too.
public protocol ProcessGroupMember: Sendable {
    /// Asks it to end gracefully (its children finish what they do, their end hooks run) and
    /// waits for that, killing what is left after `gracePeriod`. Returns once nothing of it
    /// runs. Cancelling the caller means: stop waiting and kill now.
    func endGracefully(within gracePeriod: Duration) async

    /// Kills what of it runs, at once, and waits until its children are reaped.
    func endNow() async
}

extension ProcessHandle: ProcessGroupMember {
    /// Asks the process to stop (its run finishes, then `onFinish` and `result`), kills it if it
    /// has not ended after `gracePeriod`, and waits until it is reaped.
    public func endGracefully(within gracePeriod: Duration) async {
        core.requestStop()
        // A cancelled wait throws: then, as when the grace passes, the process is killed.
        let ended = (try? await core.waitForEnd(timeout: gracePeriod)) ?? false
        if !ended { await endNow() }
    }

    /// Kills the process and waits until it is reaped.
    public func endNow() async { await core.end() }
}

extension Pool: ProcessGroupMember {
    /// Closes the pool (maps running finish, then the workers end); terminates it if that
    /// takes longer than `gracePeriod`.
    public func endGracefully(within gracePeriod: Duration) async {
        if await !finishes(within: gracePeriod, { await self.closeNow() }) { await endNow() }
    }

    /// Terminates the pool: every worker is killed and reaped.
    public func endNow() async { await terminateNow() }
}

extension ProcessActorSystem: ProcessGroupMember {
    /// Stops every actor process of the system (`shutdown(gracePeriod:)`).
    public func endGracefully(within gracePeriod: Duration) async {
        await withTaskCancellationHandler {
            await shutdown(gracePeriod: gracePeriod)
        } onCancel: {
            for host in runningHosts { host.core.kill() }
        }
        if Task.isCancelled { await endNow() }
    }

    /// Kills every actor process of the system and waits until they are reaped.
    public func endNow() async {
        let hosts = runningHosts
        for host in hosts { host.core.kill() }
        for host in hosts { await host.ended() }
    }
}

extension RelayControl: ProcessGroupMember {
    /// Asks the relay to stop (`stop()`) and waits, at most `gracePeriod`, until its stages
    /// have drained and ended (then the group cancels its body, which kills what is left).
    public func endGracefully(within gracePeriod: Duration) async {
        await stop()
        _ = await finishes(within: gracePeriod) { await self.stagesEnded() }
    }

    /// Nothing here: a relay's stages are killed when the task running its `start` is
    /// cancelled, which the group does.
    public func endNow() async {}
}

/// Runs `work` for at most `gracePeriod`: true if it finished, false if the grace passed first
/// (then it is cancelled).
private func finishes(within gracePeriod: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            await work()
            return true
        }
        group.addTask {
            try? await Task.sleep(for: gracePeriod)
            return false
        }
        let first = await group.next() ?? false
        group.cancelAll()
        return first
    }
}
