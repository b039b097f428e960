/* Asymmetric memory fences: a fast side that publishes on every operation pays nothing but a
 * compiler barrier, and the rare side (a waiter about to sleep) pays a membarrier(2) that forces
 * a full fence on every CPU running a process of the family.
 *
 * The pattern is Dekker's: the fast side stores its state, then reads the waiter's flag; the
 * waiter sets its flag, then reads the state. Each side needs a full fence between its store and
 * its load, or both can miss each other and the waiter sleeps through a wake-up. The heavy fence
 * stands in for the fast side's fence, whichever instant it lands at. Where membarrier is missing
 * (old kernels, seccomp, valgrind) both sides fall back to full fences. */
#ifndef MPROC_PLATFORM_FENCE_H
#define MPROC_PLATFORM_FENCE_H

#include <stdatomic.h>
#include <stdbool.h>

extern _Atomic bool mproc__fence_asym; /* this process registered for the heavy fence */

/* Register this process for heavy fences, if the kernel allows, so its light fences can be
 * compiler-only. Call before a process's first light fence; forked children call it again. */
void mproc__fence_setup(void);

/* The fast side's fence, between publishing a state and reading a waiter's flag. */
static inline void mproc__fence_light(void)
{
    if (__builtin_expect(atomic_load_explicit(&mproc__fence_asym, memory_order_relaxed), 1))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* The waiter's fence, between setting its flag and its last look at the state. Returns false
 * when it could not be issued: then a light fence elsewhere may be compiler-only, and the waiter
 * must not sleep long without looking again. */
bool mproc__fence_heavy(void);

#endif
