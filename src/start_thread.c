/* Start method "thread": the process is a thread of the caller, for debuggers and sanitizers that
 * then see everything in one process. Same API; what a thread cannot honour (being signalled,
 * crash isolation) is documented and refused with -ENOTSUP. */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "process_internal.h"

static void *thread_main(void *arg)
{
    mproc_process *p = arg;
    mproc__thread_enter(p);
    mproc__set_thread_identity(p->name, p->identity, p->owner);
    p->exitcode = p->run(p->arg) & 0xff;
    atomic_store_explicit(&p->finished, 1, memory_order_release);
    /* The sentinel becomes readable; it is never read, so it stays readable. */
    uint64_t one = 1;
    ssize_t w = write(p->fd, &one, sizeof one);
    (void)w;
    return NULL;
}

int mproc__start_thread(mproc_process *p)
{
    p->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->fd < 0) return -errno;
    p->owner = getpid();
    p->pid = p->owner;
    int r = pthread_create(&p->thread, NULL, thread_main, p);
    if (r != 0) {
        close(p->fd);
        p->fd = -1;
        return -r;
    }
    return 0;
}

bool mproc__thread_reap(mproc_process *p)
{
    if (!atomic_load_explicit(&p->finished, memory_order_acquire)) return false;
    /* The body has returned; the thread is about to end, so this join is short. */
    pthread_join(p->thread, NULL);
    return true;
}
