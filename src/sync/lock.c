/* Lock: a robust, process-shared, error-checking pthread mutex in the family arena.
 * Robust: the kernel walks a dying thread's robust list and marks the mutexes it held, so the
 * next acquirer gets EOWNERDEAD instead of waiting forever; we make the mutex consistent at once
 * (the caller is told through MPROC_EOWNERDEAD and repairs what the lock protects). */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "platform/interrupt.h"
#include "sync/proxy.h"
#include "sync/sync.h"

static int mutex_result(pthread_mutex_t *m, int r)
{
    switch (r) {
    case 0:
        return 0;
    case EOWNERDEAD:
        pthread_mutex_consistent(m);
        return MPROC_EOWNERDEAD;
    case EBUSY:
        return -EAGAIN;
    case EAGAIN: /* recursion count exhausted */
        return -EOVERFLOW;
    default:
        return -r;
    }
}

/* The first look and the spin, with the caller's signal mask: true when they settled it (*r the
 * pthread result), false when the holder kept it. */
static bool try_then_spin(pthread_mutex_t *m, double timeout, int *r)
{
    /* Uncontended: one atomic compare-and-swap (plus the robust-list bookkeeping). */
    *r = pthread_mutex_trylock(m);
    if (*r != EBUSY || timeout == 0) return true;
    /* Held by another: it is often released within a few µs, cheaper to wait out than to sleep. */
    _Atomic uint32_t *word = (_Atomic uint32_t *)&m->__data.__lock;
    uint32_t seen = atomic_load_explicit(word, memory_order_relaxed);
    if (seen && mproc__spin_while_eq(word, seen)) {
        *r = pthread_mutex_trylock(m);
        if (*r != EBUSY) return true;
    }
    return false;
}

/* One bounded sleep on the mutex (mproc__intr_sleep); `until` passed: a look. */
static int lock_step(void *arg, int64_t until)
{
    pthread_mutex_t *m = arg;
    int r;
    if (until <= mproc__now_ns()) {
        r = pthread_mutex_trylock(m);
    } else {
        struct timespec ts = mproc__abs_timespec(until);
        r = mproc__robust_clocklock(m, &ts);
    }
    return r == EBUSY || r == ETIMEDOUT ? -ETIMEDOUT : mutex_result(m, r);
}

int mproc__robust_mutex_lock(pthread_mutex_t *m, double timeout)
{
    int r;
    if (try_then_spin(m, timeout, &r)) return mutex_result(m, r);
    /* glibc retries its futex wait after a handler: sleep in steps, signals blocked. */
    return mproc__intr_sleep(lock_step, m, mproc__deadline(timeout));
}

int mproc__robust_mutex_hold(pthread_mutex_t *m)
{
    int r;
    if (try_then_spin(m, MPROC_FOREVER, &r)) return mutex_result(m, r);
    return mutex_result(m, mproc__robust_wait(m));
}

static int lock_init(void *obj, void *arg)
{
    (void)arg;
    return mproc__robust_mutex_init(&((mproc_lock *)obj)->m, PTHREAD_MUTEX_ERRORCHECK);
}

int mproc_lock_new(mproc_lock **out)
{
    return mproc__sync_new((void **)out, true, sizeof **out, MPROC__LOCK_MAGIC, lock_init, NULL);
}

int mproc_lock_acquire(mproc_lock *l, double timeout)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__LOCK_MAGIC))
        return MPROC__PROXY_OR_EINVAL(lock_acquire, l, timeout);
    if (mproc__timeout_check(timeout)) return -EINVAL;
    return mproc__robust_mutex_lock(&l->m, timeout);
}

int mproc_lock_release(mproc_lock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__LOCK_MAGIC))
        return MPROC__PROXY_OR_EINVAL(lock_release, l);
    return -pthread_mutex_unlock(&l->m);
}

bool mproc_lock_locked(mproc_lock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__LOCK_MAGIC))
        return MPROC__PROXY_OR(-EINVAL, lock_locked, l) > 0;
    return mproc__mutex_owner(&l->m) != 0;
}

void mproc_lock_free(mproc_lock *l)
{
    if (!mproc__sync_valid(l, sizeof *l, MPROC__LOCK_MAGIC)) {
        if (l) MPROC__PROXY_VOID(lock_free, l);
        return;
    }
    /* A mutex still held by this thread is on its robust list: unlink it before the memory is
     * reused, or the kernel would write into whatever lives there when the thread exits. */
    if (mproc__mutex_owner(&l->m) == mproc__gettid()) pthread_mutex_unlock(&l->m);
    __atomic_store_n(&l->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    pthread_mutex_destroy(&l->m);
    mproc__arena_free(l);
}
