/* Pool placement: every worker's affinity is what was asked (a CPU list, one worker per CPU, one
 * per physical core), also for the replacement of a worker that died or retired, and within the
 * affinity mask the process was given (a case narrows its own; ctest also runs the binary under
 * `taskset -c 0`). */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

enum { MAXW = 64 };

/* Each round's tasks hold their workers until all `n` have arrived, so each worker reports once. */
typedef struct {
    int arrived, n;
    cpu_set_t sets[MAXW];
} round_t;

static int report_task(mproc_task *t)
{
    round_t *r = *(round_t *const *)mproc_task_arg(t, NULL);
    int k = __atomic_fetch_add(&r->arrived, 1, __ATOMIC_SEQ_CST);
    if (k < MAXW) sched_getaffinity(0, sizeof r->sets[k], &r->sets[k]);
    double until = harness_now() + 20 * harness_slow();
    while (__atomic_load_n(&r->arrived, __ATOMIC_SEQ_CST) < r->n && harness_now() < until)
        usleep(200);
    return 0;
}

/* The affinity of every worker of p (n of them), in no order. */
static void worker_sets(mproc_pool *p, int n, cpu_set_t *out)
{
    CHECK(n <= MAXW);
    round_t *r = mproc_shared_alloc(sizeof *r);
    CHECK(r != NULL);
    memset(r, 0, sizeof *r);
    r->n = n;
    mproc_future *fs[MAXW];
    for (int i = 0; i < n; i++)
        CHECK_OK(mproc_pool_submit(p, report_task, &r, sizeof r, &fs[i]));
    for (int i = 0; i < n; i++) {
        CHECK_OK(mproc_future_get(fs[i], NULL, 0, NULL, 30));
        mproc_future_free(fs[i]);
    }
    CHECK_EQ(r->arrived, n);
    memcpy(out, r->sets, (size_t)n * sizeof *out);
    mproc_shared_free(r);
}

static cpu_set_t allowed_cpus(void)
{
    cpu_set_t s;
    CHECK_OK(sched_getaffinity(0, sizeof s, &s));
    return s;
}

static int first_cpu(const cpu_set_t *s, int after)
{
    for (int c = after + 1; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, s)) return c;
    return -1;
}

static void wait_workers(mproc_pool *p, int n, pid_t gone)
{
    double until = harness_now() + 20 * harness_slow();
    for (;;) {
        pid_t pids[MAXW];
        int k = mproc_pool_worker_pids(p, pids, MAXW);
        bool has_gone = false;
        for (int i = 0; i < k && i < MAXW; i++)
            has_gone |= pids[i] == gone;
        if (k == n && !has_gone) return;
        CHECK(harness_now() < until);
        usleep(1000);
    }
}

/* Kill one worker (process start methods) and wait for its replacement. */
static void replace_one(mproc_pool *p, int n)
{
    if (strcmp(harness_method(), "thread") == 0) return;
    pid_t pids[MAXW];
    CHECK(mproc_pool_worker_pids(p, pids, MAXW) == n);
    CHECK_OK(kill(pids[0], SIGKILL));
    wait_workers(p, n, pids[0]);
}

/* Each set one CPU, all different, together `want`. */
static void check_one_cpu_each(const cpu_set_t *sets, int n, const cpu_set_t *want)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(CPU_COUNT(&sets[i]), 1);
        cpu_set_t both;
        CPU_AND(&both, &all, &sets[i]);
        CHECK_EQ(CPU_COUNT(&both), 0);
        CPU_OR(&all, &all, &sets[i]);
    }
    CHECK(CPU_EQUAL(&all, want));
}

static bool new_fails(const char *cpus, mproc_placement pl)
{
    mproc_pool *p = NULL;
    int r = mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .cpus = cpus, .placement = pl});
    if (r == 0) mproc_pool_free(p);
    return r == -EINVAL && p == NULL;
}

TEST(bad_lists_and_placements_are_einval)
{
    const char *bad[] = {"", "a", "1-", "-1", "3-1", "0,,1", "0 1", ",0", "0,", "99999", "0-5000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(new_fails(bad[i], MPROC_PLACE_NONE));
    CHECK(new_fails(NULL, (mproc_placement)3));
    CHECK(new_fails(NULL, (mproc_placement)-1));
    /* A CPU this process may not use. */
    cpu_set_t a = allowed_cpus();
    int c0 = first_cpu(&a, -1);
    if (CPU_COUNT(&a) < CPU_SETSIZE) {
        int out = 0;
        while (CPU_ISSET(out, &a))
            out++;
        char list[32];
        snprintf(list, sizeof list, "%d", out);
        CHECK(new_fails(list, MPROC_PLACE_NONE));
        snprintf(list, sizeof list, "%d,%d", c0, out);
        CHECK(new_fails(list, MPROC_PLACE_CPUS));
    }
}

TEST(cpu_list_confines_every_worker)
{
    cpu_set_t a = allowed_cpus();
    int c0 = first_cpu(&a, -1);
    char list[32];
    snprintf(list, sizeof list, "%d", c0);
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .cpus = list}));
    cpu_set_t want, got[2];
    CPU_ZERO(&want);
    CPU_SET(c0, &want);
    worker_sets(p, 2, got);
    CHECK(CPU_EQUAL(&got[0], &want) && CPU_EQUAL(&got[1], &want));
    replace_one(p, 2);
    worker_sets(p, 2, got);
    CHECK(CPU_EQUAL(&got[0], &want) && CPU_EQUAL(&got[1], &want));
    mproc_pool_free(p);
    /* workers = 0 with a list: one per CPU in it. */
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.cpus = list}));
    CHECK_EQ(mproc_pool_size(p), 1);
    mproc_pool_free(p);
}

TEST(place_cpus_one_worker_per_cpu)
{
    cpu_set_t a = allowed_cpus();
    int n = CPU_COUNT(&a);
    if (n > MAXW) harness_skip("more CPUs than the test follows");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.placement = MPROC_PLACE_CPUS}));
    CHECK_EQ(mproc_pool_size(p), n);
    cpu_set_t got[MAXW];
    worker_sets(p, n, got);
    check_one_cpu_each(got, n, &a);
    /* The replacement runs where the worker it replaced ran. */
    replace_one(p, n);
    worker_sets(p, n, got);
    check_one_cpu_each(got, n, &a);
    mproc_pool_free(p);
}

/* Workers retired by max_tasks_per_child (every start method, threads too) keep their seat. */
TEST(place_cpus_retired_workers_keep_their_cpu)
{
    cpu_set_t a = allowed_cpus();
    int n = CPU_COUNT(&a);
    if (n > MAXW) harness_skip("more CPUs than the test follows");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(
        &p, &(mproc_pool_opts){.placement = MPROC_PLACE_CPUS, .max_tasks_per_child = 1}));
    cpu_set_t got[MAXW];
    for (int round = 0; round < 3; round++) {
        worker_sets(p, n, got);
        check_one_cpu_each(got, n, &a);
    }
    mproc_pool_free(p);
}

TEST(place_cores_one_worker_per_core)
{
    cpu_set_t a = allowed_cpus();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.placement = MPROC_PLACE_CORES}));
    int n = mproc_pool_size(p);
    CHECK(n >= 1 && n <= CPU_COUNT(&a) && n <= MAXW);
    /* Unrestricted, that is the machine's count of cores. */
    if (CPU_COUNT(&a) == (int)sysconf(_SC_NPROCESSORS_ONLN)) CHECK_EQ(n, mproc_physical_cores());
    cpu_set_t got[MAXW];
    for (int round = 0; round < 2; round++) {
        worker_sets(p, n, got);
        /* Disjoint cores that together hold every CPU we may use. */
        cpu_set_t all;
        CPU_ZERO(&all);
        for (int i = 0; i < n; i++) {
            CHECK(CPU_COUNT(&got[i]) >= 1);
            cpu_set_t both;
            CPU_AND(&both, &all, &got[i]);
            CHECK_EQ(CPU_COUNT(&both), 0);
            CPU_OR(&all, &all, &got[i]);
        }
        CHECK(CPU_EQUAL(&all, &a));
        replace_one(p, n);
    }
    mproc_pool_free(p);
}

/* A process confined to one CPU (as under taskset): every placement stays on it, and the
 * workers of an unplaced pool too, whatever the start method (a forkserver helper started
 * earlier has a wider mask). */
TEST(restricted_mask_is_honoured)
{
    cpu_set_t a = allowed_cpus();
    int c = first_cpu(&a, first_cpu(&a, -1)); /* the second allowed CPU, if any */
    if (c < 0) c = first_cpu(&a, -1);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    CHECK_OK(sched_setaffinity(0, sizeof one, &one));
    const mproc_placement pls[] = {MPROC_PLACE_NONE, MPROC_PLACE_CPUS, MPROC_PLACE_CORES};
    for (size_t i = 0; i < 3; i++) {
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.placement = pls[i]}));
        CHECK_EQ(mproc_pool_size(p), 1);
        cpu_set_t got;
        worker_sets(p, 1, &got);
        CHECK(CPU_EQUAL(&got, &one));
        replace_one(p, 1);
        worker_sets(p, 1, &got);
        CHECK(CPU_EQUAL(&got, &one));
        mproc_pool_free(p);
    }
    if (CPU_COUNT(&a) > 1) {
        char list[32];
        snprintf(list, sizeof list, "%d",
                 first_cpu(&a, -1) == c ? first_cpu(&a, c) : first_cpu(&a, -1));
        CHECK(new_fails(list, MPROC_PLACE_NONE));
    }
}

/* A process with opts.cpus: its body runs on those CPUs only. */
static int child_reports_affinity(void *arg)
{
    cpu_set_t *out = arg, s;
    if (sched_getaffinity(0, sizeof s, &s) != 0) return 2;
    *out = s;
    return 0;
}

TEST(process_cpus_pins_the_child)
{
    cpu_set_t a = allowed_cpus();
    int c = first_cpu(&a, -1);
    char list[32];
    snprintf(list, sizeof list, "%d", c);
    cpu_set_t *got = mproc_shared_alloc(sizeof *got);
    CHECK(got != NULL);
    mproc_process *p = harness_start_opts(
        &(mproc_process_opts){.run = child_reports_affinity, .arg = got, .cpus = list});
    CHECK_EQ(harness_join(p), 0);
    cpu_set_t want;
    CPU_ZERO(&want);
    CPU_SET(c, &want);
    CHECK(CPU_EQUAL(got, &want));
    mproc_process *q;
    CHECK_RC(
        mproc_process_new(
            &q, &(mproc_process_opts){.run = child_reports_affinity, .arg = got, .cpus = "0-"}),
        -EINVAL);
    CHECK(q == NULL);
    mproc_shared_free(got);
}
