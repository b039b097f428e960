#include "platform/robust.h"

#include <errno.h>

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
    if (pthread_mutex_lock(m) != EOWNERDEAD) return false;
    pthread_mutex_consistent(m);
    return true;
}
