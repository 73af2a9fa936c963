/// A `ProcessGroup`'s life as a pure state machine: its members, and how it ends (after its
/// body, on a stop or a first signal, gracefully; on a second signal or a cancellation, by
/// killing). `ProcessGroup` holds it under its lock and does what each event returns.
struct ProcessGroupState<Member> {
    enum Phase: Equatable {
        case running
        /// Ending gracefully, members in reverse order of their adding.
        case stopping
        /// Killing every member at once.
        case killing
    }

    private(set) var phase = Phase.running
    /// In the order they were added.
    private(set) var members: [Member] = []
    /// The signal that ended the group, if one did.
    private(set) var signal: Int32?
    /// Signals heard so far.
    private var signals = 0

    /// What to do with a member added now.
    enum Admission {
        /// Keep it; the group ends it with the others.
        case kept
        /// The group is ending gracefully already: end it so too, at once.
        case endGracefully
        /// The group is killing: kill it.
        case endNow
    }

    mutating func add(_ member: Member) -> Admission {
        members.append(member)
        switch phase {
        case .running: return .kept
        case .stopping: return .endGracefully
        case .killing: return .endNow
        }
    }

    /// What an event asks of the group.
    enum Action: Equatable {
        /// Begin the graceful end.
        case stop
        /// Kill every member now.
        case kill
        /// Nothing new.
        case none
    }

    /// A SIGINT or SIGTERM: the first stops, the second kills.
    mutating func signalled(_ number: Int32) -> Action {
        signals += 1
        if signal == nil { signal = number }
        return signals == 1 ? stop() : kill()
    }

    /// The body ended, or `stop()` was called, or a first signal came.
    mutating func stop() -> Action {
        guard phase == .running else { return .none }
        phase = .stopping
        return .stop
    }

    /// A second signal, or the task running the group was cancelled.
    mutating func kill() -> Action {
        guard phase != .killing else { return .none }
        phase = .killing
        return .kill
    }

    var isKilling: Bool { phase == .killing }
}
