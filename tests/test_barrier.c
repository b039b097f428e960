/* Barrier: Python's threading.Barrier semantics across processes. */
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sync/sync.h"

#define PARTIES 5
#define PASSES 1000

typedef struct {
    mproc_barrier *b;
    int _Atomic actions;               /* passes completed by the action */
    int _Atomic hits[PASSES][PARTIES]; /* which indices each pass handed out */
    int _Atomic results[8];            /* one per party in the break tests */
    double timeout;
    pid_t victim; /* for the killer */
} barrier_arg;

static int count_pass(void *arg)
{
    barrier_arg *a = arg;
    atomic_fetch_add(&a->actions, 1);
    return 0;
}

static int many_passes(void *arg)
{
    barrier_arg *a = arg;
    for (int pass = 0; pass < PASSES; pass++) {
        int i = mproc_barrier_wait(a->b, 60);
        if (i < 0 || i >= PARTIES) return 2;
        atomic_fetch_add(&a->hits[pass][i], 1);
        /* The action ran before anyone of this pass was let go. */
        if (atomic_load(&a->actions) < pass + 1) return 3;
    }
    return 0;
}

TEST_T(barrier_5_processes_1000_passes, 120)
{
    barrier_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    CHECK_OK(mproc_barrier_new(&a->b, PARTIES, count_pass, a));
    CHECK_EQ(mproc_barrier_parties(a->b), PARTIES);
    mproc_process *p[PARTIES];
    for (int i = 0; i < PARTIES; i++)
        p[i] = harness_start(many_passes, a);
    for (int i = 0; i < PARTIES; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    CHECK_EQ(atomic_load(&a->actions), PASSES);
    for (int pass = 0; pass < PASSES; pass++)
        for (int i = 0; i < PARTIES; i++)
            CHECK_EQ(atomic_load(&a->hits[pass][i]), 1);
    CHECK(!mproc_barrier_broken(a->b));
    CHECK_EQ(mproc_barrier_n_waiting(a->b), 0);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

static int wait_record(void *arg)
{
    barrier_arg *a = arg;
    int r = mproc_barrier_wait(a->b, a->timeout);
    int slot = 0;
    while (slot < 8) {
        int zero = 0;
        if (atomic_compare_exchange_strong(&a->results[slot], &zero, r == 0 ? 1000 : r)) break;
        slot++;
    }
    return 0;
}

static void await_waiting(mproc_barrier *b, int n)
{
    double t0 = harness_now();
    while (mproc_barrier_n_waiting(b) < n) {
        CHECK(harness_now() - t0 < 10 * harness_slow());
        sched_yield();
    }
}

static int count_results(barrier_arg *a, int code)
{
    int n = 0;
    for (int i = 0; i < 8; i++)
        n += atomic_load(&a->results[i]) == code;
    return n;
}

static barrier_arg *break_setup(unsigned parties, double timeout)
{
    barrier_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a);
    CHECK_OK(mproc_barrier_new(&a->b, parties, NULL, NULL));
    a->timeout = timeout;
    return a;
}

/* Three parties pass the barrier, proving it usable. */
static void check_usable(barrier_arg *a)
{
    memset(a->results, 0, sizeof a->results);
    a->timeout = 30;
    mproc_process *p1 = harness_start(wait_record, a), *p2 = harness_start(wait_record, a);
    int i = mproc_barrier_wait(a->b, 30);
    CHECK_BETWEEN(i, 0, 2);
    CHECK_EQ(harness_join(p1), 0);
    CHECK_EQ(harness_join(p2), 0);
    CHECK_EQ(count_results(a, MPROC_EBROKEN) + count_results(a, -ETIMEDOUT), 0);
}

TEST(barrier_abort_breaks_it_for_everyone)
{
    barrier_arg *a = break_setup(3, 30);
    mproc_process *p1 = harness_start(wait_record, a), *p2 = harness_start(wait_record, a);
    await_waiting(a->b, 2);
    CHECK_OK(mproc_barrier_abort(a->b));
    CHECK_EQ(harness_join(p1), 0);
    CHECK_EQ(harness_join(p2), 0);
    CHECK_EQ(count_results(a, MPROC_EBROKEN), 2);
    CHECK(mproc_barrier_broken(a->b));
    CHECK_EQ(mproc_barrier_n_waiting(a->b), 0);
    CHECK_RC(mproc_barrier_wait(a->b, 30), MPROC_EBROKEN); /* at once */
    CHECK_OK(mproc_barrier_reset(a->b));
    CHECK(!mproc_barrier_broken(a->b));
    check_usable(a);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

TEST(barrier_reset_while_waiting)
{
    barrier_arg *a = break_setup(3, 30);
    mproc_process *p1 = harness_start(wait_record, a), *p2 = harness_start(wait_record, a);
    await_waiting(a->b, 2);
    CHECK_OK(mproc_barrier_reset(a->b));
    CHECK_EQ(harness_join(p1), 0);
    CHECK_EQ(harness_join(p2), 0);
    CHECK_EQ(count_results(a, MPROC_EBROKEN), 2);
    CHECK(!mproc_barrier_broken(a->b)); /* reset, not broken: usable at once */
    check_usable(a);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

TEST(barrier_timeout_breaks_it)
{
    barrier_arg *a = break_setup(3, 30);
    mproc_process *p1 = harness_start(wait_record, a);
    await_waiting(a->b, 1);
    double t0 = harness_now();
    CHECK_RC(mproc_barrier_wait(a->b, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.2, 0.2 + 0.3 * harness_slow());
    CHECK_EQ(harness_join(p1), 0);
    CHECK_EQ(count_results(a, MPROC_EBROKEN), 1);
    CHECK(mproc_barrier_broken(a->b));
    CHECK_RC(mproc_barrier_wait(a->b, 0.2), MPROC_EBROKEN);
    CHECK_OK(mproc_barrier_reset(a->b));
    check_usable(a);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

static int fail_action(void *arg)
{
    (void)arg;
    return -1;
}

TEST(barrier_failing_action_breaks_it)
{
    barrier_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK_OK(mproc_barrier_new(&a->b, 2, fail_action, NULL));
    a->timeout = 30;
    mproc_process *p = harness_start(wait_record, a);
    await_waiting(a->b, 1);
    CHECK_RC(mproc_barrier_wait(a->b, 30), MPROC_EBROKEN);
    CHECK_EQ(harness_join(p), 0);
    CHECK_EQ(count_results(a, MPROC_EBROKEN), 1);
    CHECK(mproc_barrier_broken(a->b));
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

TEST(barrier_single_party_and_bad_input)
{
    mproc_barrier *b;
    CHECK_RC(mproc_barrier_new(NULL, 2, NULL, NULL), -EINVAL);
    CHECK_RC(mproc_barrier_new(&b, 0, NULL, NULL), -EINVAL);
    CHECK_RC(mproc_barrier_wait(NULL, 0), -EINVAL);
    CHECK_RC(mproc_barrier_abort(NULL), -EINVAL);
    CHECK_RC(mproc_barrier_reset(NULL), -EINVAL);
    CHECK_RC(mproc_barrier_n_waiting(NULL), -EINVAL);
    CHECK_RC(mproc_barrier_parties(NULL), -EINVAL);
    CHECK(!mproc_barrier_broken(NULL));
    mproc_barrier_free(NULL);
    CHECK_OK(mproc_barrier_new(&b, 1, NULL, NULL));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(mproc_barrier_wait(b, 0), 0);
    mproc_barrier_free(b);
}

/* Kill the victim once it and the caller both wait at the barrier. */
static int kill_when_two_wait(void *arg)
{
    barrier_arg *a = arg;
    while (mproc_barrier_n_waiting(a->b) < 2)
        sched_yield();
    return kill(a->victim, SIGKILL) == 0 ? 0 : 1;
}

static int wait_forever(void *arg)
{
    barrier_arg *a = arg;
    mproc_barrier_wait(a->b, MPROC_FOREVER);
    return 0;
}

/* A party killed while it waits breaks the round: the other waiter learns it within the liveness
 * check period (50 ms), not at its timeout (30 s), and after a reset the same barrier fills again
 * without the dead party. */
TEST(barrier_party_killed_while_waiting_breaks_it)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    barrier_arg *a = break_setup(3, 30);
    mproc_process *other = harness_start(wait_record, a);
    await_waiting(a->b, 1);
    mproc_process *victim = harness_start(wait_forever, a);
    await_waiting(a->b, 2);
    double t0 = harness_now();
    CHECK_OK(mproc_process_kill(victim));
    CHECK_EQ(harness_join(other), 0);
    CHECK_BETWEEN(harness_now() - t0, 0, 0.5 * harness_slow());
    CHECK_EQ(harness_join(victim), -SIGKILL);
    CHECK_EQ(count_results(a, MPROC_EBROKEN), 1);
    CHECK(mproc_barrier_broken(a->b));
    CHECK_EQ(mproc_barrier_n_waiting(a->b), 0);
    CHECK_RC(mproc_barrier_wait(a->b, 30), MPROC_EBROKEN); /* at once */
    CHECK_OK(mproc_barrier_reset(a->b));
    CHECK(!mproc_barrier_broken(a->b));
    check_usable(a);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}

/* The caller, asleep in wait, is woken by another party's death rather than by its timeout. */
TEST(barrier_death_wakes_the_caller_promptly)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    barrier_arg *a = break_setup(3, 30);
    mproc_process *victim = harness_start(wait_forever, a);
    await_waiting(a->b, 1);
    a->victim = mproc_process_pid(victim);
    mproc_process *killer = harness_start(kill_when_two_wait, a);
    double t0 = harness_now();
    CHECK_RC(mproc_barrier_wait(a->b, 30), MPROC_EBROKEN);
    CHECK_BETWEEN(harness_now() - t0, 0, 0.5 * harness_slow());
    CHECK_EQ(harness_join(killer), 0);
    CHECK_EQ(harness_join(victim), -SIGKILL);
    CHECK(mproc_barrier_broken(a->b));
    CHECK_OK(mproc_barrier_reset(a->b));
    check_usable(a);
    mproc_barrier_free(a->b);
    mproc_shared_free(a);
}
