#ifndef C_PROCESSING_SHIMS_H
#define C_PROCESSING_SHIMS_H

#include <signal.h>
#include <spawn.h>
#include <sys/types.h>

/// The environment variable that marks a re-executed binary as a worker. Its value is
/// "<control fd>:<parent pid>".
#define PROCESSING_WORKER_ENV "__SWIFT_PROCESSING_WORKER"

/// The fd numbers a worker finds its channels on (mapped by posix_spawn file actions).
#define PROCESSING_WORKER_CONTROL_FD 3

/// The control fd the constructor found in a worker, or -1 in an ordinary process.
int processing_worker_control_fd(void);

int processing_pidfd_open(pid_t pid);
int processing_pidfd_send_signal(int pidfd, int signal);
/// waitid(P_PIDFD, pidfd, WEXITED | WNOHANG). Returns 1 and fills the outputs when the child
/// was reaped, 0 when it is still running, -1 with errno on error.
int processing_pidfd_reap(int pidfd, int *code, int *status);
int processing_pipe2_cloexec(int fds[2]);
int processing_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int lowfd);
/// The image base of the loaded object containing `address` (dladdr), or NULL.
void *processing_image_base(const void *address);
/// Sets PR_SET_PDEATHSIG; returns 0 or -1.
int processing_set_parent_death_signal(int signal);

#endif
