/* Waiter marks (see sync.h): a robust mutex that a waiter holds while it waits, so that the
 * kernel, which walks a dying thread's robust list, tells everyone else that it died. */
#include <errno.h>
#include <linux/futex.h>

#include "sync/sync.h"

int mproc__mark_init(mproc__mark *k)
{
    return mproc__robust_mutex_init(&k->m, PTHREAD_MUTEX_NORMAL);
}

void mproc__mark_hold(mproc__mark *k)
{
    /* Only a free mark is held: the caller's own lock orders it after the last holder's drop or
     * after a reap. A dead holder the reap has not seen yet is taken over here. */
    if (pthread_mutex_trylock(&k->m) == EOWNERDEAD) pthread_mutex_consistent(&k->m);
}

void mproc__mark_drop(mproc__mark *k)
{
    pthread_mutex_unlock(&k->m);
}

bool mproc__mark_dead(mproc__mark *k)
{
    return __atomic_load_n(&k->m.__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED;
}

bool mproc__mark_held(mproc__mark *k)
{
    return mproc__mutex_owner(&k->m) != 0;
}

bool mproc__mark_reap(mproc__mark *k)
{
    if (!mproc__mark_dead(k) || pthread_mutex_trylock(&k->m) != EOWNERDEAD) return false;
    pthread_mutex_consistent(&k->m);
    pthread_mutex_unlock(&k->m);
    return true;
}

void mproc__mark_destroy(mproc__mark *k)
{
    pthread_mutex_destroy(&k->m);
}
