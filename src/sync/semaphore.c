/* Semaphore: the count is the futex word. Acquire decrements it with a compare-and-swap when it
 * is positive, else spins briefly and sleeps while it is 0; release increments it and wakes one
 * sleeper only when the sleeper count says there is one. A bounded semaphore refuses to go above
 * its initial value, like Python's BoundedSemaphore. */
#include <errno.h>
#include <limits.h>

#include "platform/interrupt.h"
#include "sync/sync.h"

struct mproc_semaphore {
    uint32_t magic;
    _Atomic uint32_t value;
    _Atomic uint32_t sleepers;
    uint32_t max; /* highest value release may reach */
};

typedef struct {
    unsigned value;
    bool bounded;
} semaphore_args;

static int semaphore_init(void *obj, void *arg)
{
    mproc_semaphore *s = obj;
    const semaphore_args *a = arg;
    atomic_init(&s->value, a->value);
    s->max = a->bounded ? a->value : INT_MAX;
    return 0;
}

int mproc_semaphore_new(mproc_semaphore **out, unsigned value, bool bounded)
{
    return mproc__sync_new((void **)out, value <= INT_MAX, sizeof **out, MPROC__SEMAPHORE_MAGIC,
                           semaphore_init, &(semaphore_args){value, bounded});
}

static bool try_take(mproc_semaphore *s)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* One bounded sleep while the value is 0 (mproc__intr_sleep). */
static int take_step(void *arg, int64_t until)
{
    mproc_semaphore *s = arg;
    for (;;) {
        /* Always try before giving up: a wake meant for us may race with our timeout. */
        if (try_take(s)) return 0;
        if (mproc__futex_wait(&s->value, 0, until) == -ETIMEDOUT)
            return try_take(s) ? 0 : -ETIMEDOUT;
    }
}

int mproc_semaphore_acquire(mproc_semaphore *s, double timeout)
{
    if (!mproc__sync_valid(s, sizeof *s, MPROC__SEMAPHORE_MAGIC) || mproc__timeout_check(timeout))
        return -EINVAL;
    if (try_take(s)) return 0;
    if (timeout == 0) return -EAGAIN;
    int64_t deadline = mproc__deadline(timeout);
    if (mproc__spin_while_eq(&s->value, 0) && try_take(s)) return 0;
    /* A wake that an interrupted sleeper took is not lost: its last look takes the unit, or
     * someone else did. */
    atomic_fetch_add(&s->sleepers, 1);
    int r = mproc__intr_sleep(take_step, s, deadline);
    atomic_fetch_sub(&s->sleepers, 1);
    return r;
}

int mproc_semaphore_release(mproc_semaphore *s)
{
    if (!mproc__sync_valid(s, sizeof *s, MPROC__SEMAPHORE_MAGIC)) return -EINVAL;
    uint32_t v = atomic_load(&s->value);
    do {
        if (v >= s->max) return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
    /* seq_cst: either we see the sleeper or it sees the new value (see event.c). */
    if (atomic_load(&s->sleepers)) mproc__futex_wake(&s->value, 1);
    return 0;
}

int mproc_semaphore_value(mproc_semaphore *s)
{
    if (!mproc__sync_valid(s, sizeof *s, MPROC__SEMAPHORE_MAGIC)) return -EINVAL;
    return (int)atomic_load(&s->value);
}

void mproc_semaphore_free(mproc_semaphore *s)
{
    if (!mproc__sync_valid(s, sizeof *s, MPROC__SEMAPHORE_MAGIC)) return;
    __atomic_store_n(&s->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    mproc__arena_free(s);
}

unsigned mproc__semaphore_sleepers(mproc_semaphore *s)
{
    return mproc__sync_valid(s, sizeof *s, MPROC__SEMAPHORE_MAGIC) ? atomic_load(&s->sleepers) : 0;
}
