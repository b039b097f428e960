/* Condition: exact notify(n) across processes, as CPython's multiprocessing tests check it. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "robust_util.h"
#include "sync/sync.h"

typedef struct {
    mproc_condition *cond;
    mproc_semaphore *sleeping; /* released by a waiter just before it waits (lock held) */
    mproc_semaphore *woken;    /* released by a waiter once its wait returned */
    int value;
} cond_arg;

static int wait_once(void *arg)
{
    cond_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->cond);
    if (mproc_lock_acquire(l, 30) != 0) return 2;
    mproc_semaphore_release(a->sleeping);
    int r = mproc_condition_wait(a->cond, 60);
    if (r != 0) return 3;
    if (mproc_lock_acquire(l, 0) != -EDEADLK) return 4; /* held again */
    mproc_semaphore_release(a->woken);
    return mproc_lock_release(l) == 0 ? 0 : 5;
}

static cond_arg *cond_setup(mproc_lock *lock)
{
    cond_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    CHECK_OK(mproc_condition_new(&a->cond, lock));
    CHECK_OK(mproc_semaphore_new(&a->sleeping, 0, false));
    CHECK_OK(mproc_semaphore_new(&a->woken, 0, false));
    return a;
}

static void cond_teardown(cond_arg *a)
{
    mproc_condition_free(a->cond);
    mproc_semaphore_free(a->sleeping);
    mproc_semaphore_free(a->woken);
    mproc_shared_free(a);
}

/* Exactly `n` waiters report waking within a grace period, and no more. */
static void expect_woken(cond_arg *a, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_OK(mproc_semaphore_acquire(a->woken, 10 * harness_slow()));
    CHECK_RC(mproc_semaphore_acquire(a->woken, 0.2 * harness_slow()), -ETIMEDOUT);
}

static int notify(cond_arg *a, int n)
{
    mproc_lock *l = mproc_condition_lock(a->cond);
    CHECK_OK(mproc_lock_acquire(l, 10));
    int r = n < 0 ? mproc_condition_notify_all(a->cond) : mproc_condition_notify(a->cond, n);
    CHECK_OK(mproc_lock_release(l));
    return r;
}

TEST(condition_notify_wakes_exactly_1_then_n_then_all_of_6)
{
    cond_arg *a = cond_setup(NULL);
    mproc_process *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = harness_start(wait_once, a);
    /* Each waiter released `sleeping` holding the lock, and gave the lock up only inside wait:
     * once we hold the lock after 6 of those, all 6 are registered waiters. */
    for (int i = 0; i < 6; i++)
        CHECK_OK(mproc_semaphore_acquire(a->sleeping, 10));
    CHECK_EQ(notify(a, 0), 0);
    expect_woken(a, 0);
    CHECK_EQ(notify(a, 1), 1);
    expect_woken(a, 1);
    CHECK_EQ(notify(a, 2), 2);
    expect_woken(a, 2);
    CHECK_EQ(notify(a, -1), 3);
    expect_woken(a, 3);
    CHECK_EQ(notify(a, -1), 0);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    cond_teardown(a);
}

TEST(condition_notify_more_than_waiting)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    cond_arg *a = cond_setup(l);
    CHECK(mproc_condition_lock(a->cond) == l);
    mproc_process *p[2];
    for (int i = 0; i < 2; i++)
        p[i] = harness_start(wait_once, a);
    for (int i = 0; i < 2; i++)
        CHECK_OK(mproc_semaphore_acquire(a->sleeping, 10));
    CHECK_EQ(notify(a, 5), 2);
    expect_woken(a, 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    cond_teardown(a);
    CHECK(!mproc_lock_locked(l)); /* a given lock outlives the condition */
    mproc_lock_free(l);
}

TEST(condition_wait_timeout_and_lock_ownership)
{
    mproc_condition *c;
    CHECK_OK(mproc_condition_new(&c, NULL));
    mproc_lock *l = mproc_condition_lock(c);
    CHECK(l != NULL);
    CHECK_RC(mproc_condition_wait(c, 0.01), -EPERM);
    CHECK_RC(mproc_condition_notify(c, 1), -EPERM);
    CHECK_RC(mproc_condition_notify_all(c), -EPERM);
    CHECK_OK(mproc_lock_acquire(l, 0));
    double t0 = harness_now();
    CHECK_RC(mproc_condition_wait(c, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.2, 0.2 + 0.3 * harness_slow());
    CHECK_RC(mproc_lock_acquire(l, 0), -EDEADLK); /* held again */
    CHECK_RC(mproc_condition_wait(c, 0), -ETIMEDOUT);
    /* A waiter that timed out is no longer counted: nobody to notify. */
    CHECK_EQ(mproc_condition_notify(c, 1), 0);
    CHECK_RC(mproc_condition_notify(c, -1), -EINVAL);
    CHECK_OK(mproc_lock_release(l));
    mproc_condition_free(c);
}

static bool value_is_3(void *arg)
{
    return ((cond_arg *)arg)->value == 3;
}

static int count_to_3(void *arg)
{
    cond_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->cond);
    for (int i = 0; i < 3; i++) {
        if (mproc_lock_acquire(l, 30) != 0) return 2;
        a->value++;
        mproc_condition_notify_all(a->cond);
        mproc_lock_release(l);
    }
    return 0;
}

TEST(condition_wait_for_predicate)
{
    cond_arg *a = cond_setup(NULL);
    mproc_lock *l = mproc_condition_lock(a->cond);
    CHECK_OK(mproc_lock_acquire(l, 0));
    double t0 = harness_now();
    CHECK_RC(mproc_condition_wait_for(a->cond, value_is_3, a, 0.1), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.1, 0.1 + 0.3 * harness_slow());
    mproc_process *p = harness_start(count_to_3, a);
    CHECK_OK(mproc_condition_wait_for(a->cond, value_is_3, a, 30));
    CHECK_EQ(a->value, 3);
    CHECK_OK(mproc_lock_release(l));
    CHECK_EQ(harness_join(p), 0);
    CHECK_RC(mproc_condition_wait_for(a->cond, value_is_3, a, 1), -EPERM);
    cond_teardown(a);
}

TEST(condition_bad_input)
{
    mproc_condition *c;
    CHECK_RC(mproc_condition_new(NULL, NULL), -EINVAL);
    void *blank = mproc_shared_alloc(64);
    CHECK_RC(mproc_condition_new(&c, (mproc_lock *)blank), -EINVAL);
    CHECK_RC(mproc_condition_wait((mproc_condition *)blank, 0), -EINVAL);
    mproc_shared_free(blank);
    CHECK_RC(mproc_condition_wait(NULL, 0), -EINVAL);
    CHECK_RC(mproc_condition_wait_for(NULL, value_is_3, NULL, 0), -EINVAL);
    CHECK_RC(mproc_condition_notify(NULL, 1), -EINVAL);
    CHECK_RC(mproc_condition_notify_all(NULL), -EINVAL);
    CHECK(mproc_condition_lock(NULL) == NULL);
    mproc_condition_free(NULL);
    CHECK_OK(mproc_condition_new(&c, NULL));
    CHECK_OK(mproc_lock_acquire(mproc_condition_lock(c), 0));
    CHECK_RC(mproc_condition_wait_for(c, NULL, NULL, 0), -EINVAL);
    CHECK_OK(mproc_lock_release(mproc_condition_lock(c)));
    mproc_condition_free(c);
}

static int wait_forever(void *arg)
{
    cond_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->cond);
    if (mproc_lock_acquire(l, 30) != 0) return 2;
    mproc_semaphore_release(a->sleeping);
    mproc_condition_wait(a->cond, MPROC_FOREVER);
    mproc_lock_release(l);
    return 0;
}

/* Start a waiter, and once it waits (we hold the lock after its signal), kill it. */
static void kill_a_waiter(cond_arg *a)
{
    mproc_process *p = harness_start(wait_forever, a);
    CHECK_OK(mproc_semaphore_acquire(a->sleeping, 10));
    mproc_lock *l = mproc_condition_lock(a->cond);
    CHECK_OK(mproc_lock_acquire(l, 10));
    CHECK_OK(mproc_lock_release(l));
    CHECK_OK(mproc_process_kill(p));
    CHECK_EQ(harness_join(p), -SIGKILL);
}

/* A waiter that died is not counted by notify, and leaves no wake-up behind for the next wait. */
TEST(condition_killed_waiter_is_not_counted)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    cond_arg *a = cond_setup(NULL);
    kill_a_waiter(a);
    mproc_process *live[2];
    for (int i = 0; i < 2; i++)
        live[i] = harness_start(wait_once, a);
    for (int i = 0; i < 2; i++)
        CHECK_OK(mproc_semaphore_acquire(a->sleeping, 10));
    CHECK_EQ(notify(a, -1), 2); /* the two live ones, not the dead one */
    expect_woken(a, 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(harness_join(live[i]), 0);
    kill_a_waiter(a);
    mproc_lock *l = mproc_condition_lock(a->cond);
    CHECK_OK(mproc_lock_acquire(l, 10));
    CHECK_EQ(mproc_condition_notify_all(a->cond), 0);
    double t0 = harness_now();
    CHECK_RC(mproc_condition_wait(a->cond, 0.2), -ETIMEDOUT); /* no stale notify */
    CHECK_BETWEEN(harness_now() - t0, 0.2, 0.2 + 0.3 * harness_slow());
    CHECK_OK(mproc_lock_release(l));
    cond_teardown(a);
}

/* A waiter chosen by a notify that dies before it returns: counted as woken (it was chosen),
 * and the notify does not pass on to the next waiter. */
TEST(condition_waiter_killed_after_notify_leaves_nothing_behind)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    cond_arg *a = cond_setup(NULL);
    mproc_process *p = harness_start(wait_forever, a);
    CHECK_OK(mproc_semaphore_acquire(a->sleeping, 10));
    mproc_lock *l = mproc_condition_lock(a->cond);
    CHECK_OK(mproc_lock_acquire(l, 10));
    CHECK_EQ(mproc_condition_notify(a->cond, 1), 1);
    CHECK_OK(mproc_process_kill(p)); /* it cannot get the lock back: we hold it */
    CHECK_EQ(harness_join(p), -SIGKILL);
    CHECK_EQ(mproc_condition_notify_all(a->cond), 0);
    CHECK_RC(mproc_condition_wait(a->cond, 0.2), -ETIMEDOUT);
    CHECK_OK(mproc_lock_release(l));
    cond_teardown(a);
}

typedef struct {
    cond_arg *c;
    mproc_event *held, *go;
    _Atomic int results[2];
    _Atomic int next;
} wakeup_arg;

static int wait_recording(void *arg)
{
    wakeup_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->c->cond);
    if (mproc_lock_acquire(l, 30) != 0) return 2;
    mproc_semaphore_release(a->c->sleeping);
    int r = mproc_condition_wait(a->c->cond, 60);
    atomic_store(&a->results[atomic_fetch_add(&a->next, 1)], r);
    mproc_semaphore_release(a->c->woken);
    return mproc_lock_release(l) == 0 ? 0 : 5;
}

static int notify_then_die(void *arg)
{
    wakeup_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->c->cond);
    if (mproc_lock_acquire(l, 30) != 0) return 2;
    if (mproc_event_set(a->held) != 0 || mproc_event_wait(a->go, 30) != 0) return 3;
    mproc_condition_notify_all(a->c->cond);
    for (;;)
        pause(); /* killed holding the lock */
    return 0;
}

/* Notified waiters take the lock back before they return. When its holder dies the kernel wakes
 * one of them, and if the one it wakes is killed before it takes the lock, nobody wakes the
 * others: they waited for ever, whatever their timeout (a decoy first in line takes that wake-up
 * and dies). Now one of them takes the lock over within a recheck (10 ms). */
TEST(condition_waiters_get_the_lock_when_the_woken_one_is_killed)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    wakeup_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    a->c = cond_setup(NULL);
    CHECK_OK(mproc_event_new(&a->held));
    CHECK_OK(mproc_event_new(&a->go));
    mproc_process *w[2];
    for (int i = 0; i < 2; i++)
        w[i] = harness_start(wait_recording, a);
    for (int i = 0; i < 2; i++)
        CHECK_OK(mproc_semaphore_acquire(a->c->sleeping, 10));
    mproc_process *h = harness_start(notify_then_die, a);
    CHECK_OK(mproc_event_wait(a->held, 10 * harness_slow()));
    pthread_mutex_t *m = &mproc_condition_lock(a->c->cond)->m;
    mproc_process *d = robust_decoy_start(m);
    CHECK_OK(mproc_event_set(a->go));
    for (int i = 0; i < 2; i++)
        CHECK(robust_wait_sleeping(mproc_process_pid(w[i]), m, 10 * harness_slow()));
    CHECK_OK(mproc_process_kill(h));
    CHECK_EQ(harness_join(h), -SIGKILL);
    CHECK_EQ(harness_join(d), -SIGKILL);
    double t0 = harness_now();
    for (int i = 0; i < 2; i++)
        CHECK_OK(mproc_semaphore_acquire(a->c->woken, 2 * harness_slow()));
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    for (int i = 0; i < 2; i++)
        CHECK_EQ(harness_join(w[i]), 0);
    /* Both were notified; the first back learns that the lock's holder died. */
    int r0 = atomic_load(&a->results[0]), r1 = atomic_load(&a->results[1]);
    CHECK_EQ(r0, MPROC_EOWNERDEAD);
    CHECK_EQ(r1, 0);
    mproc_event_free(a->held);
    mproc_event_free(a->go);
    cond_teardown(a->c);
    mproc_shared_free(a);
}
