/* Start method "fork": the child is a fork of the caller. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "child_watch.h"
#include "platform.h"
#include "process_internal.h"

/* In the new child, before its identity: tie its life to its parent, give it a quiet stdin. */
static void guard_and_detach_stdin(bool daemon, pid_t real_parent)
{
    /* Daemonic children die with their parent; the others are told to end (children never
     * outlive a dead parent unnoticed). */
    prctl(PR_SET_PDEATHSIG, daemon ? SIGKILL : SIGTERM);
    if (getppid() != real_parent) _exit(128 + (daemon ? SIGKILL : SIGTERM));
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null > STDIN_FILENO) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
}

_Noreturn void mproc__run_child(mproc_process *p, pid_t real_parent, pid_t logical_parent)
{
    guard_and_detach_stdin(p->daemon, real_parent);
    mproc__child_setup(p, logical_parent);
    mproc__child_exit(p->run(p->arg));
}

int mproc__start_fork(mproc_process *p)
{
    mproc__watch_prep w;
    int r = mproc__watch_prepare(&w);
    if (r < 0) return r;
    pid_t parent = getpid();
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
