/* Barrier with Python's threading.Barrier semantics (filling, draining, resetting, broken), on a
 * robust mutex and a futex word that plays the condition variable (every change of state that
 * someone may wait for bumps it and wakes all). The last party to arrive runs the action under
 * the mutex, then lets the others go. If a process dies holding the mutex, the barrier is broken:
 * its state may be half-updated, and the parties would otherwise wait for one that never comes.
 * A party that dies while it waits holds no mutex, so each waiting party holds a mark (sync.h)
 * in the seat of its arrival index; sleepers wake every MPROC__BARRIER_CHECK_NS to look for a
 * dead mark, and whoever takes the mutex takes a dead party out of the count (breaking a round
 * that is still filling), so the others return MPROC_EBROKEN and a reset works again. */
#include <errno.h>
#include <limits.h>

#include "platform/interrupt.h"
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
    /* One per arrival index but the last (the last arrival never waits): held by the party with
     * that index from its arrival until it leaves, under m. */
    mproc__mark marks[];
};

/* How often a sleeping party looks for a dead one: the delay before the others learn of a death
 * (a wake-up and parties-1 loads per sleeper each time). */
#define MPROC__BARRIER_CHECK_NS 50000000

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
    for (unsigned i = 0; r == 0 && i + 1 < a->parties; i++)
        r = mproc__mark_init(&b->marks[i]);
    if (r < 0) return r;
    b->parties = a->parties;
    b->action = a->action;
    b->arg = a->arg;
    return 0;
}

int mproc_barrier_new(mproc_barrier **out, unsigned parties, int (*action)(void *arg), void *arg)
{
    bool ok = parties > 0 && parties <= INT_MAX;
    size_t size = sizeof **out + (ok ? parties - 1 : 0) * sizeof(mproc__mark);
    return mproc__sync_new((void **)out, ok, size, MPROC__BARRIER_MAGIC, barrier_init,
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

/* One party fewer inside wait(); the last one out of a draining or resetting barrier lets new
 * arrivals in. */
static void count_down(mproc_barrier *b)
{
    b->count--;
    if (b->count == 0 && (b->state == RESETTING || b->state == DRAINING)) {
        b->state = FILLING;
        notify_all(b);
    }
}

static unsigned nmarks(const mproc_barrier *b)
{
    return b->parties - 1;
}

/* Take the parties that died waiting out of the count. A death in a round still filling breaks
 * it; one after the round was let go (draining) only stops the dead from being waited for. */
static void reap_dead(mproc_barrier *b)
{
    for (unsigned i = 0; i < nmarks(b); i++) {
        if (!mproc__mark_reap(&b->marks[i])) continue;
        if (b->state == FILLING) break_barrier(b);
        count_down(b);
    }
}

/* A holder died in the middle of an update: count again, from the marks. Every counted party but
 * a last arrival holds its mark, and a last arrival holds the mutex from its arrival to its
 * leaving, so with the mutex held the live marks are the count. */
static void recount(mproc_barrier *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < nmarks(b); i++) {
        mproc__mark_reap(&b->marks[i]);
        n += mproc__mark_held(&b->marks[i]);
    }
    b->count = n;
    if (n == 0 && b->state != BROKEN) b->state = FILLING;
}

static void lock(mproc_barrier *b)
{
    if (mproc__robust_mutex_hold(&b->m) == MPROC_EOWNERDEAD) {
        break_barrier(b);
        recount(b);
    }
    reap_dead(b);
}

static bool any_dead(mproc_barrier *b)
{
    for (unsigned i = 0; i < nmarks(b); i++)
        if (mproc__mark_dead(&b->marks[i])) return true;
    return false;
}

static void unlock(mproc_barrier *b)
{
    pthread_mutex_unlock(&b->m);
}

typedef struct {
    mproc_barrier *b;
    uint32_t seq;
    int64_t next_check;
} change_wait;

/* One bounded sleep until the state changes (mproc__intr_sleep); a dead party counts as one. */
static int change_step(void *arg, int64_t until)
{
    change_wait *w = arg;
    while (atomic_load(&w->b->seq) == w->seq) {
        if (mproc__futex_wait(&w->b->seq, w->seq, until) != -ETIMEDOUT) continue;
        /* A party that dies waiting bumps nothing: it has to be looked for, now and then. */
        int64_t now = mproc__now_ns();
        if (now >= w->next_check) {
            w->next_check = now + MPROC__BARRIER_CHECK_NS;
            if (any_dead(w->b)) return 0;
        }
        return -ETIMEDOUT;
    }
    return 0;
}

/* Release the mutex, sleep until the state changes or the deadline, take the mutex again.
 * -ETIMEDOUT when the deadline passed, -EINTR when a handler ran, else 0 (the caller re-checks
 * the state in every case). */
static int wait_change(mproc_barrier *b, int64_t deadline)
{
    uint32_t s = atomic_load(&b->seq);
    unlock(b);
    int r = 0;
    if (!mproc__spin_while_eq(&b->seq, s)) {
        atomic_fetch_add(&b->sleepers, 1);
        change_wait w = {b, s, mproc__now_ns() + MPROC__BARRIER_CHECK_NS};
        r = mproc__intr_sleep(change_step, &w, deadline);
        atomic_fetch_sub(&b->sleepers, 1);
    }
    lock(b);
    return r;
}

/* The arrival index of a party that will wait: one whose mark is free. Without parties that left
 * on -EINTR that is the count (marks 0..count-1 are held); after one left, its index is free again,
 * so the indices of a round stay distinct. */
static unsigned take_index(mproc_barrier *b)
{
    unsigned i = b->count;
    if (mproc__mark_held(&b->marks[i]))
        for (i = 0; i + 1 < nmarks(b) && mproc__mark_held(&b->marks[i]); i++) {
        }
    return i;
}

/* The party with this arrival index leaves wait(). */
static void leave(mproc_barrier *b, int index)
{
    if ((unsigned)index < nmarks(b)) mproc__mark_drop(&b->marks[index]);
    count_down(b);
}

static bool between_rounds(const mproc_barrier *b)
{
    return b->state == DRAINING || b->state == RESETTING;
}

int mproc_barrier_wait(mproc_barrier *b, double timeout)
{
    if (!valid(b) || mproc__timeout_check(timeout)) return -EINVAL;
    int64_t deadline = mproc__deadline(timeout);
    lock(b);
    /* Wait for the previous round to drain (or a reset to finish): no deadline, as in Python. */
    while (between_rounds(b))
        if (wait_change(b, INT64_MAX) == -EINTR && between_rounds(b)) {
            unlock(b);
            return -EINTR;
        }
    if (b->state == BROKEN) {
        unlock(b);
        return MPROC_EBROKEN;
    }
    int index, r;
    if (b->count + 1 == b->parties) {
        index = r = (int)b->count++;
        if (b->action && b->action(b->arg) != 0) {
            break_barrier(b);
            r = MPROC_EBROKEN;
        } else {
            b->state = DRAINING;
            notify_all(b);
        }
    } else {
        index = r = (int)take_index(b);
        b->count++;
        mproc__mark_hold(&b->marks[index]);
        while (b->state == FILLING) {
            int w = wait_change(b, deadline);
            if (b->state != FILLING) break;
            if (w == -ETIMEDOUT) {
                break_barrier(b);
                r = -ETIMEDOUT;
                break;
            }
            if (w == -EINTR) {
                /* As Python's: the party leaves a round still filling, which stays unbroken. */
                r = -EINTR;
                break;
            }
        }
        if (r >= 0 && b->state != DRAINING) r = MPROC_EBROKEN;
    }
    leave(b, index);
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
    for (unsigned i = 0; i < nmarks(b); i++)
        mproc__mark_destroy(&b->marks[i]);
    mproc__arena_free(b);
}
