/* Condition with exact notify(n), as CPython's multiprocessing Condition (sleeping_count,
 * woken_count, wait_semaphore), folded into two words:
 *   counts = waiters << 32 | tickets   (one 64-bit atomic, so both change together)
 *   seq    = futex word, bumped by every notify
 * A waiter registers (waiters+1) with the lock held, releases the lock and sleeps until it can
 * take a ticket, which also unregisters it (waiters-1, tickets-1) in one step. notify(n) issues
 * min(n, waiters - tickets) tickets, so exactly that many waiters return "notified", whoever
 * they are; a waiter that times out unregisters under the lock, where notify cannot interleave,
 * and takes a ticket instead if one was issued to it meanwhile (it was notified after all).
 * Unlike CPython, notify does not wait for the woken to acknowledge: no hang if one of them dies.
 */
#include <errno.h>
#include <limits.h>

#include "sync/sync.h"

struct mproc_condition {
    uint32_t magic;
    _Atomic uint32_t seq;
    _Atomic uint64_t counts;
    mproc_lock *lock;
    bool own_lock;
};

#define WAITER ((uint64_t)1 << 32)
#define TICKETS(c) ((uint32_t)(c))
#define WAITERS(c) ((uint32_t)((c) >> 32))

static int condition_init(void *obj, void *arg)
{
    mproc_condition *c = obj;
    mproc_lock *lock = arg;
    if (!lock) {
        int r = mproc_lock_new(&lock);
        if (r < 0) return r;
        c->own_lock = true;
    }
    c->lock = lock;
    return 0;
}

int mproc_condition_new(mproc_condition **out, mproc_lock *lock)
{
    bool ok = !lock || mproc__sync_valid(lock, sizeof *lock, MPROC__LOCK_MAGIC);
    return mproc__sync_new((void **)out, ok, sizeof **out, MPROC__CONDITION_MAGIC, condition_init,
                           lock);
}

static bool valid(mproc_condition *c)
{
    return mproc__sync_valid(c, sizeof *c, MPROC__CONDITION_MAGIC) &&
           mproc__sync_valid(c->lock, sizeof *c->lock, MPROC__LOCK_MAGIC);
}

static bool held(mproc_condition *c)
{
    return mproc__mutex_owner(&c->lock->m) == mproc__gettid();
}

mproc_lock *mproc_condition_lock(mproc_condition *c)
{
    return valid(c) ? c->lock : NULL;
}

static bool take_ticket(mproc_condition *c)
{
    uint64_t v = atomic_load(&c->counts);
    while (TICKETS(v) > 0)
        if (atomic_compare_exchange_weak(&c->counts, &v, v - WAITER - 1)) return true;
    return false;
}

int mproc_condition_wait(mproc_condition *c, double timeout)
{
    if (!valid(c) || mproc__timeout_check(timeout)) return -EINVAL;
    if (!held(c)) return -EPERM;
    int64_t deadline = mproc__deadline(timeout);
    atomic_fetch_add(&c->counts, WAITER);
    pthread_mutex_unlock(&c->lock->m);
    int r = -ETIMEDOUT;
    if (timeout != 0) {
        for (;;) {
            /* seq before the ticket check: a notify after the check changes seq, so the futex
             * wait below returns at once instead of missing it. */
            uint32_t s = atomic_load(&c->seq);
            if (take_ticket(c)) {
                r = 0;
                break;
            }
            if (mproc__spin_while_eq(&c->seq, s)) continue;
            if (mproc__futex_wait(&c->seq, s, deadline) == -ETIMEDOUT) break;
        }
    }
    int lr = mproc__robust_mutex_lock(&c->lock->m, MPROC_FOREVER);
    if (r != 0) {
        /* Timed out: unregister, unless a notify chose us in the meantime. */
        if (take_ticket(c))
            r = 0;
        else
            atomic_fetch_sub(&c->counts, WAITER);
    }
    return lr == MPROC_EOWNERDEAD ? lr : r;
}

int mproc_condition_wait_for(mproc_condition *c, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!valid(c) || !pred || mproc__timeout_check(timeout)) return -EINVAL;
    if (!held(c)) return -EPERM;
    int64_t deadline = mproc__deadline(timeout);
    while (!pred(arg)) {
        double left = -1;
        if (deadline != INT64_MAX) {
            int64_t ns = mproc__remaining_ns(deadline);
            if (ns <= 0) return -ETIMEDOUT;
            left = ns / 1e9;
        }
        int r = mproc_condition_wait(c, left);
        if (r < 0 && r != -ETIMEDOUT) return r;
    }
    return 0;
}

int mproc_condition_notify(mproc_condition *c, int n)
{
    if (!valid(c) || n < 0) return -EINVAL;
    if (!held(c)) return -EPERM;
    uint64_t v = atomic_load(&c->counts);
    uint32_t k;
    do {
        uint32_t idle = WAITERS(v) - TICKETS(v);
        k = (uint32_t)n < idle ? (uint32_t)n : idle;
        if (k == 0) return 0;
    } while (!atomic_compare_exchange_weak(&c->counts, &v, v + k));
    atomic_fetch_add(&c->seq, 1);
    /* Any k of the sleepers: a woken one that finds the tickets gone (taken by a waiter that had
     * not gone to sleep yet) sleeps again, so exactly k waiters return notified. */
    mproc__futex_wake(&c->seq, (int)k);
    return (int)k;
}

int mproc_condition_notify_all(mproc_condition *c)
{
    return mproc_condition_notify(c, INT_MAX);
}

void mproc_condition_free(mproc_condition *c)
{
    if (!valid(c)) return;
    __atomic_store_n(&c->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    if (c->own_lock) mproc_lock_free(c->lock);
    mproc__arena_free(c);
}
