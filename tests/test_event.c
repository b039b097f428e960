/* Event: Python's multiprocessing.Event semantics across processes. */
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "sync/sync.h"

/* Wait until someone sleeps in e's wait (past the spin), so a set exercises the wake path. */
static void await_sleeper(mproc_event *e)
{
    while (mproc__event_sleepers(e) == 0)
        sched_yield();
}

TEST(event_wait_zero_fails_at_once)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK(!mproc_event_is_set(e));
    double t0 = harness_now();
    CHECK_RC(mproc_event_wait(e, 0), -EAGAIN);
    CHECK(harness_now() - t0 < 0.01 * harness_slow());
    CHECK_OK(mproc_event_set(e));
    CHECK_OK(mproc_event_wait(e, 0));
    mproc_event_free(e);
}

TEST(event_wait_timeout_band)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    double t0 = harness_now();
    CHECK_RC(mproc_event_wait(e, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.2, 0.2 + 0.3 * harness_slow());
    t0 = harness_now();
    CHECK_RC(mproc_event_wait(e, 0.001), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.001, 0.001 + 0.2 * harness_slow());
    mproc_event_free(e);
}

TEST(event_set_clear_is_set)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK_OK(mproc_event_set(e));
    CHECK(mproc_event_is_set(e));
    CHECK_OK(mproc_event_set(e)); /* idempotent */
    CHECK_OK(mproc_event_wait(e, MPROC_FOREVER));
    CHECK_OK(mproc_event_clear(e));
    CHECK(!mproc_event_is_set(e));
    CHECK_RC(mproc_event_wait(e, 0.01), -ETIMEDOUT);
    mproc_event_free(e);
}

static int set_when_parent_sleeps(void *arg)
{
    mproc_event *e = arg;
    await_sleeper(e);
    return mproc_event_set(e) == 0 ? 0 : 1;
}

TEST(event_set_in_child_wakes_parent)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    mproc_process *p = harness_start(set_when_parent_sleeps, e);
    double t0 = harness_now();
    CHECK_OK(mproc_event_wait(e, 20));
    CHECK(harness_now() - t0 < 10 * harness_slow());
    CHECK(mproc_event_is_set(e));
    CHECK_EQ(harness_join(p), 0);
    mproc_event_free(e);
}

static int wait_forever(void *arg)
{
    return mproc_event_wait(arg, MPROC_FOREVER) == 0 ? 0 : 1;
}

TEST(event_set_wakes_every_waiting_child)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    mproc_process *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = harness_start(wait_forever, e);
    while (mproc__event_sleepers(e) < 4)
        sched_yield();
    CHECK_OK(mproc_event_set(e));
    for (int i = 0; i < 4; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    mproc_event_free(e);
}

/* As in Python, a waiter returns true when the event was set while it waited, even if it was
 * cleared again before the waiter ran. */
TEST(event_set_then_clear_still_wakes_waiter)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    mproc_process *p = harness_start(wait_forever, e);
    await_sleeper(e);
    CHECK_OK(mproc_event_set(e));
    CHECK_OK(mproc_event_clear(e));
    CHECK_EQ(harness_join(p), 0);
    CHECK(!mproc_event_is_set(e));
    mproc_event_free(e);
}

TEST(event_bad_input)
{
    CHECK_RC(mproc_event_new(NULL), -EINVAL);
    CHECK_RC(mproc_event_set(NULL), -EINVAL);
    CHECK_RC(mproc_event_clear(NULL), -EINVAL);
    CHECK_RC(mproc_event_wait(NULL, 0), -EINVAL);
    CHECK(!mproc_event_is_set(NULL));
    mproc_event_free(NULL);
    /* Memory outside the arena, and arena memory that holds no event. */
    uint32_t *heap = calloc(16, sizeof *heap);
    CHECK_RC(mproc_event_set((mproc_event *)heap), -EINVAL);
    free(heap);
    void *blank = mproc_shared_alloc(64);
    CHECK_RC(mproc_event_wait((mproc_event *)blank, 0), -EINVAL);
    mproc_shared_free(blank);
    /* Another kind of object. */
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_RC(mproc_event_set((mproc_event *)l), -EINVAL);
    mproc_lock_free(l);
    /* Use after free (best effort: until the block is reused). */
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    mproc_event_free(e);
    CHECK_RC(mproc_event_set(e), -EINVAL);
}
