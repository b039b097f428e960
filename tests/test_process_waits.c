/* process_join: Ctrl-C (a SIGINT handler) at random moments makes it return -EINTR, from a thread
 * of the joiner or from the child itself; the timeout rule (NaN refused, huge means forever). */
#include <math.h>
#include <sched.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "intr_util.h"

#define ROUNDS 60

static int wait_event(void *arg)
{
    return mproc_event_wait(arg, 30.0) == 0 ? 7 : 1;
}

/* The sender found join not yet started (intr_util.h): end it by letting the child go. */
static void let_go(void *arg)
{
    mproc_event_set(arg);
}

TEST_T(process_join_returns_eintr, 120)
{
    intr_install();
    unsigned owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        mproc_event *go;
        CHECK_OK(mproc_event_new(&go));
        mproc_process *p = harness_start(wait_event, go);
        int before = intr_count();
        intr_shot *s = intr_arm(i, let_go, go);
        intr_go(s);
        int r = mproc_process_join(p, 2.0 * harness_slow());
        intr_result res = intr_end(s);
        for (int k = 0; k < 1000 && intr_count() == before; k++)
            sched_yield();
        CHECK_EQ(intr_count(), before + 1);
        if (res.blocked) {
            owed++;
            if (r != -EINTR)
                harness_fail(__FILE__, __LINE__, "round %u (SIGINT after %.0f us): %d (%s)", i,
                             res.delay_us, r, mproc_strerror(r));
            CHECK(mproc_process_is_alive(p));
        } else {
            CHECK(r == 0 || r == -EINTR);
        }
        CHECK_OK(mproc_event_set(go));
        CHECK_EQ(harness_join(p), 7);
        mproc_event_free(go);
    }
    CHECK(owed >= ROUNDS / 4);
}

/* The child interrupts its parent a random short time after it started, then lives on; or ends
 * at once if the parent's join had not blocked signals yet (intr_util.h): nothing is owed then. */
static int interrupt_parent(void *arg)
{
    unsigned us = (unsigned)(uintptr_t)arg;
    nanosleep(&(struct timespec){0, (long)us * 1000}, NULL);
    pid_t parent = mproc_parent_pid();
    bool blocked = intr_blocked_in(parent, parent);
    kill(parent, SIGINT);
    if (!blocked) return 4;
    sleep(30);
    return 3;
}

TEST_T(process_join_interrupted_by_the_child, 120)
{
    SKIP_IN_THREAD_MODE("the child is a thread of the joiner");
    intr_install();
    unsigned seed = 7, joined = 0;
    for (unsigned i = 1; i <= 30; i++) {
        unsigned us = (unsigned)(rand_r(&seed) % 3000);
        int before = intr_count();
        mproc_process *p = harness_start(interrupt_parent, (void *)(uintptr_t)us);
        int r = mproc_process_join(p, 10.0 * harness_slow());
        for (int k = 0; k < 1000 && intr_count() == before; k++)
            sched_yield();
        CHECK_EQ(intr_count(), before + 1);
        CHECK(r == -EINTR || r == 0);
        CHECK_OK(mproc_process_kill(p));
        int code = harness_join(p);
        if (code == -SIGKILL || code == 3) {
            joined++; /* the signal came while join had it blocked */
            CHECK_RC(r, -EINTR);
        } else {
            CHECK_EQ(code, 4);
        }
    }
    CHECK(joined >= 10);
}

/* Waits until the helper sets the event: a huge timeout is forever, not "now". */
static void *set_later(void *arg)
{
    nanosleep(&(struct timespec){0, 200000000}, NULL);
    mproc_event_set(arg);
    return NULL;
}

TEST(process_join_timeout_rule)
{
    const double forever[] = {INFINITY, 1e300, 9.3e9};
    for (size_t i = 0; i < 3; i++) {
        mproc_event *go;
        CHECK_OK(mproc_event_new(&go));
        mproc_process *p = harness_start(wait_event, go);
        CHECK_RC(mproc_process_join(p, NAN), -EINVAL);
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, set_later, go));
        double t0 = harness_now();
        CHECK_OK(mproc_process_join(p, forever[i]));
        CHECK_BETWEEN(harness_now() - t0, 0.15, 10 * harness_slow());
        pthread_join(th, NULL);
        int code;
        CHECK_OK(mproc_process_exitcode(p, &code));
        CHECK_EQ(code, 7);
        mproc_process_free(p);
        mproc_event_free(go);
    }
}
