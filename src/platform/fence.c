#include "platform/fence.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic bool mproc__fence_asym;
static _Atomic bool registered; /* this process asked already (forgotten in a forked child) */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

/* A child is a new mm: whether the registration carried over is the kernel's business, so ask
 * again rather than rely on it. */
static void forget(void)
{
    atomic_store(&registered, false);
    atomic_store(&mproc__fence_asym, false);
}

static void at_fork(void)
{
    pthread_atfork(NULL, NULL, forget);
}

void mproc__fence_setup(void)
{
    if (__builtin_expect(atomic_load_explicit(&registered, memory_order_relaxed), 1)) return;
    pthread_once(&once, at_fork);
    int cmds = membarrier(MEMBARRIER_CMD_QUERY);
    bool ok = cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
              membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
    /* Threads of this process that already passed here read the flag with their light fence;
     * setting it after registering keeps every light fence covered. */
    atomic_store(&mproc__fence_asym, ok);
    atomic_store(&registered, true);
}

bool mproc__fence_heavy(void)
{
    atomic_thread_fence(memory_order_seq_cst);
    return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}
