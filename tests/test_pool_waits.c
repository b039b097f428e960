/* Pool waits: Ctrl-C (a SIGINT handler) at random moments makes every blocking pool call return
 * -EINTR, and the pool stays usable; the one timeout rule (NaN refused, huge or infinite means
 * forever) for waits and time limits. */
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "intr_util.h"

#define ROUNDS 60

/* A task held until the test releases its round (or 30 s pass). */
typedef struct {
    _Atomic unsigned *released; /* arena: the last round released */
    unsigned round;
    _Atomic unsigned *started; /* arena, or NULL: set once it runs */
} hold_arg;

static int hold_task(mproc_task *t)
{
    const hold_arg *h = mproc_task_arg(t, NULL);
    if (h->started) atomic_store(h->started, 1);
    double t0 = harness_now();
    while (atomic_load(h->released) < h->round && harness_now() - t0 < 30)
        usleep(200);
    return mproc_task_return(t, &h->round, sizeof h->round);
}

static int square(mproc_task *t)
{
    const int *x = mproc_task_arg(t, NULL);
    long long y = (long long)*x * *x;
    return mproc_task_return(t, &y, sizeof y);
}

static void check_pool_works(mproc_pool *p)
{
    for (int i = 0; i < 8; i++) {
        long long y = 0;
        CHECK_OK(mproc_pool_apply(p, square, &i, sizeof i, &y, sizeof y, NULL));
        CHECK_EQ(y, (long long)i * i);
    }
}

typedef struct {
    mproc_pool *p;
    _Atomic unsigned *released;
} fixture;

static fixture setup(int workers)
{
    fixture fx;
    intr_install();
    fx.released = mproc_shared_alloc(sizeof *fx.released);
    CHECK(fx.released != NULL);
    atomic_store(fx.released, 0);
    CHECK_OK(mproc_pool_new(&fx.p, &(mproc_pool_opts){.workers = workers}));
    return fx;
}

static void teardown(fixture *fx)
{
    atomic_store(fx->released, UINT32_MAX);
    check_pool_works(fx->p);
    mproc_pool_free(fx->p);
    mproc_shared_free((void *)fx->released);
}

/* The sender found the call not yet started (intr_util.h): end it by releasing its task. */
static void release_hold(void *arg)
{
    const hold_arg *h = arg;
    atomic_store(h->released, h->round);
}

/* Rounds whose signal came while the call had signals blocked: each must give -EINTR. */
static unsigned owed;

/* A failing round names its delay; r == 0 only when the signal came before the call. */
static void check_round(int r, unsigned round, intr_result res, int handled_before)
{
    for (int i = 0; i < 1000 && intr_count() == handled_before; i++)
        sched_yield(); /* a signal sent before the call may still be on its way */
    CHECK_EQ(intr_count(), handled_before + 1);
    if (!res.blocked) {
        CHECK(r == 0 || r == -EINTR);
        return;
    }
    owed++;
    if (r != -EINTR)
        harness_fail(__FILE__, __LINE__, "round %u (SIGINT after %.0f us): %d (%s), not -EINTR",
                     round, res.delay_us, r, mproc_strerror(r));
}

/* Most signals must have come while the call had them blocked (none do if it never blocks). */
static void check_owed(void)
{
    if (owed < ROUNDS / 4)
        harness_fail(__FILE__, __LINE__, "only %u of %d rounds found the call's signals blocked",
                     owed, ROUNDS);
}

/* The limit of a call that must be interrupted: long enough that a missed signal fails the
 * round instead of hanging it. */
#define WAIT_S (2.0 * harness_slow())

TEST_T(future_get_returns_eintr, 120)
{
    fixture fx = setup(2);
    owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        mproc_future *f;
        hold_arg h = {fx.released, i, NULL};
        CHECK_OK(mproc_pool_submit(fx.p, hold_task, &h, sizeof h, &f));
        int before = intr_count();
        intr_shot *s = intr_arm(i, release_hold, &h);
        unsigned got = 0;
        intr_go(s);
        int r = mproc_future_get(f, &got, sizeof got, NULL, WAIT_S);
        check_round(r, i, intr_end(s), before);
        /* the future is still usable: release the task and get its result */
        atomic_store(fx.released, i);
        CHECK_OK(mproc_future_get(f, &got, sizeof got, NULL, 30));
        CHECK_EQ(got, i);
        mproc_future_free(f);
    }
    check_owed();
    teardown(&fx);
}

TEST_T(future_wait_and_futures_wait_return_eintr, 120)
{
    fixture fx = setup(2);
    owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        mproc_future *fs[2];
        hold_arg h = {fx.released, i, NULL};
        for (int k = 0; k < 2; k++)
            CHECK_OK(mproc_pool_submit(fx.p, hold_task, &h, sizeof h, &fs[k]));
        int before = intr_count();
        intr_shot *s = intr_arm(i, release_hold, &h);
        intr_go(s);
        int r;
        switch (i % 3) {
        case 0:
            r = mproc_future_wait(fs[0], WAIT_S);
            break;
        case 1:
            r = mproc_futures_wait(fs, 2, MPROC_ALL_COMPLETED, WAIT_S);
            break;
        default:
            r = mproc_futures_wait(fs, 2, MPROC_FIRST_COMPLETED, WAIT_S);
            break;
        }
        check_round(r, i, intr_end(s), before);
        atomic_store(fx.released, i);
        CHECK_OK(mproc_futures_wait(fs, 2, MPROC_ALL_COMPLETED, 30));
        for (int k = 0; k < 2; k++)
            mproc_future_free(fs[k]);
    }
    check_owed();
    teardown(&fx);
}

TEST_T(apply_returns_eintr, 120)
{
    fixture fx = setup(2);
    owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        hold_arg h = {fx.released, i, NULL};
        int before = intr_count();
        intr_shot *s = intr_arm(i, release_hold, &h);
        unsigned got = 0;
        intr_go(s);
        /* apply has no timeout: a missed signal would hang until the task's own 30 s */
        double t0 = harness_now();
        int r = mproc_pool_apply(fx.p, hold_task, &h, sizeof h, &got, sizeof got, NULL);
        check_round(r, i, intr_end(s), before);
        CHECK(harness_now() - t0 < WAIT_S);
        atomic_store(fx.released, i); /* the abandoned task ends */
    }
    check_owed();
    teardown(&fx);
}

typedef struct {
    hold_arg h;
    int left;
} one_input;

static int one_item(const void **data, size_t *len, void *arg)
{
    one_input *in = arg;
    if (in->left-- <= 0) return 0;
    *data = &in->h;
    *len = sizeof in->h;
    return 1;
}

TEST_T(imap_next_returns_eintr, 120)
{
    fixture fx = setup(2);
    owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        one_input in = {{fx.released, i, NULL}, 1};
        mproc_imap *it;
        CHECK_OK(mproc_imap_new(&it, fx.p, hold_task, one_item, &in,
                                &(mproc_imap_opts){.unordered = i % 2}));
        const void *data;
        size_t len, idx;
        int before = intr_count();
        intr_shot *s = intr_arm(i, release_hold, &in.h);
        intr_go(s);
        int r = mproc_imap_next(it, &data, &len, &idx, WAIT_S);
        check_round(r, i, intr_end(s), before);
        /* the iteration goes on where it was */
        atomic_store(fx.released, i);
        if (r != 0) CHECK_OK(mproc_imap_next(it, &data, &len, &idx, 30));
        CHECK_EQ(len, sizeof i);
        CHECK_EQ(*(const unsigned *)data, i);
        CHECK_EQ(idx, 0);
        CHECK_RC(mproc_imap_next(it, &data, &len, &idx, 30), MPROC_EEND);
        mproc_imap_free(it);
    }
    check_owed();
    teardown(&fx);
}

TEST_T(pool_join_returns_eintr, 120)
{
    intr_install();
    _Atomic unsigned *released = mproc_shared_alloc(sizeof *released);
    CHECK(released != NULL);
    atomic_store(released, 0);
    unsigned proved = 0, rounds = 20;
    for (unsigned i = 1; i <= rounds; i++) {
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
        hold_arg h = {released, i, NULL};
        mproc_future *f;
        CHECK_OK(mproc_pool_submit(p, hold_task, &h, sizeof h, &f));
        CHECK_OK(mproc_pool_close(p));
        int before = intr_count();
        intr_shot *s = intr_arm(i, release_hold, &h);
        intr_go(s);
        int r = mproc_pool_join(p, WAIT_S);
        proved += intr_check(r, i, intr_end(s), before);
        if (r == -EINTR) {
            /* the pool goes on closing: its task ends and a join again completes */
            atomic_store(released, i);
            r = mproc_pool_join(p, 30);
        }
        CHECK_OK(r);
        unsigned got = 0;
        CHECK_OK(mproc_future_get(f, &got, sizeof got, NULL, 0));
        CHECK_EQ(got, i);
        mproc_future_free(f);
        mproc_pool_free(p);
    }
    CHECK(proved >= rounds / 4);
    mproc_shared_free((void *)released);
}

/* A signal the program ignores interrupts nothing. */
TEST(ignored_signal_does_not_interrupt_future_get)
{
    fixture fx = setup(1);
    hold_arg h = {fx.released, 1, NULL};
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(fx.p, hold_task, &h, sizeof h, &f));
    signal(SIGUSR1, SIG_IGN);
    CHECK_RC(mproc_future_wait(f, 0.05), -ETIMEDOUT);
    raise(SIGUSR1);
    raise(SIGURG); /* default action: ignore */
    CHECK_RC(mproc_future_wait(f, 0.1), -ETIMEDOUT);
    atomic_store(fx.released, 1);
    unsigned got = 0;
    CHECK_OK(mproc_future_get(f, &got, sizeof got, NULL, 30));
    CHECK_EQ(got, 1);
    mproc_future_free(f);
    CHECK_EQ(intr_count(), 0);
    teardown(&fx);
}

/* ---- the timeout rule ---- */

static int sleep_task(mproc_task *t)
{
    const double *secs = mproc_task_arg(t, NULL);
    double t0 = harness_now();
    while (harness_now() - t0 < *secs)
        usleep(1000);
    return mproc_task_return(t, secs, sizeof *secs);
}

TEST(nan_timeouts_are_refused)
{
    mproc_pool *p;
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.task_timeout = NAN}), -EINVAL);
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.restart_window = NAN}), -EINVAL);
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    int x = 3;
    mproc_future *f = NULL;
    CHECK_RC(
        mproc_pool_submit_opts(p, square, &x, sizeof x, &(mproc_submit_opts){.timeout = NAN}, &f),
        -EINVAL);
    CHECK_RC(mproc_pool_submit_opts(p, square, &x, sizeof x,
                                    &(mproc_submit_opts){.soft_timeout = NAN}, &f),
             -EINVAL);
    CHECK_OK(mproc_pool_submit(p, square, &x, sizeof x, &f));
    CHECK_OK(mproc_future_wait(f, 30));
    /* refused even when the call could return at once */
    CHECK_RC(mproc_future_wait(f, NAN), -EINVAL);
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, NAN), -EINVAL);
    CHECK_RC(mproc_futures_wait(&f, 1, MPROC_ALL_COMPLETED, NAN), -EINVAL);
    mproc_future_free(f);
    mproc_pool_close(p);
    CHECK_RC(mproc_pool_join(p, NAN), -EINVAL);
    mproc_pool_free(p);
}

/* An infinite or huge wait waits: the future is done 0.2 s later, not at once. */
TEST(huge_wait_timeouts_wait)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    const double waits[] = {INFINITY, 1e300, 9.3e9, 1e10};
    for (size_t i = 0; i < sizeof waits / sizeof *waits; i++) {
        double secs = 0.2, back = 0;
        mproc_future *f;
        CHECK_OK(mproc_pool_submit(p, sleep_task, &secs, sizeof secs, &f));
        double t0 = harness_now();
        CHECK_OK(mproc_future_get(f, &back, sizeof back, NULL, waits[i]));
        CHECK_BETWEEN(harness_now() - t0, 0.15, 10 * harness_slow());
        CHECK(back == secs);
        mproc_future_free(f);
    }
    mproc_pool_free(p);
}

/* A huge per-task limit means none (not an instant kill), and overrides the pool's. */
TEST(huge_submit_timeout_means_no_limit)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed: hard limits become cancel requests");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .task_timeout = 0.1}));
    const double limits[] = {INFINITY, 1e300, 9.3e9};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        double secs = 0.3, back = 0;
        mproc_future *f;
        CHECK_OK(mproc_pool_submit_opts(
            p, sleep_task, &secs, sizeof secs,
            &(mproc_submit_opts){.timeout = limits[i], .soft_timeout = limits[i]}, &f));
        CHECK_OK(mproc_future_get(f, &back, sizeof back, NULL, 30));
        CHECK(back == secs);
        mproc_future_free(f);
    }
    /* the pool's own limit still holds for the others */
    double secs = 30;
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, sleep_task, &secs, sizeof secs, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_ETIMELIMIT);
    mproc_future_free(f);
    mproc_pool_free(p);
}

TEST(huge_pool_task_timeout_means_no_limit)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed: hard limits become cancel requests");
    const double limits[] = {INFINITY, 1e300, 1e10};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .task_timeout = limits[i]}));
        double secs = 0.2, back = 0;
        mproc_future *f;
        CHECK_OK(mproc_pool_submit(p, sleep_task, &secs, sizeof secs, &f));
        CHECK_OK(mproc_future_get(f, &back, sizeof back, NULL, 30));
        CHECK(back == secs);
        mproc_future_free(f);
        mproc_pool_free(p);
    }
}

/* ---- error codes from the real paths ---- */

TEST(cancel_of_a_running_task_says_so)
{
    fixture fx = setup(1);
    _Atomic unsigned *started = mproc_shared_alloc(sizeof *started);
    atomic_store(started, 0);
    hold_arg h = {fx.released, 1, started};
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(fx.p, hold_task, &h, sizeof h, &f));
    double until = harness_now() + 10 * harness_slow();
    while (!atomic_load(started) && harness_now() < until)
        usleep(1000);
    mproc_error e;
    int r = mproc_future_cancel(f);
    CHECK_RC(r, -EBUSY);
    CHECK(strcmp(mproc_strerror(r), "still running (cancel requested)") == 0);
    atomic_store(fx.released, 1);
    CHECK_OK(mproc_future_wait(f, 30));
    CHECK_EQ(mproc_future_error(f, &e), 1);
    mproc_future_free(f);
    mproc_shared_free((void *)started);
    teardown(&fx);
}
