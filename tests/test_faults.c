/* Fault injection, randomized and seeded (label `faults`, docs/testing.md "Fault injection"):
 * workers SIGKILLed at random moments of many tasks (start-up and replacements included),
 * stopped and continued, a parent killed or exiting at random points with pools, queues and
 * children alive, barrier and lock participants killed mid-wait. The deterministic cases of each
 * fault live with their module (test_pool_crash.c, test_queue_recovery.c, test_process_exit.c,
 * test_barrier.c, test_lock.c, the *_intr suites for Ctrl-C); these are the long random versions.
 * Every case prints its seed (fault_util.h: MPROC_FAULT_SEED replays it) and its figures;
 * MPROC_FAULT_SCALE multiplies the rounds. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_util.h"
#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LSAN 1
#endif
#endif
#ifdef LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define WORKERS 4

/* ---- workers killed during many tasks ---- */

typedef struct {
    _Atomic uint32_t *runs; /* in the arena: how often each task started */
    _Atomic int stop;
    _Atomic unsigned kills;
    mproc_pool *pool;
    uint64_t rng;
    int sig; /* SIGKILL, or SIGSTOP (then SIGCONT after a while) */
} fault_ctl;

static int counted_square(mproc_task *t)
{
    const uint64_t *a = mproc_task_arg(t, NULL);
    _Atomic uint32_t *runs = (_Atomic uint32_t *)(uintptr_t)a[0];
    uint64_t i = a[1];
    atomic_fetch_add(&runs[i], 1);
    if (i % 25 == 0) usleep(300); /* some tasks long enough to be killed inside */
    uint64_t y = i * i;
    return mproc_task_return(t, &y, sizeof y);
}

/* Start-up takes a while, so that kills land in it too. */
static int slow_init(void *arg)
{
    (void)arg;
    usleep((useconds_t)(getpid() % 3) * 500);
    return 0;
}

static void *killer(void *arg)
{
    fault_ctl *c = arg;
    while (!atomic_load(&c->stop)) {
        usleep((useconds_t)(500 + fault_rand(&c->rng, 4000)));
        pid_t pids[WORKERS];
        int n = mproc_pool_worker_pids(c->pool, pids, WORKERS);
        if (n <= 0) continue;
        pid_t v = pids[fault_rand(&c->rng, (uint64_t)(n < WORKERS ? n : WORKERS))];
        if (c->sig == SIGSTOP) {
            if (kill(v, SIGSTOP) == 0) atomic_fetch_add(&c->kills, 1);
            usleep((useconds_t)fault_rand(&c->rng, 20000));
            kill(v, SIGCONT);
        } else if (kill(v, SIGKILL) == 0) {
            atomic_fetch_add(&c->kills, 1);
        }
    }
    return NULL;
}

static void wait_workers(mproc_pool *p, int n)
{
    double until = harness_now() + 20 * harness_slow();
    for (;;) {
        pid_t pids[WORKERS];
        if (mproc_pool_worker_pids(p, pids, WORKERS) == n) return;
        if (harness_now() > until) CHECK(!"pool size not restored");
        usleep(2000);
    }
}

static void tasks_under_fire(int sig, unsigned ntasks, const char *what)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed or stopped alone");
    fault_ctl c = {.sig = sig, .rng = fault_seed(what)};
    c.runs = mproc_shared_alloc(ntasks * sizeof *c.runs);
    CHECK(c.runs != NULL);
    memset((void *)c.runs, 0, ntasks * sizeof *c.runs);
    CHECK_OK(
        mproc_pool_new(&c.pool, &(mproc_pool_opts){.workers = WORKERS,
                                                   .initializer = slow_init,
                                                   .max_restarts = MPROC_POOL_NO_RESTART_LIMIT}));
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, killer, &c), 0);
    enum { BATCH = 2000 };
    mproc_future **fs = calloc(BATCH, sizeof *fs);
    CHECK(fs != NULL);
    unsigned ok = 0, lost = 0;
    double t0 = harness_now();
    for (unsigned base = 0; base < ntasks; base += BATCH) {
        unsigned n = ntasks - base < BATCH ? ntasks - base : BATCH;
        for (unsigned k = 0; k < n; k++) {
            uint64_t a[2] = {(uint64_t)(uintptr_t)c.runs, base + k};
            CHECK_OK(mproc_pool_submit(c.pool, counted_square, a, sizeof a, &fs[k]));
        }
        for (unsigned k = 0; k < n; k++) {
            uint64_t i = base + k, y = 0;
            int r = mproc_future_get(fs[k], &y, sizeof y, NULL, 60 * harness_slow());
            if (r == 0) {
                CHECK_EQ(y, i * i);
                CHECK_EQ(atomic_load(&c.runs[i]), 1); /* ran once: not duplicated */
                ok++;
            } else {
                if (r != MPROC_EWORKERLOST)
                    harness_fail(__FILE__, __LINE__, "task %llu: %d (%s)", (unsigned long long)i, r,
                                 mproc_strerror(r));
                CHECK(atomic_load(&c.runs[i]) <= 1); /* never run again after its worker died */
                lost++;
            }
            mproc_future_free(fs[k]);
        }
    }
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    unsigned kills = atomic_load(&c.kills);
    printf("%s: %u tasks, %u %s, %u ok, %u lost (MPROC_EWORKERLOST), %.1f s\n", what, ntasks, kills,
           sig == SIGKILL ? "kills" : "stops", ok, lost, harness_now() - t0);
    CHECK_EQ(ok + lost, ntasks); /* every outcome accounted for */
    if (sig == SIGKILL) {
        CHECK(lost <= kills); /* a kill costs at most the one task its worker ran */
    } else {
        CHECK_EQ(lost, 0); /* a stopped worker is only late */
    }
    wait_workers(c.pool, WORKERS);
    /* The pool still works. */
    uint64_t a[2] = {(uint64_t)(uintptr_t)c.runs, 7}, y;
    atomic_store(&c.runs[7], 0);
    CHECK_OK(mproc_pool_apply(c.pool, counted_square, a, sizeof a, &y, sizeof y, NULL));
    CHECK_EQ(y, 49);
    mproc_pool_free(c.pool);
    free(fs);
    mproc_shared_free((void *)c.runs);
}

TEST_T(pool_workers_sigkilled_at_random, 240)
{
    tasks_under_fire(SIGKILL, fault_rounds(300000), "pool SIGKILL");
}

TEST_T(pool_workers_stopped_and_continued, 240)
{
    tasks_under_fire(SIGSTOP, fault_rounds(200000), "pool SIGSTOP/SIGCONT");
}

/* ---- a parent that dies or ends at a random point ---- */

typedef struct {
    _Atomic pid_t pids[WORKERS + 2]; /* its workers and its child, for the test to look at */
    _Atomic int ready;
    int how; /* 0: killed, 1: exit(), 2: mproc_shutdown() then exit */
    unsigned delay_us;
} parent_arg;

static int forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static int spin_task(mproc_task *t)
{
    while (!mproc_task_cancelled(t))
        usleep(1000);
    return 0;
}

/* Left alive at exit on purpose: static, so that LeakSanitizer sees them reachable. */
static mproc_pool *doomed_pool;
static mproc_queue *doomed_queue;
static mproc_process *doomed_child;
static mproc_future *doomed_futures[WORKERS];

static int doomed_parent(void *arg)
{
    parent_arg *a = arg;
    if (mproc_pool_new(&doomed_pool, &(mproc_pool_opts){.workers = WORKERS}) != 0) return 10;
    if (mproc_queue_new(&doomed_queue, &(mproc_queue_opts){.max_items = 4}) != 0) return 11;
    if (mproc_process_new(&doomed_child, &(mproc_process_opts){.run = forever, .daemon = true}) !=
            0 ||
        mproc_process_start(doomed_child) != 0)
        return 12;
    for (int i = 0; i < WORKERS; i++)
        if (mproc_pool_submit(doomed_pool, spin_task, NULL, 0, &doomed_futures[i]) != 0) return 13;
    for (int i = 0; i < 4; i++)
        mproc_queue_put(doomed_queue, &i, sizeof i, 1);
    pid_t pids[WORKERS];
    int n = mproc_pool_worker_pids(doomed_pool, pids, WORKERS);
    for (int i = 0; i < n && i < WORKERS; i++)
        atomic_store(&a->pids[i], pids[i]);
    atomic_store(&a->pids[WORKERS], mproc_process_pid(doomed_child));
    atomic_store(&a->ready, 1);
    usleep(a->delay_us);
#ifdef LSAN
    /* Ending the pool fails its running tasks with a message on the heap that only the task
     * records, in the arena (shared memory LeakSanitizer does not scan), point to: not a leak of
     * a program that exits, but LSan would report it. */
    __lsan_disable();
#endif
    if (a->how == 2) mproc_shutdown();
    if (a->how >= 1) exit(0);
    for (;;)
        pause(); /* killed */
}

TEST_T(parent_killed_or_ending_at_random_points_leaves_nothing, 240)
{
    SKIP_IN_THREAD_MODE("the parent would be this process");
    uint64_t rng = fault_seed("parent end");
    unsigned rounds = fault_rounds(60), left = 0;
    double max_took = 0;
    parent_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        memset(a, 0, sizeof *a);
        a->how = (int)(r % 3);
        a->delay_us = (unsigned)fault_rand(&rng, 20000);
        mproc_process *p = harness_start(doomed_parent, a);
        double until = harness_now() + 20 * harness_slow();
        /* Killed before it is ready, too: at a random instant of its set-up. */
        if (a->how == 0 && fault_rand(&rng, 2)) {
            usleep((useconds_t)fault_rand(&rng, 5000));
        } else {
            while (!atomic_load(&a->ready)) {
                CHECK(harness_now() < until);
                usleep(500);
            }
        }
        if (a->how == 0) {
            usleep((useconds_t)fault_rand(&rng, 3000));
            CHECK_OK(mproc_process_kill(p));
        }
        double t_end = harness_now();
        int code = harness_join(p);
        /* Ending is prompt: exit and mproc_shutdown stop the pool first (its workers are killed,
         * not waited for, and not replaced meanwhile). */
        double took = harness_now() - t_end - a->delay_us / 1e6;
        if (took > max_took) max_took = took;
        /* Under the 0.5 s a daemonic child is given after SIGTERM: stopping the workers is not
         * left to that grace. */
        if (took > 0.45 * harness_slow())
            harness_fail(__FILE__, __LINE__, "round %u (how %d): ending took %.2f s", r, a->how,
                         took);
        if (!(code == -SIGKILL || code == 0))
            harness_fail(__FILE__, __LINE__, "round %u (how %d): exit code %d", r, a->how, code);
        /* Nothing of it left after 1 s: its workers and child die with it. */
        for (int i = 0; i < WORKERS + 1; i++) {
            pid_t v = atomic_load(&a->pids[i]);
            if (v > 0 && !harness_wait_gone(v, 1.0 * harness_slow())) {
                printf("round %u (how %d): pid %d still alive\n", r, a->how, (int)v);
                left++;
            }
        }
    }
    printf("parent end: %u rounds (killed, exit, shutdown), %u processes left over, slowest end "
           "%.3f s\n",
           rounds, left, max_took);
    CHECK_EQ(left, 0);
    mproc_shared_free(a);
}

/* ---- barrier and lock participants killed mid-wait ---- */

typedef struct {
    mproc_barrier *b;
    mproc_lock *l;
    _Atomic int results[8];
    _Atomic int arrived;
} sync_arg;

static int barrier_party(void *arg)
{
    sync_arg *a = arg;
    int me = atomic_fetch_add(&a->arrived, 1);
    int r = mproc_barrier_wait(a->b, 30);
    atomic_store(&a->results[me], r >= 0 ? 1 : r); /* an arrival index, or an error */
    return 0;
}

static _Noreturn int lock_holder_body(void *arg);
static int lock_holder(void *arg)
{
    return lock_holder_body(arg);
}
static _Noreturn int lock_holder_body(void *arg)
{
    sync_arg *a = arg;
    if (mproc_lock_acquire(a->l, 30) < 0) _exit(1);
    atomic_store(&a->arrived, 1);
    for (;;)
        pause();
}

TEST_T(barrier_and_lock_participants_killed_mid_wait, 240)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    uint64_t rng = fault_seed("sync kills");
    unsigned rounds = fault_rounds(50), broken = 0, ownerdead = 0;
    sync_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        /* Barrier of 4, three parties in their wait (the fourth never comes): one of them
         * killed at a random moment of it. The others must see the barrier broken. */
        memset(a, 0, sizeof *a);
        CHECK_OK(mproc_barrier_new(&a->b, 4, NULL, NULL));
        mproc_process *ps[3];
        for (int i = 0; i < 3; i++)
            ps[i] = harness_start(barrier_party, a);
        double until = harness_now() + 10 * harness_slow();
        while (mproc_barrier_n_waiting(a->b) < 3) {
            CHECK(harness_now() < until);
            usleep(200);
        }
        usleep((useconds_t)fault_rand(&rng, 3000));
        unsigned victim = (unsigned)fault_rand(&rng, 3);
        double t0 = harness_now();
        CHECK_OK(mproc_process_kill(ps[victim]));
        for (int i = 0; i < 3; i++)
            harness_join(ps[i]);
        CHECK(harness_now() - t0 < 5 * harness_slow());
        for (int i = 0; i < 3; i++) {
            int v = atomic_load(&a->results[i]);
            /* 0: not recorded (the victim); else broken */
            if (!(v == 0 || v == MPROC_EBROKEN))
                harness_fail(__FILE__, __LINE__, "round %u: barrier wait returned %d (%s)", r, v,
                             mproc_strerror(v));
            broken += v == MPROC_EBROKEN;
        }
        CHECK(mproc_barrier_broken(a->b));
        mproc_barrier_free(a->b);

        /* Lock: the holder killed while another waits for it. */
        CHECK_OK(mproc_lock_new(&a->l));
        atomic_store(&a->arrived, 0);
        mproc_process *h = harness_start(lock_holder, a);
        while (!atomic_load(&a->arrived))
            usleep(200);
        usleep((useconds_t)fault_rand(&rng, 3000));
        CHECK_OK(mproc_process_kill(h));
        t0 = harness_now();
        int lr = mproc_lock_acquire(a->l, 10 * harness_slow());
        CHECK(lr == 0 || lr == MPROC_EOWNERDEAD);
        CHECK(harness_now() - t0 < 5 * harness_slow());
        ownerdead += lr == MPROC_EOWNERDEAD;
        CHECK_OK(mproc_lock_release(a->l));
        CHECK_EQ(harness_join(h), -SIGKILL);
        mproc_lock_free(a->l);
    }
    printf("sync kills: %u rounds, %u barrier waits broken, lock %u owner-dead\n", rounds, broken,
           ownerdead);
    CHECK_EQ(broken, 2 * rounds);
    CHECK_EQ(ownerdead, rounds);
    mproc_shared_free(a);
}
