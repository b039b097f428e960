/* Calibration of mproc__ticks against CLOCK_MONOTONIC (ticks.h). */
#include <stdatomic.h>

#include "platform/ticks.h"

static _Atomic int64_t mark_ns;
static _Atomic uint64_t mark_ticks;

void mproc__ticks_mark(void)
{
    if (atomic_load_explicit(&mark_ns, memory_order_acquire)) return;
    uint64_t t = mproc__ticks();
    int64_t ns = mproc__now_ns();
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
        uint64_t t = mproc__ticks();
        int64_t ns = mproc__now_ns();
        if (ns - ns0 >= 2000000 && t > t0) return (double)(ns - ns0) / (double)(t - t0);
    }
}
