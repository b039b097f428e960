/* Event: one futex word, bit 0 = set, the bits above count the sets (a generation). A waiter
 * that saw the generation change returns even if the event was cleared again before it ran, as
 * with Python's Event, so set()+clear() wakes everyone who was waiting. A waiter count lets set()
 * skip the wake syscall when nobody sleeps; waiters spin briefly before sleeping. */
#include <errno.h>
#include <limits.h>

#include "platform/interrupt.h"
#include "sync/proxy.h"
#include "sync/sync.h"

struct mproc_event {
    uint32_t magic;
    _Atomic uint32_t word;     /* generation << 1 | set */
    _Atomic uint32_t sleepers; /* processes in (or entering) futex_wait on word */
};

int mproc_event_new(mproc_event **out)
{
    /* The zeroed block is a clear event nobody waits for. */
    return mproc__sync_new((void **)out, true, sizeof **out, MPROC__EVENT_MAGIC, NULL, NULL);
}

int mproc_event_set(mproc_event *e)
{
    if (!mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC))
        return MPROC__PROXY_OR_EINVAL(event_set, e);
    uint32_t w = atomic_load(&e->word);
    do {
        if (w & 1) return 0;
    } while (!atomic_compare_exchange_weak(&e->word, &w, (w + 2) | 1));
    /* seq_cst on both sides (word then sleepers here, sleepers then word in wait): either we see
     * the sleeper, or it sees the new word and does not sleep. */
    if (atomic_load(&e->sleepers)) mproc__futex_wake(&e->word, INT_MAX);
    return 0;
}

int mproc_event_clear(mproc_event *e)
{
    if (!mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC))
        return MPROC__PROXY_OR_EINVAL(event_clear, e);
    atomic_fetch_and(&e->word, ~1u);
    return 0;
}

bool mproc_event_is_set(mproc_event *e)
{
    if (!mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC))
        return MPROC__PROXY_OR(-EINVAL, event_is_set, e) > 0;
    return atomic_load_explicit(&e->word, memory_order_acquire) & 1;
}

static bool woken(uint32_t start, uint32_t now)
{
    return (now & 1) || (now >> 1) != (start >> 1);
}

typedef struct {
    mproc_event *e;
    uint32_t start;
} event_wait;

/* One bounded sleep until a set (mproc__intr_sleep). */
static int set_step(void *arg, int64_t until)
{
    event_wait *w = arg;
    for (;;) {
        uint32_t now = atomic_load(&w->e->word);
        if (woken(w->start, now)) return 0;
        /* Sleeps only while the word is still now: a set in between makes it return at once. */
        if (mproc__futex_wait(&w->e->word, now, until) == -ETIMEDOUT)
            return woken(w->start, atomic_load(&w->e->word)) ? 0 : -ETIMEDOUT;
    }
}

int mproc_event_wait(mproc_event *e, double timeout)
{
    if (!mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC))
        return MPROC__PROXY_OR_EINVAL(event_wait, e, timeout);
    if (mproc__timeout_check(timeout)) return -EINVAL;
    uint32_t start = atomic_load_explicit(&e->word, memory_order_acquire);
    if (start & 1) return 0;
    if (timeout == 0) return -EAGAIN;
    int64_t deadline = mproc__deadline(timeout);
    if (mproc__spin_while_eq(&e->word, start)) {
        if (woken(start, atomic_load_explicit(&e->word, memory_order_acquire))) return 0;
    }
    atomic_fetch_add(&e->sleepers, 1);
    int r = mproc__intr_sleep(set_step, &(event_wait){e, start}, deadline);
    atomic_fetch_sub(&e->sleepers, 1);
    return r;
}

void mproc_event_free(mproc_event *e)
{
    if (!mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC)) {
        if (e) MPROC__PROXY_VOID(event_free, e);
        return;
    }
    __atomic_store_n(&e->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    mproc__arena_free(e);
}

unsigned mproc__event_sleepers(mproc_event *e)
{
    return mproc__sync_valid(e, sizeof *e, MPROC__EVENT_MAGIC) ? atomic_load(&e->sleepers) : 0;
}
