/* Pool: workers that die (SIGKILL, segfault, exit, abort), crash loops, broken initializers and
 * hard time limits. A dead worker fails exactly its task, is replaced, and the pool goes on. */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* LeakSanitizer runs at exit() in a worker and may turn the status into its own. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int square(mproc_task *t)
{
    const int *x = mproc_task_arg(t, NULL);
    long long y = (long long)*x * *x;
    return mproc_task_return(t, &y, sizeof y);
}

/* Publishes its worker's pid through the arena, then waits to be killed. */
static int report_pid_and_wait(mproc_task *t)
{
    pid_t *slot = *(pid_t *const *)mproc_task_arg(t, NULL);
    __atomic_store_n(slot, getpid(), __ATOMIC_SEQ_CST);
    for (int i = 0; i < 20000 && !mproc_task_cancelled(t); i++)
        usleep(1000);
    return 0;
}

static int segfault_task(mproc_task *t)
{
    (void)t;
    volatile int *p = NULL;
    raise(SIGSEGV); /* in case the compiler drops the store below under a sanitizer */
    return *p;
}

static int exit3_task(mproc_task *t)
{
    (void)t;
    exit(3);
}

static int abort_task(mproc_task *t)
{
    (void)t;
    abort();
}

static int sleep_task(mproc_task *t)
{
    const double *s = mproc_task_arg(t, NULL);
    double t0 = harness_now();
    while (harness_now() - t0 < *s)
        usleep(1000);
    return mproc_task_return(t, s, sizeof *s);
}

static mproc_pool *make_pool(int workers)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = workers}));
    return p;
}

/* Submit n quick tasks and check all of them. */
static void check_pool_works(mproc_pool *p, int n)
{
    mproc_future *fs[64];
    for (int i = 0; i < n; i++)
        CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
    for (int i = 0; i < n; i++) {
        long long y;
        CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, 30));
        CHECK_EQ(y, (long long)i * i);
        mproc_future_free(fs[i]);
    }
}

/* Wait until the pool has `n` live workers, none of them `gone`. */
static void wait_pool_size(mproc_pool *p, int n, pid_t gone)
{
    double until = harness_now() + 10 * harness_slow();
    for (;;) {
        pid_t pids[16];
        int k = mproc_pool_worker_pids(p, pids, 16);
        bool has_gone = false;
        for (int i = 0; i < k && i < 16; i++)
            has_gone |= pids[i] == gone;
        if (k == n && !has_gone) return;
        if (harness_now() > until) CHECK(!"pool size not restored");
        usleep(2000);
    }
}

TEST(sigkill_worker_mid_task)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    mproc_pool *p = make_pool(2);
    pid_t *victim = mproc_shared_alloc(sizeof *victim);
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, report_pid_and_wait, &victim, sizeof victim, &f));
    mproc_future *others[20];
    for (int i = 0; i < 20; i++)
        CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &others[i]));
    double until = harness_now() + 10;
    while (!__atomic_load_n(victim, __ATOMIC_SEQ_CST) && harness_now() < until)
        usleep(1000);
    pid_t pid = *victim;
    CHECK(pid > 0);
    CHECK_OK(kill(pid, SIGKILL));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    mproc_error e;
    CHECK_OK(mproc_future_error(f, &e));
    CHECK_EQ(e.code, MPROC_EWORKERLOST);
    CHECK_EQ(e.signal, SIGKILL);
    CHECK_EQ(e.worker, pid);
    CHECK(strstr(e.message, "signal 9") != NULL);
    /* Where it ran: no rank with the local backend, this machine's host name. */
    char host[MPROC_ERROR_HOST_MAX] = "";
    CHECK_OK(gethostname(host, sizeof host - 1));
    CHECK_EQ(e.rank, -1);
    CHECK(strcmp(e.host, host) == 0);
    for (int i = 0; i < 20; i++) {
        long long y;
        CHECK_OK(mproc_future_get(others[i], &y, sizeof y, NULL, 30));
        CHECK_EQ(y, (long long)i * i);
        mproc_future_free(others[i]);
    }
    mproc_future_free(f);
    wait_pool_size(p, 2, pid);
    check_pool_works(p, 10);
    mproc_shared_free(victim);
    mproc_pool_free(p);
}

TEST(segfault_reports_backtrace)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    mproc_pool *p = make_pool(2);
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, segfault_task, NULL, 0, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    mproc_error e;
    CHECK_OK(mproc_future_error(f, &e));
    CHECK_EQ(e.signal, SIGSEGV);
    CHECK(e.worker > 0);
    CHECK(strstr(e.message, "SIGSEGV") != NULL);
    CHECK(strstr(e.message, "backtrace:") != NULL);
    /* frames look like backtrace_symbols_fd's: "binary(+0x...)[0x...]" */
    CHECK(strstr(e.message, "[0x") != NULL);
    mproc_future_free(f);
    check_pool_works(p, 20);
    mproc_pool_free(p);
}

TEST(exit_and_abort_in_task)
{
    SKIP_IN_THREAD_MODE("exit and abort end the whole process in thread mode");
    mproc_pool *p = make_pool(2);
    mproc_future *fe, *fa;
    CHECK_OK(mproc_pool_submit(p, exit3_task, NULL, 0, &fe));
    CHECK_OK(mproc_pool_submit(p, abort_task, NULL, 0, &fa));
    mproc_error e;
    CHECK_RC(mproc_future_get(fe, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    CHECK_OK(mproc_future_error(fe, &e));
    CHECK_EQ(e.signal, 0);
    if (!SANITIZED) {
        CHECK_EQ(e.exit_status, 3);
        CHECK(strstr(e.message, "exited with status 3") != NULL);
    } else {
        CHECK(e.exit_status >= 0);
        CHECK(strstr(e.message, "exited with status") != NULL);
    }
    CHECK_RC(mproc_future_get(fa, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    CHECK_OK(mproc_future_error(fa, &e));
    CHECK_EQ(e.signal, SIGABRT);
    CHECK(strstr(e.message, "backtrace:") != NULL);
    mproc_future_free(fe);
    mproc_future_free(fa);
    check_pool_works(p, 20);
    mproc_pool_free(p);
}

TEST(crash_among_many_tasks_fails_only_itself)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    mproc_pool *p = make_pool(2);
    enum { N = 300 };
    static mproc_future *fs[N];
    for (int i = 0; i < N; i++) {
        if (i % 100 == 50)
            CHECK_OK(mproc_pool_submit(p, segfault_task, NULL, 0, &fs[i]));
        else
            CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
    }
    for (int i = 0; i < N; i++) {
        long long y;
        if (i % 100 == 50) {
            CHECK_RC(mproc_future_get(fs[i], NULL, 0, NULL, 30), MPROC_EWORKERLOST);
        } else {
            CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, 30));
            CHECK_EQ(y, (long long)i * i);
        }
        mproc_future_free(fs[i]);
    }
    mproc_pool_free(p);
}

static int failing_init(void *arg)
{
    (void)arg;
    return 7;
}

static int crashing_init(void *arg)
{
    (void)arg;
    raise(SIGSEGV);
    /* A fault kills even a worker whose signals are blocked (raise then does nothing). */
    *(volatile int *)(uintptr_t)arg = 1;
    return 0;
}

TEST(failing_initializer_breaks_pool)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .initializer = failing_init}));
    int x = 2;
    mproc_future *f = NULL;
    int r = mproc_pool_submit(p, square, &x, sizeof x, &f);
    if (r == 0) {
        CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EBROKEN);
        mproc_error e;
        CHECK_OK(mproc_future_error(f, &e));
        CHECK(strstr(e.message, "initializer") != NULL);
        CHECK(strstr(e.message, "7") != NULL);
        mproc_future_free(f);
    } else {
        CHECK_RC(r, MPROC_EBROKEN);
    }
    /* later tasks fail at once, and nothing respawns forever */
    long long y;
    CHECK_RC(mproc_pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), MPROC_EBROKEN);
    double until = harness_now() + 5 * harness_slow();
    while (mproc_pool_worker_pids(p, NULL, 0) > 0 && harness_now() < until)
        usleep(1000);
    CHECK_EQ(mproc_pool_worker_pids(p, NULL, 0), 0);
    mproc_pool_free(p);
}

/* An initializer that crashes every time: each death during start-up counts toward the
 * crash-loop limit (only an initializer that returns nonzero breaks the pool at once). */
TEST(crashing_initializer_trips_crash_loop_limit)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(
        &p, &(mproc_pool_opts){.workers = 2, .initializer = crashing_init, .max_restarts = 3}));
    int x = 2;
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, square, &x, sizeof x, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EBROKEN);
    mproc_error e;
    CHECK_OK(mproc_future_error(f, &e));
    CHECK(strstr(e.message, "4 worker deaths") != NULL);
    CHECK(strstr(e.message, "while starting") != NULL);
    mproc_future_free(f);
    long long y;
    CHECK_RC(mproc_pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), MPROC_EBROKEN);
    mproc_pool_free(p);
}

TEST(crash_loop_trips_restart_limit)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .max_restarts = 5}));
    enum { N = 40 };
    mproc_future *fs[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_pool_submit(p, segfault_task, NULL, 0, &fs[i]));
    int lost = 0, broken = 0;
    for (int i = 0; i < N; i++) {
        int r = mproc_future_get(fs[i], NULL, 0, NULL, 30);
        if (r == MPROC_EWORKERLOST) {
            lost++;
        } else {
            CHECK_RC(r, MPROC_EBROKEN);
            broken++;
        }
        mproc_future_free(fs[i]);
    }
    /* 6 deaths (> max_restarts) break it; a worker's death may race with the break */
    CHECK_BETWEEN(lost, 6, 7);
    CHECK_EQ(lost + broken, N);
    int x = 1;
    mproc_future *f;
    CHECK_RC(mproc_pool_submit(p, square, &x, sizeof x, &f), MPROC_EBROKEN);
    mproc_pool_free(p);
}

TEST(per_task_hard_timeout_kills_and_replaces)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed: hard limits become cancel requests");
    mproc_pool *p = make_pool(2);
    double secs = 30;
    mproc_future *f;
    double t0 = harness_now();
    CHECK_OK(mproc_pool_submit_opts(p, sleep_task, &secs, sizeof secs,
                                    &(mproc_submit_opts){.timeout = 0.3}, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_ETIMELIMIT);
    CHECK_BETWEEN(harness_now() - t0, 0.29, 0.3 + 0.5 * harness_slow());
    CHECK(mproc_future_done(f));
    mproc_error e;
    CHECK_OK(mproc_future_error(f, &e));
    CHECK_EQ(e.code, MPROC_ETIMELIMIT);
    CHECK(strstr(e.message, "time limit") != NULL);
    pid_t killed = e.worker;
    CHECK(killed > 0);
    mproc_future_free(f);
    CHECK(harness_wait_gone(killed, 5));
    wait_pool_size(p, 2, killed);
    /* a task within its limit is untouched */
    secs = 0.01;
    double back = 0;
    CHECK_OK(mproc_pool_submit_opts(p, sleep_task, &secs, sizeof secs,
                                    &(mproc_submit_opts){.timeout = 5}, &f));
    CHECK_OK(mproc_future_get(f, &back, sizeof back, NULL, 30));
    CHECK(back == secs);
    mproc_future_free(f);
    check_pool_works(p, 20);
    mproc_pool_free(p);
}

TEST(pool_task_timeout)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed: hard limits become cancel requests");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .task_timeout = 0.2}));
    double slow = 30, fast = 0.001;
    mproc_future *a, *b, *c;
    CHECK_OK(mproc_pool_submit(p, sleep_task, &slow, sizeof slow, &a));
    CHECK_OK(mproc_pool_submit(p, sleep_task, &slow, sizeof slow, &b));
    CHECK_OK(mproc_pool_submit(p, sleep_task, &fast, sizeof fast, &c));
    CHECK_RC(mproc_future_get(a, NULL, 0, NULL, 30), MPROC_ETIMELIMIT);
    CHECK_RC(mproc_future_get(b, NULL, 0, NULL, 30), MPROC_ETIMELIMIT);
    double back;
    CHECK_OK(mproc_future_get(c, &back, sizeof back, NULL, 30));
    mproc_future_free(a);
    mproc_future_free(b);
    mproc_future_free(c);
    check_pool_works(p, 10);
    mproc_pool_free(p);
}

TEST(thread_mode_hard_timeout_is_a_cancel_request)
{
    if (strcmp(harness_method(), "thread") != 0) harness_skip("thread mode only");
    mproc_pool *p = make_pool(1);
    pid_t *where = mproc_shared_alloc(sizeof *where);
    mproc_future *f;
    double t0 = harness_now();
    CHECK_OK(mproc_pool_submit_opts(p, report_pid_and_wait, &where, sizeof where,
                                    &(mproc_submit_opts){.timeout = 0.2}, &f));
    CHECK_OK(mproc_future_get(f, NULL, 0, NULL, 30));
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 0.5 * harness_slow());
    mproc_future_free(f);
    mproc_shared_free(where);
    mproc_pool_free(p);
}

static int pid_task(mproc_task *t)
{
    pid_t pid = getpid();
    return mproc_task_return(t, &pid, sizeof pid);
}

/* Workers killed while idle (spinning for work just after a task, or asleep): the waking rule
 * reads who spins and who sleeps, so a dead one must not leave its mark there. Every burst after
 * the kills must still complete within a short timeout (sleeping workers have no timed backstop:
 * a stuck "spinner" would stop every wake-up). */
TEST_T(sigkill_idle_workers_keeps_waking, 60)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    mproc_pool *p = make_pool(2);
    for (int round = 0; round < 12; round++) {
        pid_t pid = 0;
        CHECK_OK(mproc_pool_apply(p, pid_task, NULL, 0, &pid, sizeof pid, NULL));
        /* Right after its task the worker spins for work; every other round let it fall
         * asleep first. */
        if (round & 1) usleep(2000);
        CHECK_OK(kill(pid, SIGKILL));
        wait_pool_size(p, 2, pid);
        for (int burst = 0; burst < 20; burst++) {
            mproc_future *fs[3];
            for (int i = 0; i < 3; i++)
                CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
            for (int i = 0; i < 3; i++) {
                long long y;
                CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, 2.0 * harness_slow()));
                CHECK_EQ(y, (long long)i * i);
                mproc_future_free(fs[i]);
            }
            usleep(300); /* idle: the workers go to sleep */
        }
    }
    mproc_pool_free(p);
}

/* Gates the first worker's start-up: it publishes its pid and blocks in its initializer, so the
 * test can kill it while it is still starting; every later worker starts at once. */
typedef struct {
    int entered;
    pid_t pid;
} start_gate;

static int gated_init(void *arg)
{
    start_gate *g = arg;
    if (__atomic_fetch_add(&g->entered, 1, __ATOMIC_SEQ_CST) == 0) {
        __atomic_store_n(&g->pid, getpid(), __ATOMIC_SEQ_CST);
        for (;;)
            pause();
    }
    return 0;
}

/* A death during start-up is a death like any other (it used to break the pool: every task
 * failed MPROC_EBROKEN). */
TEST(worker_killed_while_starting_is_replaced)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    start_gate *g = mproc_shared_alloc(sizeof *g);
    CHECK(g != NULL);
    memset(g, 0, sizeof *g);
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(
        &p, &(mproc_pool_opts){.workers = 2, .initializer = gated_init, .initarg = g}));
    enum { N = 200 };
    mproc_future *fs[N];
    for (int i = 0; i < N / 2; i++)
        CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
    double until = harness_now() + 10 * harness_slow();
    while (!__atomic_load_n(&g->pid, __ATOMIC_SEQ_CST) && harness_now() < until)
        usleep(1000);
    pid_t pid = __atomic_load_n(&g->pid, __ATOMIC_SEQ_CST);
    CHECK(pid > 0);
    CHECK_OK(kill(pid, SIGKILL));
    for (int i = N / 2; i < N; i++)
        CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
    for (int i = 0; i < N; i++) {
        long long y;
        CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, 30));
        CHECK_EQ(y, (long long)i * i);
        mproc_future_free(fs[i]);
    }
    wait_pool_size(p, 2, pid);
    check_pool_works(p, 20);
    mproc_pool_free(p);
    mproc_shared_free(g);
}

/* Numeric options are checked or saturated: max_restarts = UINT_MAX used to divide by zero
 * (SIGFPE) at the first death. */
TEST(numeric_pool_options_are_checked)
{
    mproc_pool *p = NULL;
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.workers = MPROC_POOL_MAX_WORKERS + 1}),
             -EINVAL);
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.workers = INT_MAX}), -EINVAL);
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .restart_window = NAN}), -EINVAL);
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .restart_window = -1}), -EINVAL);
    CHECK(p == NULL);
    const unsigned limits[] = {UINT_MAX, MPROC_POOL_MAX_RESTARTS + 1u, MPROC_POOL_MAX_RESTARTS};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2,
                                                       .max_restarts = limits[k],
                                                       .restart_window = INFINITY}));
        if (strcmp(harness_method(), "thread") != 0) {
            /* Deaths in a row with no success in between: none of these limits is reached. */
            for (int i = 0; i < 12; i++)
                CHECK_RC(mproc_pool_apply(p, segfault_task, NULL, 0, NULL, 0, NULL),
                         MPROC_EWORKERLOST);
        }
        check_pool_works(p, 10);
        mproc_pool_free(p);
    }
}

/* The state letter of /proc/PID/stat ('T' once a SIGSTOP took effect). */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *e = strrchr(buf, ')');
    return e && e[1] == ' ' ? e[2] : '?';
}

/* A worker stopped with SIGSTOP while idle (spinning for work just after its task, between
 * taking a record and waking the next sleeper, or asleep) must not hold up the idle others: the
 * waking rule used to leave the wake-up to it, and the pool stalled until SIGCONT. */
TEST_T(sigstop_idle_worker_does_not_stall_pool, 90)
{
    SKIP_IN_THREAD_MODE("SIGSTOP stops every thread of the process");
    mproc_pool *p = make_pool(4);
    enum { N = 200 };
    static mproc_future *fs[N];
    for (int round = 0; round < 28; round++) {
        pid_t pid = 0;
        CHECK_OK(mproc_pool_apply(p, pid_task, NULL, 0, &pid, sizeof pid, NULL));
        /* The worker spins for 50 µs after its task, then sleeps: stop it at several moments. */
        if (round < 24) {
            double t = harness_now() + (round % 8) * 8e-6;
            while (harness_now() < t) {
            }
        } else {
            usleep(5000);
        }
        CHECK_OK(kill(pid, SIGSTOP));
        double until = harness_now() + 5 * harness_slow();
        while (proc_state(pid) != 'T' && harness_now() < until)
            usleep(100);
        CHECK_EQ(proc_state(pid), 'T');
        double t0 = harness_now();
        for (int i = 0; i < N; i++)
            CHECK_OK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]));
        for (int i = 0; i < N; i++) {
            long long y;
            double left = t0 + 2.0 * harness_slow() - harness_now();
            CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, left > 0 ? left : 0));
            CHECK_EQ(y, (long long)i * i);
        }
        /* A stalled queue recovers within two supervisor ticks (20 ms), not at SIGCONT. */
        CHECK_BETWEEN(harness_now() - t0, 0, 1.0 * harness_slow());
        CHECK_OK(kill(pid, SIGCONT));
        for (int i = 0; i < N; i++)
            mproc_future_free(fs[i]);
    }
    check_pool_works(p, 20);
    mproc_pool_free(p);
}
