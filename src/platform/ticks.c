/* Calibration of mproc__ticks against CLOCK_MONOTONIC (ticks.h). */
#include <stdatomic.h>

#include "platform/ticks.h"

static _Atomic int64_t mark_ns;
static _Atomic uint64_t mark_ticks;

/* A (ticks, ns) pair read close together: the clock read between two counter reads, retried
 * while a preemption or an interrupt came in between (on a loaded VM one often does, and a
 * millisecond lost there would skew a calibration over a few milliseconds by tens of percent). */
static void pair(uint64_t *ticks, int64_t *ns)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 16; i++) {
        uint64_t a = mproc__ticks();
        int64_t n = mproc__now_ns();
        uint64_t b = mproc__ticks();
        if (b - a < best) {
            best = b - a;
            *ticks = a + (b - a) / 2;
            *ns = n;
        }
        if (i >= 2 && best < 2000) break; /* a clean read: under a microsecond or so */
    }
}

void mproc__ticks_mark(void)
{
    if (atomic_load_explicit(&mark_ns, memory_order_acquire)) return;
    uint64_t t;
    int64_t ns;
    pair(&t, &ns);
    /* Two pools starting at once: either pair is a good mark. */
    uint64_t zero = 0;
    if (atomic_compare_exchange_strong(&mark_ticks, &zero, t))
        atomic_store_explicit(&mark_ns, ns, memory_order_release);
}

double mproc__tick_ns(void)
{
    if (MPROC__TICKS_ARE_NS) return 1.0;
    mproc__ticks_mark();
    int64_t ns0;
    while (!(ns0 = atomic_load_explicit(&mark_ns, memory_order_acquire)))
        ; /* the other thread's store is a few instructions away */
    uint64_t t0 = atomic_load_explicit(&mark_ticks, memory_order_relaxed);
    for (;;) {
        uint64_t t;
        int64_t ns;
        pair(&t, &ns);
        if (ns - ns0 >= 2000000 && t > t0) return (double)(ns - ns0) / (double)(t - t0);
    }
}
