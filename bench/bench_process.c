/* Process start+join for each start method, in a small parent and in a parent with 1 GiB of
 * touched memory, against the raw fork+_exit+waitpid floor measured in the same run. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"

#define ROUNDS 11
#define PER_ROUND 30

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static double mproc_round(const char *method)
{
    double t0 = bench_now();
    for (int i = 0; i < PER_ROUND; i++) {
        mproc_process *p;
        if (mproc_process_new(&p, &(mproc_process_opts){.run = nothing, .start_method = method}) <
            0)
            abort();
        if (mproc_process_start(p) < 0 || mproc_process_join(p, MPROC_FOREVER) < 0) abort();
        mproc_process_free(p);
    }
    return (bench_now() - t0) / PER_ROUND;
}

static double raw_round(void)
{
    double t0 = bench_now();
    for (int i = 0; i < PER_ROUND; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) abort();
    }
    return (bench_now() - t0) / PER_ROUND;
}

static int trivial(mproc_task *t)
{
    size_t len;
    const int *x = mproc_task_arg(t, &len);
    int y = *x + 1;
    return mproc_task_return(t, &y, sizeof y);
}

/* A 2-worker pool started, one result back, pool closed and joined. */
static double pool_once(const char *method)
{
    double t0 = bench_now();
    mproc_pool *p;
    int x = 1, y = 0;
    if (mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .start_method = method}) < 0) abort();
    if (mproc_pool_apply(p, trivial, &x, sizeof x, &y, sizeof y, NULL) < 0 || y != 2) abort();
    double t = bench_now() - t0;
    mproc_pool_free(p);
    return t;
}

/* Alternate the contenders round by round so that noise on this shared machine hits all alike. */
static void measure(const char *suffix)
{
    const char *methods[] = {"fork", "forkserver", "thread"};
    double m[3][ROUNDS], r[ROUNDS];
    for (int k = 0; k < 3; k++)
        mproc_round(methods[k]); /* warm up */
    for (int i = 0; i < ROUNDS; i++) {
        for (int k = 0; k < 3; k++)
            m[k][i] = mproc_round(methods[k]);
        r[i] = raw_round();
    }
    char name[128];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "process start+join, %s%s", methods[k], suffix);
        bench_row(name, "mproc", bench_median(m[k], ROUNDS) * 1e6, "us", "lower");
        if (k == 0) bench_row(name, "floor", bench_median(r, ROUNDS) * 1e6, "us", "lower");
    }
    for (int i = 0; i < ROUNDS; i++)
        for (int k = 0; k < 3; k++)
            m[k][i] = pool_once(methods[k]);
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "pool(2) start+first result, %s%s", methods[k], suffix);
        bench_row(name, "mproc", bench_median(m[k], ROUNDS) * 1e3, "ms", "lower");
    }
}

int main(void)
{
    unsetenv("MPROC_START");
    /* The forkserver helper is forked here, while this parent is small. */
    if (mproc_init(&(mproc_config){.start_method = "forkserver"}) < 0) abort();
    measure("");
    size_t big = (size_t)1 << 30;
    char *ballast = malloc(big);
    if (!ballast) abort();
    memset(ballast, 1, big);
    measure(", 1 GiB parent");
    free(ballast);
    return 0;
}
