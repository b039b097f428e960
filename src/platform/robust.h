/* Robust, process-shared pthread mutexes: the one set-up every layer that keeps a mutex in shared
 * memory (the arena's allocator, log rotation, mproc_lock) needs, so that a holder's death is
 * reported to the next locker instead of wedging the family. */
#ifndef MPROC_PLATFORM_ROBUST_H
#define MPROC_PLATFORM_ROBUST_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

/* Robust, process-shared mutex of the given type (PTHREAD_MUTEX_DEFAULT, _ERRORCHECK or
 * _RECURSIVE). 0 or a negative errno. */
int mproc__robust_mutex_init(pthread_mutex_t *m, int type);

/* pthread_mutex_clocklock on CLOCK_MONOTONIC (seen by ThreadSanitizer as a lock). */
int mproc__robust_clocklock(pthread_mutex_t *m, const struct timespec *ts);

/* Take a robust mutex, however long it takes: pthread's result (0, EOWNERDEAD, EDEADLK...). Never
 * in one untimed sleep: a waiter woken (by an unlock, or by the kernel when the holder died) and
 * killed before it takes the mutex loses the wake-up with it. The kernel passes it on only when
 * the mutex word is 0 at that moment; if it still names the dead holder, or a newcomer took the
 * mutex meanwhile without waiting (and so will wake nobody when it unlocks), the others sleep on
 * for ever. So each sleep ends after MPROC__ROBUST_RECHECK_NS and looks at the word again. */
#define MPROC__ROBUST_RECHECK_NS 10000000
int mproc__robust_wait(pthread_mutex_t *m);

/* Lock for state that needs no repair after its holder died (each change to it is one store, or
 * it is re-read from elsewhere): the mutex is made consistent at once. True when the previous
 * holder had died holding it. */
bool mproc__robust_lock(pthread_mutex_t *m);

/* The kernel thread id holding a robust mutex (0: nobody). glibc keeps the owner's tid in the
 * futex word, which the kernel clears when the owner dies, so this cannot name a dead thread. */
static inline pid_t mproc__mutex_owner(pthread_mutex_t *m)
{
    return (pid_t)(__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) & 0x3fffffff);
}

#endif
