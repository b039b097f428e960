/* Ctrl-C during a long call (interrupt.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>

#include "platform/interrupt.h"

void mproc__intr_block(mproc__intr *st)
{
    sigset_t set;
    sigfillset(&set);
    const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
        sigdelset(&set, sync_sigs[i]);
    pthread_sigmask(SIG_BLOCK, &set, &st->old);
}

static bool default_ignored(int sig)
{
    return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

bool mproc__intr_pending(const mproc__intr *st)
{
    sigset_t pending;
    if (sigpending(&pending) < 0) return false;
    for (int sig = 1; sig < NSIG; sig++) {
        if (!sigismember(&pending, sig) || sigismember(&st->old, sig)) continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) < 0) continue;
        if (!(sa.sa_flags & SA_SIGINFO) &&
            (sa.sa_handler == SIG_IGN || (sa.sa_handler == SIG_DFL && default_ignored(sig))))
            continue;
        return true;
    }
    return false;
}

void mproc__intr_restore(const mproc__intr *st)
{
    pthread_sigmask(SIG_SETMASK, &st->old, NULL);
}

int mproc__intr_wait(const mproc__intr *st, int (*wait)(void *arg, int64_t step), void *arg,
                     int64_t deadline)
{
    for (;;) {
        if (mproc__intr_pending(st)) return -EINTR;
        int64_t step = mproc__now_ns() + MPROC__INTR_POLL_NS;
        bool last = deadline <= step;
        int r = wait(arg, last ? deadline : step);
        if (r != -ETIMEDOUT || last) return r;
    }
}

/* ppoll until a fd is ready or the deadline, signals blocked but during the sleep. */
static int ppoll_until(const mproc__intr *st, struct pollfd *fds, nfds_t n, int64_t deadline)
{
    for (;;) {
        struct timespec ts, *tsp = NULL;
        if (deadline != INT64_MAX) {
            int64_t left = mproc__remaining_ns(deadline);
            if (left < 0) left = 0;
            ts = (struct timespec){.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
            tsp = &ts;
        }
        /* Never restarted after a handler, SA_RESTART or not (signal(7)). */
        int r = ppoll(fds, n, tsp, &st->old);
        if (r > 0) return r;
        if (r == 0) {
            if (mproc__remaining_ns(deadline) <= 0) return 0;
            continue;
        }
        if (errno != EINTR) return -errno;
        /* What it waited for wins a tie. */
        r = poll(fds, n, 0);
        return r > 0 ? r : -EINTR;
    }
}

int mproc__intr_poll_in(const mproc__intr *st, int fd, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = ppoll_until(st, &pfd, 1, deadline);
    return r > 0 ? 1 : r;
}

int mproc__intr_sleep(int (*step)(void *arg, int64_t until), void *arg, int64_t deadline)
{
    mproc__intr st;
    mproc__intr_block(&st);
    int r = mproc__intr_wait(&st, step, arg, deadline);
    if (r == -EINTR) {
        int last = step(arg, 0);
        if (last != -ETIMEDOUT) r = last;
    }
    mproc__intr_restore(&st);
    return r;
}

int mproc__intr_poll(struct pollfd *fds, nfds_t n, int64_t deadline)
{
    if (deadline <= mproc__now_ns()) {
        int r = poll(fds, n, 0);
        return r < 0 ? -errno : r;
    }
    mproc__intr st;
    mproc__intr_block(&st);
    int r = ppoll_until(&st, fds, n, deadline);
    mproc__intr_restore(&st);
    return r;
}
