/* Shared helpers for the C benchmarks: timing and the ROW output protocol of bench/run.py. */
#ifndef MPROC_BENCH_H
#define MPROC_BENCH_H

#include <stdio.h>
#include <time.h>

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

#endif
