/* Robust, process-shared pthread mutexes: the one set-up every layer that keeps a mutex in shared
 * memory (the arena's allocator, log rotation, mproc_lock) needs, so that a holder's death is
 * reported to the next locker instead of wedging the family. */
#ifndef MPROC_PLATFORM_ROBUST_H
#define MPROC_PLATFORM_ROBUST_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

/* Robust, process-shared mutex of the given type (PTHREAD_MUTEX_DEFAULT, _ERRORCHECK or
 * _RECURSIVE). 0 or a negative errno. */
int mproc__robust_mutex_init(pthread_mutex_t *m, int type);

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
