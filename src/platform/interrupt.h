/* Ctrl-C during a long call.
 *
 * A handler that runs while the caller is busy (copying data in or out, say), not asleep in a
 * wait, interrupts nothing: the call would go on to the end. So such a call keeps asynchronous
 * signals blocked in its thread (mproc__intr_block), sleeps in bounded steps, and between steps
 * looks for a pending signal the program handles or dies of (mproc__intr_pending,
 * mproc__intr_wait): then it restores the mask (mproc__intr_restore), which delivers the signal,
 * and returns -EINTR. Signals the program ignores stay pending and are dropped when the mask comes
 * back. Synchronous signals (a fault in the caller's own code) are never blocked.
 */
#ifndef MPROC_PLATFORM_INTERRUPT_H
#define MPROC_PLATFORM_INTERRUPT_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "platform/platform.h"

/* A pending signal is seen within this long. */
#define MPROC__INTR_POLL_NS 10000000

/* Sleep with a finite timeout even when waiting forever: the kernel then returns EINTR after a
 * signal handler ran, even one installed with SA_RESTART, so Ctrl-C reaches the caller. */
#define MPROC__INTR_MAX_SLEEP_NS 3600000000000LL

/* The deadline to give one sleep of a wait until `deadline`. */
static inline int64_t mproc__intr_sleep_deadline(int64_t deadline)
{
    int64_t cap = mproc__now_ns() + MPROC__INTR_MAX_SLEEP_NS;
    return deadline < cap ? deadline : cap;
}

/* The caller's signal mask while asynchronous signals are blocked. */
typedef struct {
    sigset_t old;
} mproc__intr;

/* Block asynchronous signals in the calling thread, remembering its mask. */
void mproc__intr_block(mproc__intr *st);
/* Whether a signal is pending that was not blocked before mproc__intr_block and that does
 * something (a handler, or a default action other than ignoring it). */
bool mproc__intr_pending(const mproc__intr *st);
/* Put the caller's mask back: a signal that came meanwhile is delivered now, its handler running
 * before this returns. */
void mproc__intr_restore(const mproc__intr *st);
/* Call wait(arg, step) in steps of at most MPROC__INTR_POLL_NS until it returns anything but
 * -ETIMEDOUT or `deadline` passes; -EINTR as soon as mproc__intr_pending. Signals blocked. */
int mproc__intr_wait(const mproc__intr *st, int (*wait)(void *arg, int64_t step), void *arg,
                     int64_t deadline);
/* Wait for fd to become readable until `deadline`, signals blocked except during the sleep itself
 * (ppoll with the caller's mask): 1 readable, 0 deadline passed, -EINTR once a handler ran (a
 * signal pending on entry runs at once) and fd is still not readable, or another negative errno.
 * No polling steps. */
int mproc__intr_poll_in(const mproc__intr *st, int fd, int64_t deadline);

/* The two halves every blocking call is made of (docs/conventions.md, Signals). The caller first
 * looks for its result, and spins if it likes, with its own mask (no system call); then one of
 * these blocks the asynchronous signals, sleeps, and restores the mask before it returns, so a
 * handler has run by then. */

/* The sleep of a wait on shared memory: step(arg, until) as in mproc__intr_wait (it may sleep
 * until `until`; 0 or its result when done, -ETIMEDOUT when `until` passed). On -EINTR, one more
 * step(arg, 0) (a look that must not sleep: `until` has passed) so that what it waited for wins a
 * tie; it returns what that look found unless -ETIMEDOUT. */
int mproc__intr_sleep(int (*step)(void *arg, int64_t until), void *arg, int64_t deadline);

/* The sleep of an fd wait: poll(fds) until `deadline` in ppoll with the caller's mask. The count
 * of ready fds, 0 once the deadline passed (at once if it has: no mask change), -EINTR when a
 * handler ran and still none is ready, or another negative errno. The caller looks first. */
int mproc__intr_poll(struct pollfd *fds, nfds_t n, int64_t deadline);

#endif
