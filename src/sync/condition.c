/* Condition with exact notify(n), as CPython's multiprocessing Condition, with one seat per
 * waiter instead of CPython's sleeping and woken counts. A waiter takes a free seat with the lock
 * held (state WAITING, its mark held, an arrival number), releases the lock and sleeps on its
 * seat's state word. notify(n), with the lock held, moves the n oldest WAITING seats to NOTIFIED
 * and wakes their sleepers, so exactly that many waiters return "notified"; a waiter that times
 * out frees its seat under the lock, where notify cannot interleave, and returns notified if a
 * notify chose it meanwhile. A waiter that dies leaves its mark dead: notify and the next wait
 * free its seat instead of counting it, and whatever it was chosen for dies with its seat (a
 * shared count would keep a dead waiter, or a notify issued to it, for ever). Unlike CPython,
 * notify does not wait for the woken to acknowledge: no hang if one of them dies. */
#include <errno.h>
#include <limits.h>

#include "platform/interrupt.h"
#include "sync/sync.h"

enum { SEAT_FREE, SEAT_WAITING, SEAT_SLEEPING, SEAT_NOTIFIED };

typedef struct {
    _Atomic uint32_t state; /* SEAT_*: futex word of its waiter */
    uint64_t arrival;       /* order of arrival, for notify to choose the oldest */
    mproc__mark mark;       /* held by the waiter from taking the seat to freeing it */
} seat;

/* Seats come in chunks from the arena, added under the lock when every seat is taken and freed
 * with the condition. */
#define SEATS_PER_CHUNK 16
typedef struct seat_chunk {
    struct seat_chunk *next;
    seat seats[SEATS_PER_CHUNK];
} seat_chunk;

struct mproc_condition {
    uint32_t magic;
    bool own_lock;
    mproc_lock *lock;
    seat_chunk *chunks; /* written under the lock */
    uint64_t arrivals;  /* under the lock */
};

#define FOR_EACH_SEAT(c, k, s)                                                                     \
    for (seat_chunk *k = (c)->chunks; k; k = k->next)                                              \
        for (seat *s = k->seats; s < k->seats + SEATS_PER_CHUNK; s++)

static int add_chunk(mproc_condition *c)
{
    seat_chunk *k;
    int r = mproc__arena_alloc((void **)&k, sizeof *k);
    for (int i = 0; r == 0 && i < SEATS_PER_CHUNK; i++)
        r = mproc__mark_init(&k->seats[i].mark);
    if (r < 0) {
        mproc__arena_free(k);
        return r;
    }
    k->next = c->chunks;
    c->chunks = k;
    return 0;
}

static void free_chunks(mproc_condition *c)
{
    while (c->chunks) {
        seat_chunk *k = c->chunks;
        c->chunks = k->next;
        for (int i = 0; i < SEATS_PER_CHUNK; i++)
            mproc__mark_destroy(&k->seats[i].mark);
        mproc__arena_free(k);
    }
}

/* With the lock held: whether the seat's waiter died, in which case the seat is free again. */
static bool reap(seat *s)
{
    if (atomic_load(&s->state) == SEAT_FREE || !mproc__mark_reap(&s->mark)) return false;
    atomic_store(&s->state, SEAT_FREE);
    return true;
}

static int condition_init(void *obj, void *arg)
{
    mproc_condition *c = obj;
    mproc_lock *lock = arg;
    int r = add_chunk(c);
    if (r < 0) return r;
    if (!lock) {
        r = mproc_lock_new(&lock);
        if (r < 0) {
            free_chunks(c);
            return r;
        }
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

/* With the lock held: a free seat (a dead waiter's counts as free), or NULL for -ENOMEM. */
static seat *take_seat(mproc_condition *c)
{
    for (;;) {
        FOR_EACH_SEAT(c, k, s)
        {
            reap(s);
            if (atomic_load(&s->state) == SEAT_FREE) return s;
        }
        if (add_chunk(c) < 0) return NULL;
    }
}

/* One bounded sleep on the seat until a notify chose it (mproc__intr_sleep). */
static int notify_step(void *arg, int64_t until)
{
    seat *s = arg;
    for (;;) {
        uint32_t st = atomic_load(&s->state);
        if (st == SEAT_NOTIFIED) return 0;
        if (st == SEAT_WAITING && !atomic_compare_exchange_strong(&s->state, &st, SEAT_SLEEPING))
            continue;
        if (mproc__futex_wait(&s->state, SEAT_SLEEPING, until) == -ETIMEDOUT) return -ETIMEDOUT;
    }
}

int mproc_condition_wait(mproc_condition *c, double timeout)
{
    if (!valid(c) || mproc__timeout_check(timeout)) return -EINVAL;
    if (!held(c)) return -EPERM;
    int64_t deadline = mproc__deadline(timeout);
    seat *s = take_seat(c);
    if (!s) return -ENOMEM;
    mproc__mark_hold(&s->mark);
    s->arrival = c->arrivals++;
    atomic_store(&s->state, SEAT_WAITING);
    pthread_mutex_unlock(&c->lock->m);
    int r = -ETIMEDOUT;
    /* Only a notify moves the seat on from WAITING. */
    if (timeout != 0 && !mproc__spin_while_eq(&s->state, SEAT_WAITING))
        r = mproc__intr_sleep(notify_step, s, deadline);
    /* Back with the lock held whatever happened (an -EINTR included, as Python re-acquires it):
     * the caller must know that it holds it. */
    int lr = mproc__robust_mutex_hold(&c->lock->m);
    /* With the lock held the seat's state is final: a notify that chose us counts, so none is
     * lost to an interrupted or timed-out waiter. */
    if (atomic_load(&s->state) == SEAT_NOTIFIED)
        r = 0;
    else if (r != -EINTR)
        r = -ETIMEDOUT;
    atomic_store(&s->state, SEAT_FREE);
    mproc__mark_drop(&s->mark);
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

static bool waiting(seat *s)
{
    uint32_t st = atomic_load(&s->state);
    return st == SEAT_WAITING || st == SEAT_SLEEPING;
}

static void wake(seat *s)
{
    if (atomic_exchange(&s->state, SEAT_NOTIFIED) == SEAT_SLEEPING) mproc__futex_wake(&s->state, 1);
}

int mproc_condition_notify(mproc_condition *c, int n)
{
    if (!valid(c) || n < 0) return -EINVAL;
    if (!held(c)) return -EPERM;
    int live = 0;
    FOR_EACH_SEAT(c, k, s)
    if (!reap(s) && waiting(s)) live++;
    if (n >= live) {
        FOR_EACH_SEAT(c, k, s)
        if (waiting(s)) wake(s);
        return live;
    }
    /* The n oldest, so a waiter that keeps taking the first seat cannot starve the others. */
    for (int i = 0; i < n; i++) {
        seat *oldest = NULL;
        FOR_EACH_SEAT(c, k, s)
        if (waiting(s) && (!oldest || s->arrival < oldest->arrival)) oldest = s;
        wake(oldest);
    }
    return n;
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
    free_chunks(c);
    mproc__arena_free(c);
}
