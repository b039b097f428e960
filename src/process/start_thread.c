/* Start method "thread": the process is a thread of the caller, for debuggers and sanitizers that
 * then see everything in one process. Same API; what a thread cannot honour (being signalled,
 * crash isolation) is documented and refused with -ENOTSUP. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "channel/conn.h"
#include "platform/platform.h"
#include "process/process.h"

static void *thread_main(void *arg)
{
    mproc_process *p = arg;
    mproc__thread_enter(p);
    /* Made by whichever thread started it (a pool's supervisor blocks every signal). */
    pthread_sigmask(SIG_SETMASK, &p->start_mask, NULL);
    mproc__conn_ctx_enter((uintptr_t)p);
    mproc__set_thread_identity(p->name, p->identity, p->owner);
    p->exitcode = p->run(p->arg) & 0xff;
    /* As a process's fds close when it exits: its references to connections go. */
    mproc__conn_ctx_drop((uintptr_t)p);
    atomic_store_explicit(&p->finished, 1, memory_order_release);
    /* The sentinel becomes readable; it is never read, so it stays readable. */
    uint64_t one = 1;
    ssize_t w = write(p->fd, &one, sizeof one);
    (void)w;
    return NULL;
}

static int thread_start(mproc_process *p)
{
    p->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->fd < 0) return -errno;
    p->owner = mproc__pid();
    p->pid = p->owner;
    /* Its own references to the caller's connections, as a fork child gets its own fds. */
    int r = mproc__conn_ctx_share((uintptr_t)p);
    if (r < 0) {
        close(p->fd);
        p->fd = -1;
        return r;
    }
    r = pthread_create(&p->thread, NULL, thread_main, p);
    if (r != 0) {
        mproc__conn_ctx_drop((uintptr_t)p);
        close(p->fd);
        p->fd = -1;
        return -r;
    }
    return 0;
}

/* Collect a finished thread (pthread_join) once. */
static int thread_reap(mproc_process *p, int *code)
{
    if (!atomic_load_explicit(&p->finished, memory_order_acquire)) return 0;
    /* The body has returned; the thread is about to end, so this join is short. */
    pthread_join(p->thread, NULL);
    *code = p->exitcode;
    return 1;
}

/* A thread cannot be signalled without signalling the whole process. */
static int thread_signal(mproc_process *p, int sig)
{
    return -ENOTSUP;
}

const mproc__start_ops mproc__start_thread_ops = {
    .name = "thread",
    .in_process = true,
    .start = thread_start,
    .reap = thread_reap,
    .signal = thread_signal,
};
