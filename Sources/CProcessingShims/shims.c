#define _GNU_SOURCE
#include "CProcessingShims.h"

#if defined(__linux__)  // the header stops other platforms with an #error

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <time.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int worker_control_fd = -1;
static long long worker_message_limit = 0;
static int worker_is_spare = 0;
static char worker_spare_hints[2048];

int processing_worker_control_fd(void) { return worker_control_fd; }

int processing_worker_is_spare(void) { return worker_is_spare; }

const char *processing_worker_spare_hints(void) { return worker_spare_hints; }

long long processing_worker_message_limit(void) { return worker_message_limit; }

int processing_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int processing_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int processing_pidfd_reap(int pidfd, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) != 0) return -1;
    if (info.si_pid == 0) return 0;
    *code = info.si_code;
    *status = info.si_status;
    return 1;
}

int processing_pidfd_has_exited(int pidfd) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return -1;
    return info.si_pid != 0;
}

int processing_child_signal_ignored(void) {
    struct sigaction action;
    if (sigaction(SIGCHLD, NULL, &action) != 0) return 0;
    return action.sa_handler == SIG_IGN || (action.sa_flags & SA_NOCLDWAIT) != 0;
}

int processing_pipe2_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

void processing_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int processing_terminal_width(int fd) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0) return -1;
    return size.ws_col;
}

int processing_stdout_write(const void *bytes, size_t count) {
    errno = 0;
    if (fwrite(bytes, 1, count, stdout) != count || fflush(stdout) != 0) {
        int code = errno ? errno : EIO;
        clearerr(stdout);
        return code;
    }
    return 0;
}

int processing_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowfd);
}

void *processing_image_base(const void *address) {
    Dl_info info;
    if (dladdr(address, &info) == 0) return NULL;
    return info.dli_fbase;
}

int processing_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

int processing_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int processing_epoll_control(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event;
    memset(&event, 0, sizeof event);
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &event);
}

int processing_epoll_wait(int epfd, processing_event *events, int capacity, int timeout_ms) {
    struct epoll_event raw[64];
    if (capacity > 64) capacity = 64;
    int count = epoll_wait(epfd, raw, capacity, timeout_ms);
    for (int index = 0; index < count; index++) {
        events[index].token = raw[index].data.u64;
        events[index].events = raw[index].events;
    }
    return count;
}

int processing_eventfd_create(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int processing_memfd_create(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd == -1) return -1;
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == -1) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

// MARK: - Worker entry

/// Implemented in Swift (`@_cdecl`); never returns.
extern void processing_worker_main(void);

typedef void (*init_function)(int, char **, char **);
extern init_function __init_array_start[] __attribute__((weak));
extern init_function __init_array_end[] __attribute__((weak));

static void processing_worker_constructor(int argc, char **argv, char **envp);

void processing_end_process_group(void) {
    kill(0, SIGKILL);
    _exit(PROCESSING_EXIT_PARENT_DIED);
}

int processing_memfd_is_sealed_against_shrinking(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK) != 0;
}

// MARK: - Signals forwarded to a descriptor (ProcessGroup)

#define PROCESSING_SIGNAL_LIMIT 65
static volatile sig_atomic_t forwarded_fd[PROCESSING_SIGNAL_LIMIT];
static struct sigaction previous_action[PROCESSING_SIGNAL_LIMIT];

static void processing_forwarding_handler(int signal) {
    int saved = errno;
    if (signal > 0 && signal < PROCESSING_SIGNAL_LIMIT && forwarded_fd[signal] > 0) {
        unsigned char byte = (unsigned char)signal;
        ssize_t ignored = write(forwarded_fd[signal], &byte, 1);  // async-signal-safe
        (void)ignored;
    }
    errno = saved;
}

int processing_forward_signal(int signal, int fd) {
    if (signal <= 0 || signal >= PROCESSING_SIGNAL_LIMIT) { errno = EINVAL; return -1; }
    // A signal the program was started ignoring (nohup, a background job) stays ignored.
    struct sigaction current;
    if (sigaction(signal, NULL, &current) != 0) return -1;
    if (current.sa_handler == SIG_IGN) { previous_action[signal] = current; return 1; }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = processing_forwarding_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    forwarded_fd[signal] = fd;
    return sigaction(signal, &action, &previous_action[signal]);
}

int processing_restore_signal(int signal) {
    if (signal <= 0 || signal >= PROCESSING_SIGNAL_LIMIT) { errno = EINVAL; return -1; }
    int result = sigaction(signal, &previous_action[signal], NULL);
    forwarded_fd[signal] = 0;
    return result;
}

void processing_die_by_signal(int signal) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(signal);
    _exit(128 + signal);
}

/// The parent died: end the worker's process group (the worker and the children it started,
/// unless they left the group), as the parent would have when this worker ended.
static void processing_parent_died(int signal) {
    (void)signal;
    processing_end_process_group();
}

/// With --static-swift-stdlib the runtime's, Dispatch's and Foundation's constructors sit after
/// ours in this image's .init_array (and swiftrt's metadata registration may too): run the rest
/// of the array ourselves before entering Swift, since the worker never returns to the loader.
static void run_remaining_initializers(int argc, char **argv, char **envp) {
    if (__init_array_start == NULL || __init_array_end == NULL) return;
    init_function *entry = __init_array_start;
    for (; entry < __init_array_end; entry++) {
        if (*entry == processing_worker_constructor) { entry++; break; }
    }
    for (; entry < __init_array_end; entry++) {
        if (*entry != NULL && (uintptr_t)*entry != (uintptr_t)-1) (*entry)(argc, argv, envp);
    }
}

// MARK: - The build id

struct build_id_search { char *out; unsigned long capacity; int length; };

static int build_id_of_main_program(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct build_id_search *search = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_NOTE) continue;
        const unsigned char *note = (const unsigned char *)(info->dlpi_addr + header->p_vaddr);
        const unsigned char *end = note + header->p_memsz;
        while (note + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *entry = (const ElfW(Nhdr) *)note;
            const unsigned char *name = note + sizeof(ElfW(Nhdr));
            const unsigned char *desc = name + ((entry->n_namesz + 3) & ~3u);
            if (entry->n_type == NT_GNU_BUILD_ID && entry->n_namesz == 4 && memcmp(name, "GNU", 4) == 0
                && desc + entry->n_descsz <= end && 2 * (unsigned long)entry->n_descsz < search->capacity) {
                for (unsigned i = 0; i < entry->n_descsz; i++) sprintf(search->out + 2 * i, "%02x", desc[i]);
                search->length = (int)(2 * entry->n_descsz);
                return 1;
            }
            note = desc + ((entry->n_descsz + 3) & ~3u);
        }
    }
    return 1;  // the first object is the main program: stop there
}

int processing_build_id(char *out, unsigned long capacity) {
    struct build_id_search search = { out, capacity, 0 };
    if (capacity > 0) out[0] = 0;
    dl_iterate_phdr(build_id_of_main_program, &search);
    return search.length;
}

// MARK: - A remote worker's bridge: stdin and stdout to a socket the channel uses

// The channel needs one socket (it sends with sendmsg); ssh and other launchers give a
// remote worker two pipes. Two threads copy between them, blocking, off every Swift thread.
static int bridge_socket = -1;      // the bridge's end of the pair; the worker's end is the channel
static int bridge_input = -1;       // the original stdin
static int bridge_output = -1;      // the original stdout
static pthread_t bridge_out_thread;
static int bridge_active = 0;

static int write_all(int fd, const char *bytes, ssize_t count) {
    while (count > 0) {
        ssize_t written = write(fd, bytes, (size_t)count);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return 0;
        bytes += written;
        count -= written;
    }
    return 1;
}

/// Copies `from` to `to` until `from` ends (0) or a write to `to` fails (-1).
static int copy_stream(int from, int to, char *buffer, size_t size) {
    for (;;) {
        ssize_t count = read(from, buffer, size);
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) return 0;
        if (!write_all(to, buffer, count)) return -1;
    }
}

static void *bridge_copy_in(void *unused) {
    (void)unused;
    static char buffer[64 * 1024];
    copy_stream(bridge_input, bridge_socket, buffer, sizeof buffer);
    // The session ended (the parent, its ssh or the host's sshd is gone): the channel sees
    // the end and the worker exits, however busy its own code is.
    shutdown(bridge_socket, SHUT_WR);
    return NULL;
}

static void *bridge_copy_out(void *unused) {
    (void)unused;
    static char buffer[64 * 1024];
    // A failed write: no one reads the worker any more, and it has no one left to work for.
    if (copy_stream(bridge_socket, bridge_output, buffer, sizeof buffer) < 0) processing_end_process_group();
    close(bridge_output);
    return NULL;
}

/// Moves stdin and stdout off 0 and 1 (0 reads /dev/null, 1 writes to stderr, so that a
/// print cannot corrupt the channel) and returns the worker's end of the bridge, or -1.
static int start_bridge(void) {
    bridge_input = fcntl(0, F_DUPFD_CLOEXEC, 3);
    bridge_output = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int pair[2];
    if (bridge_input < 0 || bridge_output < 0 || null < 0
        || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return -1;
    dup2(null, 0);
    close(null);
    dup2(2, 1);
    bridge_socket = pair[1];
    pthread_t input_thread;
    if (pthread_create(&input_thread, NULL, bridge_copy_in, NULL) != 0) return -1;
    pthread_detach(input_thread);
    if (pthread_create(&bridge_out_thread, NULL, bridge_copy_out, NULL) != 0) return -1;
    bridge_active = 1;
    return pair[0];
}

int processing_worker_is_remote(void) { return bridge_active; }

#include <sys/un.h>

static socklen_t abstract_address(const char *name, struct sockaddr_un *address) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    size_t length = strlen(name);
    if (length > sizeof address->sun_path - 2) length = sizeof address->sun_path - 2;
    memcpy(address->sun_path + 1, name, length);  // sun_path[0] == 0: the abstract namespace
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + length);
}

int processing_listen_abstract(const char *name) {
    struct sockaddr_un address;
    socklen_t length = abstract_address(name, &address);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&address, length) != 0 || listen(fd, 1) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int processing_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_CLOEXEC); }

/// Connect mode: joins stdin and stdout to the abstract socket `name` (retrying while the
/// actor process there has not begun to listen), until either side ends.
static _Noreturn void run_connector(const char *name) {
    struct sockaddr_un address;
    socklen_t length = abstract_address(name, &address);
    int fd = -1;
    for (int attempt = 0; attempt < 3000; attempt++) {  // 30 s
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&address, length) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
        usleep(10000);
    }
    if (fd < 0) {
        fprintf(stderr, "Processing: no actor process listens on %s here\n", name);
        _exit(PROCESSING_EXIT_CHANNEL_UNUSABLE);
    }
    bridge_socket = fd;
    bridge_input = 0;
    bridge_output = 1;
    pthread_t input_thread;
    if (pthread_create(&input_thread, NULL, bridge_copy_in, NULL) != 0) _exit(PROCESSING_EXIT_CHANNEL_UNUSABLE);
    pthread_detach(input_thread);
    bridge_copy_out(NULL);  // until the actor process closes its end
    _exit(0);
}

int processing_worker_release_output(void) {
    if (bridge_active) return 0;  // a remote worker's output travels with its channel
    fflush(NULL);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return 0;
    int released = dup2(null_fd, STDOUT_FILENO) >= 0 && dup2(null_fd, STDERR_FILENO) >= 0;
    // With 1 or 2 closed by the process, /dev/null took that number: it stays.
    if (null_fd > STDERR_FILENO) close(null_fd);
    return released;
}

void processing_worker_exit(int code) {
    fflush(NULL);
    if (bridge_active) {
        // What the channel sent is in the socket; the bridge copies it out, then sees the end.
        shutdown(worker_control_fd, SHUT_WR);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        pthread_timedjoin_np(bridge_out_thread, NULL, &deadline);
    }
    _exit(code);
}

/// A worker ends its process group when its parent dies (PR_SET_PDEATHSIG and a handler).
static void die_with_parent(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = processing_parent_died;
    sigemptyset(&action.sa_mask);
    sigaction(PROCESSING_PARENT_DEATH_SIGNAL, &action, NULL);
    processing_set_parent_death_signal(PROCESSING_PARENT_DEATH_SIGNAL);
}

/// A remote worker: checks that it is the parent's build, then bridges its stdio.
static void start_remote_worker(const char *marker) {
    // stdio:<limit>:<build id>:<host>
    long long limit = 0;
    char expected[129] = { 0 };
    const char *host = "this host";
    const char *field = marker + strlen("stdio:");
    limit = atoll(field);
    const char *id = strchr(field, ':');
    if (id != NULL) {
        id++;
        const char *after = strchr(id, ':');
        size_t length = after ? (size_t)(after - id) : strlen(id);
        if (length < sizeof expected) memcpy(expected, id, length);
        if (after != NULL) host = after + 1;
    }
    char own[129];
    processing_build_id(own, sizeof own);
    if (strcmp(own, expected) != 0) {
        char path[4096];
        ssize_t count = readlink("/proc/self/exe", path, sizeof path - 1);
        path[count > 0 ? count : 0] = 0;
        fprintf(stderr, "Processing: the binary on %s (%s) is build %s, and the parent runs build %s: "
                        "copy the parent's build there, or let Processing copy it (RemoteBinary.automatic)\n",
                host, path, own[0] ? own : "(none)", expected[0] ? expected : "(none)");
        _exit(PROCESSING_EXIT_BUILD_MISMATCH);
    }
    int control = start_bridge();
    if (control < 0) {
        fprintf(stderr, "Processing: the remote worker on %s cannot bridge its stdio: %s\n", host, strerror(errno));
        _exit(PROCESSING_EXIT_CHANNEL_UNUSABLE);
    }
    worker_control_fd = control;
    if (limit > 0) worker_message_limit = limit;
}

__attribute__((constructor)) static void processing_worker_constructor(int argc, char **argv, char **envp) {
    const char *marker = getenv(PROCESSING_WORKER_ENV);
    if (marker == NULL) return;
    if (strcmp(marker, "buildid") == 0) {
        char own[129];
        processing_build_id(own, sizeof own);
        printf("%s\n", own);
        fflush(stdout);
        _exit(0);
    }
    if (strncmp(marker, "connect:", 8) == 0) {
        processing_set_parent_death_signal(SIGKILL);
        run_connector(marker + 8);
    }
    if (strncmp(marker, "stdio:", 6) == 0) {
        // Die with the session's process (sshd's): its children go with it.
        die_with_parent();
        start_remote_worker(marker);
        unsetenv(PROCESSING_WORKER_ENV);
        run_remaining_initializers(argc, argv, envp);
        processing_worker_main();
        _exit(0);
    }
    int control = -1;
    long parent = 0;
    long long limit = 0;
    int spare = 0;
    int fields = sscanf(marker, "%d:%ld:%lld:%d", &control, &parent, &limit, &spare);
    if (fields < 2) {
        fprintf(stderr, "Processing: %s is set to '%s', which is not a worker marker; unset it.\n",
                PROCESSING_WORKER_ENV, marker);
        _exit(PROCESSING_EXIT_BAD_MARKER);
    }
    // Die with the parent (the spawning thread is permanent, see Spawner), taking this
    // worker's own children with it, and catch the case where the parent died before this
    // line ran.
    die_with_parent();
    if (parent != 0 && (long)getppid() != parent) processing_end_process_group();
    if (fcntl(control, F_GETFD) == -1) {
        fprintf(stderr, "Processing: this process was started as a worker (%s is set) but has no control "
                        "channel on fd %d; do not set %s yourself.\n", PROCESSING_WORKER_ENV, control,
                PROCESSING_WORKER_ENV);
        _exit(PROCESSING_EXIT_NO_CONTROL_CHANNEL);
    }
    if (fields == 4) {
        worker_is_spare = spare;
        // A spare's marker may end with the type names it is to warm up for: after a fourth ':'.
        const char *hints = marker;
        for (int colons = 0; hints != NULL && colons < 4; colons++) {
            hints = strchr(hints, ':');
            if (hints != NULL) hints++;
        }
        if (hints != NULL) snprintf(worker_spare_hints, sizeof worker_spare_hints, "%s", hints);
    }
    // Nothing the user's code spawns later should become a worker by accident.
    unsetenv(PROCESSING_WORKER_ENV);
    worker_control_fd = control;
    if (fields >= 3) worker_message_limit = limit;
    run_remaining_initializers(argc, argv, envp);
    processing_worker_main();
    _exit(0);
}

// MARK: - Descriptors over Unix sockets

long processing_send_with_fds(int socket, const void *bytes, unsigned long length, const int *fds, int count) {
    if (count < 0 || count > PROCESSING_MAX_ATTACHED_FDS) { errno = EINVAL; return -1; }
    union {
        char buffer[CMSG_SPACE(sizeof(int) * PROCESSING_MAX_ATTACHED_FDS)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec vector = { .iov_base = (void *)bytes, .iov_len = length };
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (count > 0) {
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)count);
    }
    return (long)sendmsg(socket, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
}

long processing_receive_with_fds(int socket, void *bytes, unsigned long length, int *fds, int *count, int *truncated) {
    union {
        char buffer[CMSG_SPACE(sizeof(int) * PROCESSING_MAX_ATTACHED_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec vector = { .iov_base = bytes, .iov_len = length };
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;
    *count = 0;
    *truncated = 0;
    long received = (long)recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (received < 0) return received;
    if (message.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int n = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + sizeof(int) * (size_t)i, sizeof fd);
            if (*count < PROCESSING_MAX_ATTACHED_FDS) fds[(*count)++] = fd; else { close(fd); *truncated = 1; }
        }
    }
    return received;
}

#endif  // __linux__
