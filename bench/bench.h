/* Shared helpers for the C benchmarks: timing and the ROW output protocol of bench/run.py. */
#ifndef MPROC_BENCH_H
#define MPROC_BENCH_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/* ---- the floor of hand-overs between processes: a raw futex round trip ---- */

typedef struct {
    _Atomic uint32_t word;
    _Atomic int stop;
} bench_futex_pair;

static inline void bench_futex_wait_for(_Atomic uint32_t *w, uint32_t v)
{
    uint32_t c;
    while ((c = atomic_load(w)) != v)
        syscall(SYS_futex, w, FUTEX_WAIT, c, NULL, NULL, 0);
}

static inline int bench_futex_ponger(void *arg)
{
    bench_futex_pair *s = arg;
    for (uint32_t i = 1;; i += 2) {
        bench_futex_wait_for(&s->word, i);
        if (atomic_load(&s->stop)) return 0;
        atomic_store(&s->word, i + 1);
        syscall(SYS_futex, &s->word, FUTEX_WAKE, 1, NULL, NULL, 0);
    }
}

/* Median seconds of a futex round trip between 2 processes, each sleeping until woken. With
 * idle > 0 the pinger pauses that long before each ping, so both CPUs have gone idle and the
 * peer is asleep, as in the rows that compare with it. */
static inline double bench_futex_round_trip(double idle, int count)
{
    bench_futex_pair *s = mproc_shared_alloc(sizeof *s);
    mproc_process *p = bench_start(bench_futex_ponger, s);
    double *t = malloc(sizeof *t * (size_t)count);
    uint32_t v = 0;
    for (int i = -1000; i < count; i++) {
        if (idle > 0) nanosleep(&(struct timespec){.tv_nsec = (long)(idle * 1e9)}, NULL);
        double t0 = bench_now();
        atomic_store(&s->word, ++v);
        syscall(SYS_futex, &s->word, FUTEX_WAKE, 1, NULL, NULL, 0);
        bench_futex_wait_for(&s->word, ++v);
        if (i >= 0) t[i] = bench_now() - t0;
    }
    atomic_store(&s->stop, 1);
    atomic_store(&s->word, ++v);
    syscall(SYS_futex, &s->word, FUTEX_WAKE, 1, NULL, NULL, 0);
    bench_join(p);
    mproc_shared_free(s);
    double m = bench_median(t, count);
    free(t);
    return m;
}

#endif
