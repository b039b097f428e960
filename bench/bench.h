/* Shared helpers for the C benchmarks: timing and the ROW output protocol of bench/run.py. */
#ifndef MPROC_BENCH_H
#define MPROC_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mproc.h"

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* impl: "mproc", "python", "threads" or "floor"; better: "lower" or "higher". */
static inline void bench_row(const char *workload, const char *impl, double value, const char *unit,
                             const char *better)
{
    printf("ROW\t%s\t%s\t%.6g\t%s\t%s\n", workload, impl, value, unit, better);
    fflush(stdout);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

/* A benchmark has nothing sensible to do on failure but stop. */
static inline mproc_process *bench_start(mproc_run_fn fn, void *arg)
{
    mproc_process *p;
    if (mproc_process_new(&p, &(mproc_process_opts){.run = fn, .arg = arg}) < 0) abort();
    if (mproc_process_start(p) < 0) abort();
    return p;
}

/* Join, insist on exit code 0, free. */
static inline void bench_join(mproc_process *p)
{
    int code = -1;
    if (mproc_process_join(p, MPROC_FOREVER) < 0 || mproc_process_exitcode(p, &code) < 0 || code)
        abort();
    mproc_process_free(p);
}

#endif
