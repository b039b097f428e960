/* mproc: synchronisation primitives shared by every process of the family.
 *
 * Each object lives in the family arena: a pointer to it is valid in the process that made it and
 * in every process of its family, including children started before it was made. Every blocking
 * call takes a timeout in seconds (0 polls, MPROC_FOREVER waits).
 *
 * Every wait returns -EINTR when a signal handler ran while it slept (SA_RESTART or not; signals
 * the program ignores interrupt nothing), leaving the object as if it had not been called: a lock
 * not acquired, no unit taken; a condition's lock held again; a barrier party out of an unbroken
 * round. What it waited for wins a tie (docs/sync.md, docs/conventions.md Signals).
 *
 * Lock and RLock are robust: if the holder dies holding one, the next acquire succeeds and returns
 * MPROC_EOWNERDEAD (the caller holds the lock and should repair what it protects). Unlike Python's
 * Lock, an mproc_lock has an owner: only the process/thread holding it may release it (-EPERM).
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_lock mproc_lock;
typedef struct mproc_rlock mproc_rlock;
typedef struct mproc_semaphore mproc_semaphore;
typedef struct mproc_event mproc_event;
typedef struct mproc_condition mproc_condition;
typedef struct mproc_barrier mproc_barrier;

/* Every function returns -EINVAL for a NULL handle, one that is not a live object of its kind
 * (checked through a magic word) or one already freed (best effort: the memory may be reused).
 * The _free functions are NULL-safe; freeing an object other processes still use is undefined.
 * Boolean queries return false for an invalid handle. */

/* Lock: acquire returns 0, MPROC_EOWNERDEAD (acquired; its previous holder died holding it; the
 * lock is consistent again and stays usable), -ETIMEDOUT, -EAGAIN (timeout 0 and held), or
 * -EDEADLK if the calling thread already holds it, -EINTR (not acquired). The owner is a thread
 * (kernel tid). */
int mproc_lock_new(mproc_lock **out);
int mproc_lock_acquire(mproc_lock *l, double timeout);
/* -EPERM when the caller does not hold it (including when nobody does). */
int mproc_lock_release(mproc_lock *l);
bool mproc_lock_locked(mproc_lock *l);
void mproc_lock_free(mproc_lock *l);

/* RLock: recursive; the owner is a (process, thread). release by a non-owner: -EPERM. */
int mproc_rlock_new(mproc_rlock **out);
int mproc_rlock_acquire(mproc_rlock *l, double timeout);
int mproc_rlock_release(mproc_rlock *l);
bool mproc_rlock_locked(mproc_rlock *l);
/* How many times the caller holds it (0 when it does not). */
unsigned mproc_rlock_count(mproc_rlock *l);
void mproc_rlock_free(mproc_rlock *l);

/* Semaphore: acquire returns 0, -ETIMEDOUT, -EINTR, or -EAGAIN (timeout 0 and the value is 0). A
 * bounded one refuses to be released above its initial value (-EOVERFLOW, Python's ValueError); any
 * semaphore refuses to go above INT_MAX. value > INT_MAX: -EINVAL. _value returns the count. */
int mproc_semaphore_new(mproc_semaphore **out, unsigned value, bool bounded);
int mproc_semaphore_acquire(mproc_semaphore *s, double timeout);
int mproc_semaphore_release(mproc_semaphore *s);
int mproc_semaphore_value(mproc_semaphore *s);
void mproc_semaphore_free(mproc_semaphore *s);

/* Event: wait returns 0 once set, -ETIMEDOUT (or -EAGAIN for timeout 0) if not, -EINTR. A waiter
 * returns 0 when a set happened while it waited, even if the event was cleared again before it ran.
 */
int mproc_event_new(mproc_event **out);
int mproc_event_set(mproc_event *e);
int mproc_event_clear(mproc_event *e);
bool mproc_event_is_set(mproc_event *e);
int mproc_event_wait(mproc_event *e, double timeout);
void mproc_event_free(mproc_event *e);

/* Condition over a lock (NULL: the condition makes its own, freed with it). wait, wait_for, notify
 * and notify_all must be called by the thread holding the lock (-EPERM otherwise). wait returns 0
 * when notified, -ETIMEDOUT if not, -EINTR when a handler ran (not notified); in every case the
 * lock is held again on return (MPROC_EOWNERDEAD if taking it back found its holder dead). wait_for
 * returns 0 once pred(arg) is true (checked with the lock held), -ETIMEDOUT if it is still false at
 * the deadline. notify is exact: notify(n) makes exactly min(n, waiting) waiters return 0, like
 * CPython's multiprocessing Condition; a waiter that died is not counted. wait may also return
 * -ENOMEM (no arena memory for its seat). */
int mproc_condition_new(mproc_condition **out, mproc_lock *lock);
mproc_lock *mproc_condition_lock(mproc_condition *c);
int mproc_condition_wait(mproc_condition *c, double timeout);
int mproc_condition_wait_for(mproc_condition *c, bool (*pred)(void *arg), void *arg,
                             double timeout);
/* Wake at most n waiters (n >= 0, else -EINVAL); returns how many were woken. */
int mproc_condition_notify(mproc_condition *c, int n);
int mproc_condition_notify_all(mproc_condition *c);
void mproc_condition_free(mproc_condition *c);

/* Barrier for `parties` processes/threads (1..INT_MAX), Python's threading.Barrier. The last to
 * arrive runs action(arg) (if any; a function of the program, so valid in every process of the
 * family) before the others are released; a non-zero return breaks the barrier. wait returns the
 * arrival index 0..parties-1, or MPROC_EBROKEN for every party when the barrier is aborted, reset
 * while they wait, broken by the action, or when any party's wait times out (that party gets
 * -ETIMEDOUT and the barrier is broken for the others). A broken barrier stays broken (every wait
 * returns MPROC_EBROKEN at once) until reset. A process dying inside a barrier call breaks it,
 * also while it waits: the other parties get MPROC_EBROKEN within ~50 ms of the death.
 * The timeout bounds the wait for the other parties, not the wait for a previous round to drain.
 * -EINTR (a handler ran): the party left, as in Python; the round is not broken and the others go
 * on waiting (wait again to rejoin it). */
int mproc_barrier_new(mproc_barrier **out, unsigned parties, int (*action)(void *arg), void *arg);
int mproc_barrier_wait(mproc_barrier *b, double timeout);
int mproc_barrier_abort(mproc_barrier *b);
int mproc_barrier_reset(mproc_barrier *b);
bool mproc_barrier_broken(mproc_barrier *b);
int mproc_barrier_n_waiting(mproc_barrier *b);
int mproc_barrier_parties(mproc_barrier *b);
void mproc_barrier_free(mproc_barrier *b);

#ifdef __cplusplus
}
#endif
#endif
