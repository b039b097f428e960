/* Lock and RLock: ownership, timeouts, robustness against a holder that dies, mutual exclusion
 * across processes, and objects made after a child started. */
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "sync/sync.h"

/* A child's checks: the exit code names the first that failed. */
#define EXPECT(n, cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) return n;                                                                     \
    } while (0)

static int try_and_timeout(void *arg)
{
    mproc_lock *l = arg;
    EXPECT(2, mproc_lock_locked(l));
    EXPECT(3, mproc_lock_acquire(l, 0) == -EAGAIN);
    double t0 = harness_now();
    EXPECT(4, mproc_lock_acquire(l, 0.2) == -ETIMEDOUT);
    double dt = harness_now() - t0;
    EXPECT(5, dt >= 0.2 && dt <= 0.2 + 0.3 * harness_slow());
    EXPECT(6, mproc_lock_release(l) == -EPERM); /* not the owner */
    return 0;
}

static int acquire_release(void *arg)
{
    mproc_lock *l = arg;
    EXPECT(2, mproc_lock_acquire(l, 0) == 0);
    EXPECT(3, mproc_lock_release(l) == 0);
    return 0;
}

TEST(lock_acquire_try_timeout)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK(!mproc_lock_locked(l));
    CHECK_OK(mproc_lock_acquire(l, MPROC_FOREVER));
    CHECK(mproc_lock_locked(l));
    CHECK_RC(mproc_lock_acquire(l, 0), -EDEADLK);
    CHECK_RC(mproc_lock_acquire(l, 1), -EDEADLK);
    CHECK_EQ(harness_join(harness_start(try_and_timeout, l)), 0);
    CHECK_OK(mproc_lock_release(l));
    CHECK(!mproc_lock_locked(l));
    CHECK_EQ(harness_join(harness_start(acquire_release, l)), 0);
    CHECK_OK(mproc_lock_acquire(l, 0));
    CHECK_OK(mproc_lock_release(l));
    mproc_lock_free(l);
}

TEST(lock_release_unlocked_is_an_error)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_RC(mproc_lock_release(l), -EPERM);
    CHECK_OK(mproc_lock_acquire(l, 0));
    CHECK_OK(mproc_lock_release(l));
    CHECK_RC(mproc_lock_release(l), -EPERM);
    mproc_lock_free(l);
}

typedef struct {
    mproc_lock *lock;
    long *counter;
} counter_arg;

static int count_up(void *arg)
{
    counter_arg *a = arg;
    for (int i = 0; i < 100000; i++) {
        if (mproc_lock_acquire(a->lock, MPROC_FOREVER) != 0) return 2;
        /* A read-modify-write that loses updates without the lock. */
        long v = __atomic_load_n(a->counter, __ATOMIC_RELAXED);
        __atomic_store_n(a->counter, v + 1, __ATOMIC_RELAXED);
        if (mproc_lock_release(a->lock) != 0) return 3;
    }
    return 0;
}

TEST_T(lock_shared_counter_400000, 120)
{
    counter_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    a->counter = mproc_shared_alloc(sizeof *a->counter);
    CHECK_OK(mproc_lock_new(&a->lock));
    mproc_process *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = harness_start(count_up, a);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    CHECK_EQ(*a->counter, 400000);
    CHECK(!mproc_lock_locked(a->lock));
    mproc_lock_free(a->lock);
    mproc_shared_free(a->counter);
    mproc_shared_free(a);
}

typedef struct {
    mproc_lock *lock;
    mproc_rlock *rlock;
    mproc_event *holding;
} robust_arg;

static int hold_forever(void *arg)
{
    robust_arg *a = arg;
    if (a->lock && mproc_lock_acquire(a->lock, MPROC_FOREVER) != 0) return 2;
    for (int i = 0; a->rlock && i < 3; i++)
        if (mproc_rlock_acquire(a->rlock, MPROC_FOREVER) != 0) return 3;
    mproc_event_set(a->holding);
    for (;;)
        pause();
}

/* Blocked in acquire when the holder dies: must get the lock with MPROC_EOWNERDEAD. */
static int acquire_after_owner_dies(void *arg)
{
    robust_arg *a = arg;
    EXPECT(2, mproc_lock_acquire(a->lock, 30) == MPROC_EOWNERDEAD);
    EXPECT(3, mproc_lock_release(a->lock) == 0);
    EXPECT(4, mproc_lock_acquire(a->lock, 0) == 0);
    EXPECT(5, mproc_lock_release(a->lock) == 0);
    return 0;
}

static robust_arg *robust_setup(void)
{
    robust_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    CHECK_OK(mproc_event_new(&a->holding));
    return a;
}

static void kill_holder(mproc_process *holder)
{
    CHECK_OK(mproc_process_kill(holder));
    CHECK_EQ(harness_join(holder), -SIGKILL);
}

TEST(lock_holder_killed_next_acquire_gets_ownerdead)
{
    robust_arg *a = robust_setup();
    CHECK_OK(mproc_lock_new(&a->lock));
    mproc_process *holder = harness_start(hold_forever, a);
    CHECK_OK(mproc_event_wait(a->holding, 20));
    CHECK(mproc_lock_locked(a->lock));
    CHECK_RC(mproc_lock_acquire(a->lock, 0), -EAGAIN);
    kill_holder(holder);
    CHECK(!mproc_lock_locked(a->lock)); /* the kernel cleared the dead owner */
    CHECK_RC(mproc_lock_acquire(a->lock, 5), MPROC_EOWNERDEAD);
    CHECK(mproc_lock_locked(a->lock));
    CHECK_OK(mproc_lock_release(a->lock));
    /* Consistent again: normal from now on, in this process and in others. */
    CHECK_OK(mproc_lock_acquire(a->lock, 0));
    CHECK_OK(mproc_lock_release(a->lock));
    CHECK_EQ(harness_join(harness_start(acquire_release, a->lock)), 0);
    mproc_lock_free(a->lock);
    mproc_event_free(a->holding);
    mproc_shared_free(a);
}

TEST(lock_holder_killed_wakes_blocked_acquirer)
{
    robust_arg *a = robust_setup();
    CHECK_OK(mproc_lock_new(&a->lock));
    mproc_process *holder = harness_start(hold_forever, a);
    CHECK_OK(mproc_event_wait(a->holding, 20));
    mproc_process *waiter = harness_start(acquire_after_owner_dies, a);
    /* Until the waiter sleeps in the kernel on the lock (glibc sets the futex waiters bit). */
    while (!(__atomic_load_n(&a->lock->m.__data.__lock, __ATOMIC_ACQUIRE) & 0x80000000))
        sched_yield();
    kill_holder(holder);
    CHECK_EQ(harness_join(waiter), 0);
    CHECK_OK(mproc_lock_acquire(a->lock, 0));
    CHECK_OK(mproc_lock_release(a->lock));
    mproc_lock_free(a->lock);
    mproc_event_free(a->holding);
    mproc_shared_free(a);
}

static int rlock_try_and_timeout(void *arg)
{
    mproc_rlock *l = arg;
    EXPECT(2, mproc_rlock_locked(l));
    EXPECT(3, mproc_rlock_count(l) == 0);
    EXPECT(4, mproc_rlock_acquire(l, 0) == -EAGAIN);
    EXPECT(5, mproc_rlock_acquire(l, 0.05) == -ETIMEDOUT);
    EXPECT(6, mproc_rlock_release(l) == -EPERM);
    return 0;
}

static int rlock_acquire_release(void *arg)
{
    mproc_rlock *l = arg;
    EXPECT(2, mproc_rlock_acquire(l, 0) == 0);
    EXPECT(3, mproc_rlock_acquire(l, 0) == 0);
    EXPECT(4, mproc_rlock_count(l) == 2);
    EXPECT(5, mproc_rlock_release(l) == 0);
    EXPECT(6, mproc_rlock_release(l) == 0);
    return 0;
}

TEST(rlock_counts)
{
    mproc_rlock *l;
    CHECK_OK(mproc_rlock_new(&l));
    CHECK_EQ(mproc_rlock_count(l), 0);
    CHECK_RC(mproc_rlock_release(l), -EPERM);
    for (unsigned i = 1; i <= 3; i++) {
        CHECK_OK(mproc_rlock_acquire(l, i == 2 ? 0 : MPROC_FOREVER));
        CHECK_EQ(mproc_rlock_count(l), i);
    }
    CHECK_EQ(harness_join(harness_start(rlock_try_and_timeout, l)), 0);
    for (unsigned i = 3; i >= 1; i--) {
        CHECK(mproc_rlock_locked(l));
        CHECK_OK(mproc_rlock_release(l));
        CHECK_EQ(mproc_rlock_count(l), i - 1);
    }
    CHECK(!mproc_rlock_locked(l));
    CHECK_RC(mproc_rlock_release(l), -EPERM);
    CHECK_EQ(harness_join(harness_start(rlock_acquire_release, l)), 0);
    mproc_rlock_free(l);
}

TEST(rlock_holder_killed_next_acquire_gets_ownerdead)
{
    robust_arg *a = robust_setup();
    CHECK_OK(mproc_rlock_new(&a->rlock));
    mproc_process *holder = harness_start(hold_forever, a);
    CHECK_OK(mproc_event_wait(a->holding, 20));
    CHECK_RC(mproc_rlock_acquire(a->rlock, 0), -EAGAIN);
    kill_holder(holder);
    CHECK_RC(mproc_rlock_acquire(a->rlock, 5), MPROC_EOWNERDEAD);
    CHECK_EQ(mproc_rlock_count(a->rlock), 1); /* the dead holder's 3 levels are gone */
    CHECK_OK(mproc_rlock_release(a->rlock));
    CHECK(!mproc_rlock_locked(a->rlock));
    CHECK_EQ(harness_join(harness_start(rlock_acquire_release, a->rlock)), 0);
    mproc_rlock_free(a->rlock);
    mproc_event_free(a->holding);
    mproc_shared_free(a);
}

typedef struct {
    mproc_event *ready;
    mproc_lock *_Atomic late; /* made after the child started */
    long value;
} late_arg;

static int use_late_lock(void *arg)
{
    late_arg *a = arg;
    EXPECT(2, mproc_event_wait(a->ready, 30) == 0);
    mproc_lock *l = atomic_load(&a->late);
    EXPECT(3, l != NULL);
    EXPECT(4, mproc_lock_acquire(l, 30) == 0);
    a->value = 42;
    EXPECT(5, mproc_lock_release(l) == 0);
    return 0;
}

TEST(object_made_after_child_started_works_in_child)
{
    late_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    CHECK_OK(mproc_event_new(&a->ready));
    mproc_process *p = harness_start(use_late_lock, a);
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_lock_acquire(l, 0)); /* the child must block on it until we release it */
    atomic_store(&a->late, l);
    CHECK_OK(mproc_event_set(a->ready));
    CHECK_EQ(a->value, 0);
    CHECK_OK(mproc_lock_release(l));
    CHECK_EQ(harness_join(p), 0);
    CHECK_EQ(a->value, 42);
    mproc_lock_free(l);
    mproc_event_free(a->ready);
    mproc_shared_free(a);
}

TEST(lock_bad_input)
{
    CHECK_RC(mproc_lock_new(NULL), -EINVAL);
    CHECK_RC(mproc_lock_acquire(NULL, 0), -EINVAL);
    CHECK_RC(mproc_lock_release(NULL), -EINVAL);
    CHECK(!mproc_lock_locked(NULL));
    mproc_lock_free(NULL);
    CHECK_RC(mproc_rlock_new(NULL), -EINVAL);
    CHECK_RC(mproc_rlock_acquire(NULL, 0), -EINVAL);
    CHECK_RC(mproc_rlock_release(NULL), -EINVAL);
    CHECK(!mproc_rlock_locked(NULL));
    CHECK_EQ(mproc_rlock_count(NULL), 0);
    mproc_rlock_free(NULL);
    long stack[16] = {0};
    CHECK_RC(mproc_lock_acquire((mproc_lock *)stack, 0), -EINVAL);
    void *blank = mproc_shared_alloc(128);
    CHECK_RC(mproc_lock_acquire((mproc_lock *)blank, 0), -EINVAL);
    CHECK_RC(mproc_rlock_acquire((mproc_rlock *)blank, 0), -EINVAL);
    mproc_shared_free(blank);
    /* A Lock is not an RLock. */
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_RC(mproc_rlock_acquire((mproc_rlock *)l, 0), -EINVAL);
    mproc_lock_free(l);
    CHECK_RC(mproc_lock_acquire(l, 0), -EINVAL);
}

/* Freeing a lock this thread holds must take it off the thread's robust list: otherwise the
 * kernel writes into the reused memory when the thread exits. */
TEST(lock_free_while_held)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_lock_acquire(l, 0));
    mproc_lock_free(l);
    uint32_t *reuse = mproc_shared_alloc(sizeof(mproc_lock));
    CHECK(reuse == (uint32_t *)l); /* same size class, LIFO free list */
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_lock_acquire(l, 0));
    CHECK_OK(mproc_lock_release(l));
    mproc_lock_free(l);
    mproc_shared_free(reuse);
}
