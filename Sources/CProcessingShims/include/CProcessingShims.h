#ifndef C_PROCESSING_SHIMS_H
#define C_PROCESSING_SHIMS_H

// Linux only for now (pidfds, epoll, eventfd, memfd, prctl, the ELF .init_array walk,
// MSG_CMSG_CLOEXEC): PORTING.md lists what another platform puts in their place.
#if defined(__linux__)

#include <signal.h>
#include <spawn.h>
#include <sys/types.h>

/// The environment variable that marks a re-executed binary as a worker. Its value is
/// "<control fd>:<parent pid>:<the parent's message size limit>" (the limit may be missing)
/// for a local worker; "stdio:<limit>:<the parent's build id>:<host name>" for a remote one,
/// whose channel is its stdin and stdout; "buildid" to print the build id and exit;
/// "connect:<abstract socket name>" to join its stdin and stdout to a remote actor process's
/// socket (the second connection an actor on another host needs).
#define PROCESSING_WORKER_ENV "__SWIFT_PROCESSING_WORKER"

/// The fd numbers a worker finds its channels on (mapped by posix_spawn file actions).
#define PROCESSING_WORKER_CONTROL_FD 3

/// How a worker exits when it cannot report through its channel. One list for C and Swift
/// (`WorkerExitCode` wraps it); the parent sees these as a crash without a result, and a
/// worker's stderr line says which.
enum processing_worker_exit {
    /// The control channel ended or sent what the worker cannot read (the parent is gone).
    PROCESSING_EXIT_CHANNEL_ENDED = 3,
    /// The worker's last frame (its result) could not be sent.
    PROCESSING_EXIT_RESULT_UNSENT = 4,
    /// A pool worker got work or a batch it cannot serve.
    PROCESSING_EXIT_POOL_BROKEN = 5,
    /// The worker marker in the environment is malformed.
    PROCESSING_EXIT_BAD_MARKER = 70,
    /// The parent died: the worker ended its process group.
    PROCESSING_EXIT_PARENT_DIED = 71,
    /// The marker names a control fd that is not open.
    PROCESSING_EXIT_NO_CONTROL_CHANNEL = 72,
    /// The control channel could not be set up.
    PROCESSING_EXIT_CHANNEL_UNUSABLE = 73,
    /// The worker loop started without a worker context.
    PROCESSING_EXIT_NO_CONTEXT = 74,
    /// A remote worker's binary is not the build its parent runs (the marker says which).
    PROCESSING_EXIT_BUILD_MISMATCH = 75,
};

/// This program's GNU build id (the linker's `.note.gnu.build-id`) in hex, written to `out`
/// with a terminating NUL; returns its length, or 0 if the program has none (or `capacity`
/// is too small).
int processing_build_id(char *out, unsigned long capacity);

/// Whether this worker talks to its parent through its stdin and stdout (a remote worker,
/// launched over ssh or another command): 1, else 0.
int processing_worker_is_remote(void);

/// A nonblocking, close-on-exec Unix stream socket listening on the abstract name `name`
/// (Linux's namespace of socket names: nothing on disk to clean up), or -1 with errno.
int processing_listen_abstract(const char *name);
/// Accepts one connection (close-on-exec), or -1 with errno.
int processing_accept(int listener);

/// Ends a worker with `code`. A remote worker first lets what it sent reach its stdout
/// (its bridge thread copies the channel there), for at most 10 seconds.
_Noreturn void processing_worker_exit(int code);

/// Flushes stdio and points stdout and stderr at /dev/null, so that the parent sees their
/// pipes end before the worker exits (it answers on the result frame then). 1 if done; 0 in a
/// remote worker (its output travels with its channel) or if /dev/null cannot be opened.
int processing_worker_release_output(void);

/// The control fd the constructor found in a worker, or -1 in an ordinary process.
int processing_worker_control_fd(void);
/// The parent's message size limit from the worker marker, or 0 when it gave none.
long long processing_worker_message_limit(void);
/// 1 in a spare worker (spawned ahead, before anyone asked for it), 0 otherwise.
int processing_worker_is_spare(void);
/// In a spare: the mangled names of the process types the parent started last, comma-separated
/// (from its marker), for it to look up while it waits; "" when none were given.
const char *processing_worker_spare_hints(void);

int processing_pidfd_open(pid_t pid);
int processing_pidfd_send_signal(int pidfd, int signal);
/// waitid(P_PIDFD, pidfd, WEXITED | WNOHANG). Returns 1 and fills the outputs when the child
/// was reaped, 0 when it is still running, -1 with errno on error.
int processing_pidfd_reap(int pidfd, int *code, int *status);
/// waitid(P_PIDFD, pidfd, WEXITED | WNOHANG | WNOWAIT): 1 when the child has exited (it stays
/// reapable), 0 while it runs, -1 with errno on error.
int processing_pidfd_has_exited(int pidfd);
/// Whether this program ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT): the kernel then discards
/// children's exit statuses.
int processing_child_signal_ignored(void);
int processing_pipe2_cloexec(int fds[2]);

/// Makes C stdio's stdout line-buffered (Swift cannot name the `stdout` global safely under
/// strict concurrency).
void processing_line_buffer_stdout(void);

/// Writes `count` bytes through C stdio's `stdout` (after what the program printed and is
/// still buffered there), then flushes it. 0 on success, else the errno.
int processing_stdout_write(const void *bytes, size_t count);

/// The column count of the terminal `fd` is (TIOCGWINSZ), or -1 (Swift cannot call the
/// variadic ioctl).
int processing_terminal_width(int fd);
int processing_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int lowfd);
/// The image base of the loaded object containing `address` (dladdr), or NULL.
void *processing_image_base(const void *address);
/// Sets PR_SET_PDEATHSIG; returns 0 or -1.
int processing_set_parent_death_signal(int signal);

/// The signal a worker receives when its parent dies (PR_SET_PDEATHSIG). Its handler ends the
/// worker's process group: the worker, and the children it started that stayed in the group.
/// A real-time signal, so that it is not one a program is likely to handle itself.
#define PROCESSING_PARENT_DEATH_SIGNAL (SIGRTMAX - 1)

/// Kills this process's whole process group (this process included); never returns. A worker
/// leaves this way when its parent is gone, so that nothing it started outlives it.
void processing_end_process_group(void) __attribute__((noreturn));

// MARK: - epoll (the reactor) and eventfd (waking it); the Glibc module shows neither.

#include <stdint.h>

/// One readiness event: the registration's token and the epoll event bits.
typedef struct {
    uint64_t token;
    uint32_t events;
} processing_event;

#define PROCESSING_EVENT_READ 0x001   /* EPOLLIN */
#define PROCESSING_EVENT_WRITE 0x004  /* EPOLLOUT */
#define PROCESSING_EVENT_ERROR 0x008  /* EPOLLERR */
#define PROCESSING_EVENT_HANGUP 0x010 /* EPOLLHUP */

int processing_epoll_create(void);
/// op: 1 add, 2 delete, 3 modify (EPOLL_CTL_*). Returns 0 or -1 with errno.
int processing_epoll_control(int epfd, int op, int fd, uint32_t events, uint64_t token);
/// epoll_wait into `events`; returns the count, or -1 with errno.
int processing_epoll_wait(int epfd, processing_event *events, int capacity, int timeout_ms);
int processing_eventfd_create(void);

// MARK: - Descriptors over Unix sockets (SCM_RIGHTS); the Glibc module lacks the CMSG macros.

/// The most descriptors one frame may carry (the kernel's SCM_MAX_FD is 253).
#define PROCESSING_MAX_ATTACHED_FDS 64

/// sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT) of `length` bytes with `count` fds attached
/// (SCM_RIGHTS). Returns the bytes sent, or -1 with errno.
long processing_send_with_fds(int socket, const void *bytes, unsigned long length, const int *fds, int count);

/// recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) into `bytes`; fds that arrive are stored in `fds`
/// (room for PROCESSING_MAX_ATTACHED_FDS) and counted in `*count`. Returns the bytes read, 0 at
/// EOF, or -1 with errno. `*truncated` is set when fds were lost (MSG_CTRUNC).
long processing_receive_with_fds(int socket, void *bytes, unsigned long length, int *fds, int *count, int *truncated);
// MARK: - Share: a sealed memfd and atomics on shared memory; the Glibc module shows neither.

/// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), sealed against shrinking (so a mapping
/// of it can never fault past its end). Returns the fd, or -1 with errno.
int processing_memfd_create(const char *name);
/// 1 if the memfd `fd` is sealed against shrinking (F_SEAL_SHRINK), else 0.
int processing_memfd_is_sealed_against_shrinking(int fd);

/// Atomic loads and stores on memory shared between processes (acquire / release).
static inline uint64_t processing_atomic_load_u64(const void *address) {
    return __atomic_load_n((const uint64_t *)address, __ATOMIC_ACQUIRE);
}
static inline void processing_atomic_store_u64(void *address, uint64_t value) {
    __atomic_store_n((uint64_t *)address, value, __ATOMIC_RELEASE);
}
static inline uint32_t processing_atomic_load_u32(const void *address) {
    return __atomic_load_n((const uint32_t *)address, __ATOMIC_ACQUIRE);
}
static inline void processing_atomic_store_u32(void *address, uint32_t value) {
    __atomic_store_n((uint32_t *)address, value, __ATOMIC_RELEASE);
}

/// Compare-and-swap on memory shared between processes: 1 if `*address` was `expected` and is
/// now `desired`, else 0 with `*expected` set to what it is.
static inline int processing_atomic_cas_u64(void *address, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)address, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

// MARK: - ProcessGroup: SIGINT and SIGTERM heard by the reactor

/// Catches `signal` (SA_RESTART) with a handler that writes its number, one byte, to `fd` (the
/// nonblocking write end of a pipe the reactor reads); the previous action is kept for
/// `processing_restore_signal`. Returns 0, 1 when the signal is ignored (SIG_IGN: it stays
/// so), or -1 with errno.
int processing_forward_signal(int signal, int fd);
/// Puts back the action `processing_forward_signal` replaced. Returns 0, or -1 with errno.
int processing_restore_signal(int signal);
/// Ends this process by `signal` with its default action (so that its parent, a shell, sees
/// how it ended): SIG_DFL, unblocked, raised; exits with 128 + signal if that returns.
void processing_die_by_signal(int signal) __attribute__((noreturn));

#else
#error "CProcessingShims: Linux only for now; PORTING.md lists what another platform needs"
#endif  // __linux__

#endif
