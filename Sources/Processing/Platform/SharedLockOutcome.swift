/// What locking a share's mutex found.
enum SharedLockOutcome: Equatable {
    /// The lock is held; the state is as the last finished update left it.
    case acquired
    /// The lock is held, and its previous owner died holding it (the mutex is made consistent
    /// again before returning; the state needs no repair, see `ShareStorage`).
    case ownerDied
    /// This thread already holds it (an update nested inside another's closure).
    case heldByThisThread
}
