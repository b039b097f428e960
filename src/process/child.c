/* The child side of starting a process, whatever the method forked it (the caller for "fork",
 * the helper for "forkserver"): tie its life to its parent, take its identity, run the body, and
 * end the way a child of the library ends. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "process/process.h"
#include "process/signals.h"

/* Before its identity: daemonic children die with their parent; the others are told to end
 * (children never outlive a dead parent unnoticed). stdin is /dev/null, as in Python. */
static void guard_and_detach_stdin(bool daemon, pid_t real_parent)
{
    prctl(PR_SET_PDEATHSIG, daemon ? SIGKILL : SIGTERM);
    if (getppid() != real_parent) _exit(128 + (daemon ? SIGKILL : SIGTERM));
    /* The lowest free descriptor, 0 once it is closed: no dup2 and second close. */
    close(STDIN_FILENO);
    int null = open("/dev/null", O_RDONLY);
    if (null > STDIN_FILENO) { /* only if someone else took 0 meanwhile: not in a new child */
        dup2(null, STDIN_FILENO);
        close(null);
    }
}

_Noreturn void mproc__run_child(mproc_process *p, pid_t real_parent, pid_t logical_parent)
{
    /* Whatever the stdio buffers hold is a copy of what the parent has yet to write: the parent's
     * to write, not ours. The flush before the fork cannot guarantee they are empty: another
     * thread of the parent (main, while a pool's supervisor forks a replacement) may be writing. */
    __fpurge(stdin);
    __fpurge(stdout);
    __fpurge(stderr);
    guard_and_detach_stdin(p->daemon, real_parent);
    /* The program's mask, not the forking thread's (a library thread blocks everything), and
     * none of the dispositions the library set in this process for itself. */
    mproc__sig_child_reset(p->start_mask_set ? &p->start_mask : NULL);
    mproc__child_setup(p, logical_parent);
    mproc__child_exit(p->run(p->arg));
}

_Noreturn void mproc__child_exit(int code)
{
    fflush(stdout);
    fflush(stderr);
    mproc__registry_end_children();
    _exit(code & 0xff);
}
