import Synchronization

/// One descriptor watched by the reactor: what it wants to hear about (readable, writable),
/// and the handlers that hear it, on the reactor thread.
///
/// - Interest changes take effect at once, from any thread (`epoll_ctl` is thread-safe; this
///   watch's lock orders them). Wanting nothing takes the descriptor out of epoll, which
///   reports a hang-up or an error whatever the interest: a paused reader whose peer hung up
///   would otherwise wake the reactor again and again.
/// - `cancel` takes it out of epoll and drops the handlers (they hold their owner, which holds
///   this watch). On the reactor thread it is final: no handler of this watch runs after it,
///   so the owner may close the descriptor next. From another thread, a handler the reactor
///   already took may still run once; close the descriptor on the reactor thread (`execute`).
final class ReactorWatch: @unchecked Sendable {  // `state`: Mutex; `token`: set once, before use
    private struct State {
        var active = true
        /// What epoll has for this descriptor now; empty: not registered.
        var registered: Reactor.Interest = []
        var onReadable: (@Sendable () -> Void)?
        var onWritable: (@Sendable () -> Void)?
    }

    let fd: Int32
    private let reactor: Reactor
    /// Its key in the reactor's table and in epoll (set by `Reactor.watch`).
    var token: UInt64 = 0
    private let state: Mutex<State>

    init(fd: Int32, reactor: Reactor, onReadable: (@Sendable () -> Void)?, onWritable: (@Sendable () -> Void)?) {
        self.fd = fd
        self.reactor = reactor
        state = Mutex(State(onReadable: onReadable, onWritable: onWritable))
    }

    /// Asks to hear (or not) that `fd` is readable and that it is writable. Any thread; a
    /// cancelled watch ignores it. Throws what epoll refused with: a descriptor that cannot be
    /// watched (a regular file: `EPERM`), or no room for another watch (`ENOSPC`, `ENOMEM`).
    func want(reading: Bool, writing: Bool) throws(SystemError) {
        try state.withLock { state throws(SystemError) in
            guard state.active else { return }
            var interest: Reactor.Interest = []
            if reading, state.onReadable != nil { interest.insert(.read) }
            if writing, state.onWritable != nil { interest.insert(.write) }
            guard interest != state.registered else { return }
            let operation: Reactor.Operation =
                state.registered.isEmpty ? .add : interest.isEmpty ? .delete : .modify
            try reactor.control(operation, fd, interest, token: token)
            state.registered = interest
        }
    }

    /// An event for this watch (on the reactor thread): the handlers it asked for.
    func fire(readable: Bool, writable: Bool) {
        let (read, write) = state.withLock { state in
            state.active ? (readable ? state.onReadable : nil, writable ? state.onWritable : nil) : (nil, nil)
        }
        read?()
        write?()
    }

    /// Stops watching, for good (see the type's comment for what a cancel from another thread
    /// allows). Any thread; later calls do nothing.
    func cancel() {
        let first = state.withLock { state in
            guard state.active else { return false }
            state.active = false
            if !state.registered.isEmpty { try? reactor.control(.delete, fd, [], token: token) }
            state.registered = []
            (state.onReadable, state.onWritable) = (nil, nil)
            return true
        }
        if first { reactor.forget(token) }
    }
}
