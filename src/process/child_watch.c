#include "process/child_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "platform/platform.h"

static int own_sentinel = -1; /* our end of our parent's fallback sentinel pipe */

int mproc__watch_prepare(mproc__watch_prep *w)
{
    w->parent_end = w->child_end = -1;
    if (mproc__pidfd_supported()) return 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    w->parent_end = fds[0];
    w->child_end = fds[1];
    return 0;
}

void mproc__watch_in_child(mproc__watch_prep *w)
{
    /* The sentinel our parent holds for its own parent is not ours to keep alive. */
    mproc__watch_forget_own();
    if (w->child_end < 0) return;
    close(w->parent_end);
    /* Held until the very end, even across an exec of another program. */
    fcntl(w->child_end, F_SETFD, 0);
    own_sentinel = w->child_end;
}

void mproc__watch_forget_own(void)
{
    if (own_sentinel >= 0) close(own_sentinel);
    own_sentinel = -1;
}

int mproc__watch_in_parent(mproc__watch_prep *w, pid_t pid)
{
    if (w->child_end >= 0) close(w->child_end);
    if (pid < 0) {
        if (w->parent_end >= 0) close(w->parent_end);
        return -EINVAL;
    }
    if (w->parent_end >= 0) return w->parent_end;
    int fd = mproc__pidfd_open(pid);
    if (fd < 0) {
        /* Without a way to watch it we cannot supervise it: end it now rather than leak it. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return fd;
}

int mproc__watch_reap(pid_t pid, int fd, int *code)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = mproc__pidfd_supported() ? waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG)
                                     : waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
    if (r < 0) return -errno;
    if (si.si_pid == 0 && fd >= 0 && !mproc__pidfd_supported() && mproc__pidfd_wait(fd, 0) == 1) {
        /* The sentinel closes while the child exits, a moment before it can be reaped: it is
         * ending, so wait for it rather than spin. */
        do
            r = waitid(P_PID, (id_t)pid, &si, WEXITED);
        while (r < 0 && errno == EINTR);
        if (r < 0) return -errno;
    }
    if (si.si_pid == 0) return 0;
    *code = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    return 1;
}

int mproc__watch_signal(pid_t pid, int fd, int sig)
{
    int r;
    if (mproc__pidfd_supported())
        r = mproc__pidfd_send_signal(fd, sig);
    else
        r = kill(pid, sig) < 0 ? -errno : 0;
    return r == -ESRCH ? 0 : r;
}
