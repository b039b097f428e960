/* Seeds and round counts for the randomized fault-injection suites (test_faults.c,
 * test_queue_recovery.c; label `faults`, docs/testing.md "Fault injection"). Every case that
 * draws random numbers takes its seed from fault_seed(), which prints it: a failure is replayed
 * with MPROC_FAULT_SEED=<seed> ./build/tests/<binary> <case>. */
#ifndef MPROC_TESTS_FAULT_UTIL_H
#define MPROC_TESTS_FAULT_UTIL_H

#include <stdint.h>

/* The seed of this case: env MPROC_FAULT_SEED, else one from the clock and the pid. Printed as
 * "fault seed S (replay: MPROC_FAULT_SEED=S ...)". */
uint64_t fault_seed(const char *what);
/* A uniform number in [0, n) (n > 0) from *state (xorshift64*; the state must not be 0:
 * fault_seed never returns 0). */
uint64_t fault_rand(uint64_t *state, uint64_t n);
/* `base` rounds times env MPROC_FAULT_SCALE (default 1, a float; at least 1 round): CI runs the
 * default, a longer run sets e.g. MPROC_FAULT_SCALE=10. */
unsigned fault_rounds(unsigned base);

#endif
