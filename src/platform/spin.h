/* How mproc's waits spend the time before they sleep.
 *
 * A wait first spins on the CPU: a peer running on another CPU answers within a microsecond or
 * two, and a futex sleep and wake cost far more (tens of µs on virtual machines). After a few
 * microseconds (each wait says how many) it yields the CPU between looks instead: a peer that
 * shares this CPU (pinned there, or put there by the scheduler) can only answer once the waiter
 * lets it run, and spinning on would make every hand-over between them cost the whole spin. After a
 * hand-over through the kernel (this thread woke a sleeper, or a wake-up ended its own sleep) the
 * next wait yields once at its first look: the scheduler runs a wakee on or next to its waker's
 * CPU, so the peer may be waiting for this very CPU; if it is elsewhere, the yield returns at once
 * and the wait spins as usual. Each wait decides when it stops looking and sleeps.
 */
#ifndef MPROC_PLATFORM_SPIN_H
#define MPROC_PLATFORM_SPIN_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "platform/platform.h"

/* Set by a hand-over through the kernel; taken by this thread's next wait. */
extern MPROC_TLS bool mproc__handoff;

/* futex_wait, recording a hand-over when the sleep ended with a wake-up. */
static inline int mproc__sleep(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline)
{
    int r = mproc__futex_wait(addr, expected, deadline);
    if (r == 0) mproc__handoff = true;
    return r;
}

/* futex_wake, recording a hand-over when it woke someone. */
static inline int mproc__wake(_Atomic uint32_t *addr, int n)
{
    int r = mproc__futex_wake(addr, n);
    if (r > 0) mproc__handoff = true;
    return r;
}

typedef struct {
    int64_t hard_end, look_end;
    bool yielding;  /* past hard_end: yield between looks */
    bool yield_now; /* after a hand-over: yield before the first look again */
} mproc__spin;

/* A yield that kept this thread off its CPU this long means another program wanted that CPU for a
 * time slice: yielding again would hand it over for a slice each time (milliseconds, where the
 * peer answers in microseconds), so waits stop yielding and sleep after their spin instead, for a
 * window that starts at MPROC__SPIN_CONTENDED_MIN_NS and doubles while the contention lasts. */
#define MPROC__SPIN_YIELD_SLOW_NS 500000
#define MPROC__SPIN_CONTENDED_MIN_NS 10000000
#define MPROC__SPIN_CONTENDED_MAX_NS 1000000000
extern MPROC_TLS int64_t mproc__contended_until;
/* Open (or widen) the window after a slow yield that ended at now. */
void mproc__spin_contended(int64_t now);

/* A wait begins at time now: it looks for look_ns at most, spinning on the CPU for hard_ns. */
static inline void mproc__spin_start(mproc__spin *sp, int64_t now, int64_t hard_ns, int64_t look_ns)
{
    sp->yielding = false;
    sp->yield_now = mproc__handoff;
    mproc__handoff = false;
    sp->hard_end = now + hard_ns;
    sp->look_end = now + look_ns;
}

/* Between two looks; now is the last clock reading (waits read it only every few looks while they
 * spin, and on every look once they yield: see yielding). False when the wait should stop looking
 * and sleep. */
static inline bool mproc__spin_pause(mproc__spin *sp, int64_t now)
{
    if (now >= sp->look_end) return false;
    if (!sp->yielding && now >= sp->hard_end) sp->yielding = true;
    bool contended = now < mproc__contended_until;
    if (contended) sp->yield_now = false;
    if (!sp->yielding && !sp->yield_now) {
        mproc__cpu_relax();
        return true;
    }
    if (contended) return false;
    sp->yield_now = false;
    sched_yield();
    int64_t after = mproc__now_ns();
    if (after - now < MPROC__SPIN_YIELD_SLOW_NS) return true;
    mproc__spin_contended(after);
    return false;
}

/* For a wait that yields from its first look (it knows a busy peer may share its CPU): a yield
 * that came back within MPROC__SPIN_ALONE_NS ran nobody else, so this CPU is the waiter's alone
 * for now, and the next looks spin for MPROC__SPIN_ALONE_SPIN_NS before yielding again. A yield
 * costs 0.45 µs on this VM: looking only after each one made a waiter alone on its CPU see its
 * peer's answer a quarter of a microsecond late on average, at every hand-over. */
#define MPROC__SPIN_ALONE_NS 1000
#define MPROC__SPIN_ALONE_SPIN_NS 5000
typedef struct {
    int64_t spin_until;
} mproc__yielder;

/* Between two looks; now is a fresh clock reading. */
static inline void mproc__yield_look(mproc__yielder *y, int64_t now)
{
    if (now < y->spin_until) {
        mproc__cpu_relax();
        return;
    }
    sched_yield();
    int64_t after = mproc__now_ns();
    y->spin_until = after - now < MPROC__SPIN_ALONE_NS ? after + MPROC__SPIN_ALONE_SPIN_NS : 0;
}

#endif
