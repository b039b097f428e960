#include "platform/robust.h"

#include <errno.h>

#include "platform/platform.h"

/* ThreadSanitizer (scripts/tsan) before LLVM 15 does not intercept pthread_mutex_clocklock: it
 * would not see the lock taken, and would report the unlock and every access the lock guards. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#include <sanitizer/tsan_interface.h>
#define CLOCKLOCK_TSAN 1
#endif
#endif

int mproc__robust_clocklock(pthread_mutex_t *m, const struct timespec *ts)
{
#ifdef CLOCKLOCK_TSAN
    __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
    int r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, ts);
    __tsan_mutex_post_lock(
        m, __tsan_mutex_try_lock | (r == 0 || r == EOWNERDEAD ? 0 : __tsan_mutex_try_lock_failed),
        0);
    return r;
#else
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, ts);
#endif
}

int mproc__robust_wait(pthread_mutex_t *m)
{
    int r = pthread_mutex_trylock(m);
    while (r == EBUSY || r == ETIMEDOUT) {
        /* Each step that times out looks at the word afresh: a dead holder's mutex is taken over,
         * a free one taken, a held one slept on again (with the waiters bit set again). */
        struct timespec ts = mproc__abs_timespec(mproc__now_ns() + MPROC__ROBUST_RECHECK_NS);
        r = mproc__robust_clocklock(m, &ts);
    }
    return r;
}

int mproc__robust_mutex_init(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r) return -r;
    r = pthread_mutexattr_settype(&a, type);
    if (!r) r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!r) r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

bool mproc__robust_lock(pthread_mutex_t *m)
{
    if (mproc__robust_wait(m) != EOWNERDEAD) return false;
    pthread_mutex_consistent(m);
    return true;
}
