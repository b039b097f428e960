/* Process start+join: mproc vs the raw fork+_exit+waitpid floor, same run, alternating batches. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"

#define ROUNDS 15
#define PER_ROUND 40

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

static double mproc_round(void)
{
    double t0 = bench_now();
    for (int i = 0; i < PER_ROUND; i++) {
        mproc_process *p;
        if (mproc_process_new(&p, &(mproc_process_opts){.run = nothing}) < 0) abort();
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

int main(void)
{
    double m[ROUNDS], r[ROUNDS];
    mproc_init(NULL);
    mproc_round(); /* warm up page tables and the library */
    for (int i = 0; i < ROUNDS; i++) {
        m[i] = mproc_round();
        r[i] = raw_round();
    }
    bench_row("process start+join", "mproc", median(m, ROUNDS) * 1e6, "us", "lower");
    bench_row("process start+join", "floor", median(r, ROUNDS) * 1e6, "us", "lower");
    return 0;
}
