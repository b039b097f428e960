/* Start method "fork": the child is a fork of the caller, reaped by the caller through its watch
 * fd (pidfd, or the sentinel pipe where pidfds are missing). */
#include <errno.h>
#include <unistd.h>

#include "platform/platform.h"
#include "process/child_watch.h"
#include "process/process.h"

static int fork_start(mproc_process *p)
{
    mproc__watch_prep w;
    int r = mproc__watch_prepare(&w);
    if (r < 0) return r;
    pid_t parent = mproc__pid();
    pid_t pid = fork();
    if (pid == 0) {
        mproc__watch_in_child(&w);
        mproc__run_child(p, parent, parent);
    }
    int e = errno;
    int fd = mproc__watch_in_parent(&w, pid);
    if (pid < 0) return -e;
    if (fd < 0) return fd;
    p->pid = pid;
    p->fd = fd;
    return 0;
}

static int fork_reap(mproc_process *p, int *code)
{
    return mproc__watch_reap(p->pid, p->fd, code);
}

int mproc__signal_watched(mproc_process *p, int sig)
{
    return mproc__watch_signal(p->pid, p->fd, sig);
}

const mproc__start_ops mproc__start_fork_ops = {
    .name = "fork",
    .inherits_mask = true,
    .start = fork_start,
    .reap = fork_reap,
    .signal = mproc__signal_watched,
};
