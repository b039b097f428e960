/* Semaphore and BoundedSemaphore across processes. */
#include <sched.h>
#include <stdlib.h>

#include "harness.h"
#include "sync/sync.h"

TEST(semaphore_counts)
{
    mproc_semaphore *s;
    CHECK_OK(mproc_semaphore_new(&s, 2, false));
    CHECK_EQ(mproc_semaphore_value(s), 2);
    CHECK_OK(mproc_semaphore_acquire(s, 0));
    CHECK_OK(mproc_semaphore_acquire(s, MPROC_FOREVER));
    CHECK_EQ(mproc_semaphore_value(s), 0);
    double t0 = harness_now();
    CHECK_RC(mproc_semaphore_acquire(s, 0), -EAGAIN);
    CHECK(harness_now() - t0 < 0.01 * harness_slow());
    t0 = harness_now();
    CHECK_RC(mproc_semaphore_acquire(s, 0.1), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.1, 0.1 + 0.3 * harness_slow());
    for (int i = 1; i <= 5; i++) {
        CHECK_OK(mproc_semaphore_release(s)); /* unbounded: above the initial value is fine */
        CHECK_EQ(mproc_semaphore_value(s), i);
    }
    for (int i = 4; i >= 0; i--) {
        CHECK_OK(mproc_semaphore_acquire(s, 0));
        CHECK_EQ(mproc_semaphore_value(s), i);
    }
    mproc_semaphore_free(s);
}

TEST(semaphore_bounded_overflow)
{
    mproc_semaphore *s;
    CHECK_OK(mproc_semaphore_new(&s, 2, true));
    CHECK_RC(mproc_semaphore_release(s), -EOVERFLOW);
    CHECK_EQ(mproc_semaphore_value(s), 2);
    CHECK_OK(mproc_semaphore_acquire(s, 0));
    CHECK_OK(mproc_semaphore_release(s));
    CHECK_RC(mproc_semaphore_release(s), -EOVERFLOW);
    CHECK_EQ(mproc_semaphore_value(s), 2);
    mproc_semaphore_free(s);
    /* Bounded at 0: can never be released. */
    CHECK_OK(mproc_semaphore_new(&s, 0, true));
    CHECK_RC(mproc_semaphore_release(s), -EOVERFLOW);
    mproc_semaphore_free(s);
}

typedef struct {
    mproc_semaphore *sem;
    int _Atomic passed;
} gate_arg;

static int pass_gate(void *arg)
{
    gate_arg *a = arg;
    if (mproc_semaphore_acquire(a->sem, 30) != 0) return 2;
    atomic_fetch_add(&a->passed, 1);
    return 0;
}

/* Every release lets exactly one sleeping process through. */
TEST(semaphore_release_wakes_one_sleeper_each)
{
    gate_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK_OK(mproc_semaphore_new(&a->sem, 0, false));
    mproc_process *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = harness_start(pass_gate, a);
    while (mproc__semaphore_sleepers(a->sem) < 4)
        sched_yield();
    for (int i = 1; i <= 4; i++) {
        CHECK_OK(mproc_semaphore_release(a->sem));
        double t0 = harness_now();
        while (atomic_load(&a->passed) < i) {
            CHECK(harness_now() - t0 < 10 * harness_slow());
            sched_yield();
        }
        CHECK_EQ(atomic_load(&a->passed), i);
    }
    for (int i = 0; i < 4; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    CHECK_EQ(mproc_semaphore_value(a->sem), 0);
    mproc_semaphore_free(a->sem);
    mproc_shared_free(a);
}

TEST(semaphore_bad_input)
{
    mproc_semaphore *s;
    CHECK_RC(mproc_semaphore_new(NULL, 1, false), -EINVAL);
    CHECK_RC(mproc_semaphore_new(&s, 0x80000000u, false), -EINVAL);
    CHECK(s == NULL);
    CHECK_RC(mproc_semaphore_acquire(NULL, 0), -EINVAL);
    CHECK_RC(mproc_semaphore_release(NULL), -EINVAL);
    CHECK_RC(mproc_semaphore_value(NULL), -EINVAL);
    mproc_semaphore_free(NULL);
    void *blank = mproc_shared_alloc(64);
    CHECK_RC(mproc_semaphore_release((mproc_semaphore *)blank), -EINVAL);
    mproc_shared_free(blank);
}
