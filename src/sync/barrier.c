/* Barrier with Python's threading.Barrier semantics (filling, draining, resetting, broken), on a
 * robust mutex and a futex word that plays the condition variable (every change of state that
 * someone may wait for bumps it and wakes all). The last party to arrive runs the action under
 * the mutex, then lets the others go. If a process dies holding the mutex, the barrier is broken:
 * its state may be half-updated, and the parties would otherwise wait for one that never comes. */
#include <errno.h>
#include <limits.h>

#include "sync/sync.h"

enum { FILLING = 0, DRAINING = 1, RESETTING = -1, BROKEN = -2 };

struct mproc_barrier {
    uint32_t magic;
    _Atomic uint32_t seq; /* bumped (and sleepers woken) on every state change */
    _Atomic uint32_t sleepers;
    int state;
    unsigned count; /* parties inside wait() */
    unsigned parties;
    int (*action)(void *arg);
    void *arg;
    pthread_mutex_t m; /* robust, process-shared, error-checking */
};

typedef struct {
    unsigned parties;
    int (*action)(void *arg);
    void *arg;
} barrier_args;

static int barrier_init(void *obj, void *arg)
{
    mproc_barrier *b = obj;
    const barrier_args *a = arg;
    int r = mproc__robust_mutex_init(&b->m, PTHREAD_MUTEX_ERRORCHECK);
    if (r < 0) return r;
    b->parties = a->parties;
    b->action = a->action;
    b->arg = a->arg;
    return 0;
}

int mproc_barrier_new(mproc_barrier **out, unsigned parties, int (*action)(void *arg), void *arg)
{
    return mproc__sync_new((void **)out, parties > 0 && parties <= INT_MAX, sizeof **out,
                           MPROC__BARRIER_MAGIC, barrier_init,
                           &(barrier_args){parties, action, arg});
}

static bool valid(mproc_barrier *b)
{
    return mproc__sync_valid(b, sizeof *b, MPROC__BARRIER_MAGIC);
}

static void notify_all(mproc_barrier *b)
{
    atomic_fetch_add(&b->seq, 1);
    if (atomic_load(&b->sleepers)) mproc__futex_wake(&b->seq, INT_MAX);
}

static void break_barrier(mproc_barrier *b)
{
    b->state = BROKEN;
    notify_all(b);
}

static void lock(mproc_barrier *b)
{
    if (mproc__robust_mutex_lock(&b->m, MPROC_FOREVER) == MPROC_EOWNERDEAD) break_barrier(b);
}

static void unlock(mproc_barrier *b)
{
    pthread_mutex_unlock(&b->m);
}

/* Release the mutex, sleep until the state changes or the deadline, take the mutex again.
 * -ETIMEDOUT when the deadline passed, else 0 (the caller re-checks the state). */
static int wait_change(mproc_barrier *b, int64_t deadline)
{
    uint32_t s = atomic_load(&b->seq);
    unlock(b);
    int r = 0;
    if (!mproc__spin_while_eq(&b->seq, s)) {
        atomic_fetch_add(&b->sleepers, 1);
        while (atomic_load(&b->seq) == s) {
            r = mproc__futex_wait(&b->seq, s, deadline);
            if (r == -ETIMEDOUT) break;
            r = 0;
        }
        atomic_fetch_sub(&b->sleepers, 1);
    }
    lock(b);
    return r;
}

/* The last one out of a draining or resetting barrier lets new arrivals in. */
static void leave(mproc_barrier *b)
{
    b->count--;
    if (b->count == 0 && (b->state == RESETTING || b->state == DRAINING)) {
        b->state = FILLING;
        notify_all(b);
    }
}

int mproc_barrier_wait(mproc_barrier *b, double timeout)
{
    if (!valid(b) || mproc__timeout_check(timeout)) return -EINVAL;
    int64_t deadline = mproc__deadline(timeout);
    lock(b);
    /* Wait for the previous round to drain (or a reset to finish): no deadline, as in Python. */
    while (b->state == DRAINING || b->state == RESETTING)
        wait_change(b, INT64_MAX);
    if (b->state == BROKEN) {
        unlock(b);
        return MPROC_EBROKEN;
    }
    int index = (int)b->count++;
    int r = index;
    if ((unsigned)index + 1 == b->parties) {
        if (b->action && b->action(b->arg) != 0) {
            break_barrier(b);
            r = MPROC_EBROKEN;
        } else {
            b->state = DRAINING;
            notify_all(b);
        }
    } else {
        while (b->state == FILLING) {
            if (wait_change(b, deadline) == -ETIMEDOUT && b->state == FILLING) {
                break_barrier(b);
                r = -ETIMEDOUT;
                break;
            }
        }
        if (r >= 0 && b->state != DRAINING) r = MPROC_EBROKEN;
    }
    leave(b);
    unlock(b);
    return r;
}

int mproc_barrier_abort(mproc_barrier *b)
{
    if (!valid(b)) return -EINVAL;
    lock(b);
    break_barrier(b);
    unlock(b);
    return 0;
}

int mproc_barrier_reset(mproc_barrier *b)
{
    if (!valid(b)) return -EINVAL;
    lock(b);
    if (b->count > 0) {
        /* Waiters get MPROC_EBROKEN; the last of them to leave makes the barrier fill again. */
        if (b->state == FILLING || b->state == BROKEN) b->state = RESETTING;
    } else {
        b->state = FILLING;
    }
    notify_all(b);
    unlock(b);
    return 0;
}

bool mproc_barrier_broken(mproc_barrier *b)
{
    if (!valid(b)) return false;
    lock(b);
    bool r = b->state == BROKEN;
    unlock(b);
    return r;
}

int mproc_barrier_n_waiting(mproc_barrier *b)
{
    if (!valid(b)) return -EINVAL;
    lock(b);
    int n = b->state == FILLING ? (int)b->count : 0;
    unlock(b);
    return n;
}

int mproc_barrier_parties(mproc_barrier *b)
{
    if (!valid(b)) return -EINVAL;
    return (int)b->parties;
}

void mproc_barrier_free(mproc_barrier *b)
{
    if (!valid(b)) return;
    __atomic_store_n(&b->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    pthread_mutex_destroy(&b->m);
    mproc__arena_free(b);
}
