/* Internals shared by the synchronisation primitives: object layouts (the condition variable
 * needs to see inside the lock), handle validation, robust mutexes and the bounded spin. */
#ifndef MPROC_SYNC_SYNC_H
#define MPROC_SYNC_SYNC_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena/arena.h"
#include "mproc/sync.h"
#include "platform/platform.h"
#include "platform/robust.h"

/* Magic words: a handle whose first word does not match is refused with -EINVAL. */
#define MPROC__LOCK_MAGIC 0x6c6f636bU      /* "lock" */
#define MPROC__RLOCK_MAGIC 0x726c636bU     /* "rlck" */
#define MPROC__SEMAPHORE_MAGIC 0x73656d61U /* "sema" */
#define MPROC__EVENT_MAGIC 0x6576656eU     /* "even" */
#define MPROC__CONDITION_MAGIC 0x636f6e64U /* "cond" */
#define MPROC__BARRIER_MAGIC 0x62617272U   /* "barr" */
#define MPROC__SYNC_DEAD_MAGIC 0x64656164U /* "dead": written by _free */

struct mproc_lock {
    uint32_t magic;
    pthread_mutex_t m; /* robust, process-shared, error-checking */
};

struct mproc_rlock {
    uint32_t magic;
    pthread_mutex_t m; /* robust, process-shared, recursive */
};

/* Whether h points at a live object of this kind: inside the arena (so reading the magic word
 * cannot fault) and carrying the magic word. */
static inline bool mproc__sync_valid(const void *h, size_t size, uint32_t magic)
{
    return h && mproc__arena_contains(h, size) &&
           __atomic_load_n((const uint32_t *)h, __ATOMIC_RELAXED) == magic;
}

/* The constructor every primitive shares: with out valid, *out is cleared; unless args_ok (the
 * primitive's own arguments checked out) -EINVAL; then a zeroed arena block of size bytes, which
 * init(obj, arg) prepares (init may be NULL; on its error the block is freed and its code
 * returned). The magic word goes in last with a release store, so a process that sees it valid
 * sees the object prepared. obj must start with its uint32_t magic word. */
int mproc__sync_new(void **out, bool args_ok, size_t size, uint32_t magic,
                    int (*init)(void *obj, void *arg), void *arg);

/* A waiter's liveness mark: a robust mutex the waiter holds for as long as it is counted as
 * waiting. A waiter that dies (SIGKILL included) leaves it marked by the kernel, so the others
 * tell a dead waiter from a slow one with one load and take it out of their accounting, with no
 * pid that could be reused. Held and dropped under the primitive's own lock. */
typedef struct {
    pthread_mutex_t m; /* robust, process-shared */
} mproc__mark;
int mproc__mark_init(mproc__mark *k);
void mproc__mark_destroy(mproc__mark *k);
/* Hold a free mark (the caller's thread owns it from now on) / drop it again. */
void mproc__mark_hold(mproc__mark *k);
void mproc__mark_drop(mproc__mark *k);
/* Whether its holder died holding it (lock-free: a plain load of the mutex word). */
bool mproc__mark_dead(mproc__mark *k);
/* Whether a thread (alive) holds it. */
bool mproc__mark_held(mproc__mark *k);
/* When its holder died: free the mark again and return true (false: alive or free). */
bool mproc__mark_reap(mproc__mark *k);

/* For tests: how many processes are past their spin and asleep (or about to be) in wait. */
unsigned mproc__event_sleepers(mproc_event *e);
unsigned mproc__semaphore_sleepers(mproc_semaphore *s);

/* Acquire a robust mutex with an mproc timeout: 0, MPROC_EOWNERDEAD (acquired; the state it
 * protects was left by a dead holder, and the mutex is made consistent again), -ETIMEDOUT,
 * -EAGAIN (timeout 0 and held), -EDEADLK (error-checking mutex held by the caller), -EINTR (not
 * acquired: a signal handler ran while it slept, docs/conventions.md, Signals). */
int mproc__robust_mutex_lock(pthread_mutex_t *m, double timeout);
/* The same without a timeout and never interrupted: for a mutex the caller must hold on return
 * (a condition's lock after a wait, a primitive's own short-held mutex). */
int mproc__robust_mutex_hold(pthread_mutex_t *m);

/* Spin briefly while *w == v: true when it changed. Waking a sleeper costs a syscall on each side
 * and a cross-CPU wake-up (tens of µs on virtual machines), so a short wait is cheaper spent here.
 * Bounded by time, not iterations: PAUSE costs from 1 to 40 ns depending on the CPU. */
#define MPROC__SYNC_SPIN_NS 4000
static inline bool mproc__spin_while_eq(_Atomic uint32_t *w, uint32_t v)
{
    int64_t until = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != v) return true;
        if ((i & 15) == 15) {
            int64_t now = mproc__now_ns();
            if (!until)
                until = now + MPROC__SYNC_SPIN_NS;
            else if (now >= until)
                return false;
        }
        mproc__cpu_relax();
    }
}

#endif
