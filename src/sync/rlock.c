/* RLock: a robust, process-shared, recursive pthread mutex. The owner is a thread (kernel tid,
 * unique across the family's processes); glibc keeps the recursion count in the mutex itself. */
#include <errno.h>
#include <pthread.h>

#include "sync/sync.h"

static int rlock_init(void *obj, void *arg)
{
    (void)arg;
    return mproc__robust_mutex_init(&((mproc_rlock *)obj)->m, PTHREAD_MUTEX_RECURSIVE);
}

int mproc_rlock_new(mproc_rlock **out)
{
    return mproc__sync_new((void **)out, true, sizeof **out, MPROC__RLOCK_MAGIC, rlock_init, NULL);
}

int mproc_rlock_acquire(mproc_rlock *l, double timeout)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__RLOCK_MAGIC) || mproc__timeout_check(timeout))
        return -EINVAL;
    return mproc__robust_mutex_lock(&l->m, timeout);
}

int mproc_rlock_release(mproc_rlock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__RLOCK_MAGIC)) return -EINVAL;
    return -pthread_mutex_unlock(&l->m);
}

bool mproc_rlock_locked(mproc_rlock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__RLOCK_MAGIC)) return false;
    return mproc__mutex_owner(&l->m) != 0;
}

unsigned mproc_rlock_count(mproc_rlock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__RLOCK_MAGIC)) return 0;
    /* Only the owner may read the count: nobody else changes it while it holds the mutex. */
    if (mproc__mutex_owner(&l->m) != mproc__gettid()) return 0;
    return l->m.__data.__count;
}

void mproc_rlock_free(mproc_rlock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__RLOCK_MAGIC)) return;
    /* Off this thread's robust list before the memory is reused (see mproc_lock_free). */
    if (mproc__mutex_owner(&l->m) == mproc__gettid())
        while (pthread_mutex_unlock(&l->m) == 0 && mproc__mutex_owner(&l->m) != 0) {
        }
    __atomic_store_n(&l->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    pthread_mutex_destroy(&l->m);
    mproc__arena_free(l);
}
