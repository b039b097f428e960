/* Pool statistics kept where they happen, at no shared cost: each worker seat has its own lines
 * in the arena (mproc__stat_line), written only by the worker in it (plain loads and stores, no
 * atomic read-modify-write, no line another CPU writes), and the parent's counts live in the pool
 * under the lock it already holds to submit and to fail tasks. mproc_pool_stats (stats.c) sums
 * them when asked. Times are in mproc__ticks (platform/ticks.h). */
#ifndef MPROC_POOL_STATS_H
#define MPROC_POOL_STATS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

/* Building with -DMPROC__POOL_STATS_OFF leaves the per-task counting out (the stats then read 0
 * for what the workers count): only to measure what the counting costs (docs/performance.md). */
#ifdef MPROC__POOL_STATS_OFF
#define MPROC__STATS_ON 0
#else
#define MPROC__STATS_ON 1
#endif

/* Log-scale histogram: 4 buckets per power of two (values within 19 % of each other share one),
 * from 0 to 2^64 ticks. */
#define MPROC__HIST_BUCKETS 256

/* One writer (the worker of the seat; the supervisor between two workers): relaxed loads and
 * stores are all it needs, and readers may see a task half counted (stats.c orders its reads). */
typedef struct {
    alignas(64) _Atomic uint64_t started;   /* tasks taken */
    _Atomic uint64_t ok, failed, cancelled; /* finished by the worker, by outcome */
    _Atomic uint64_t cur_start; /* ticks when the running task started, 0: none running */
    _Atomic uint64_t last_end;  /* ticks when the last task ended */
    _Atomic uint64_t busy;      /* ticks spent in tasks that ended */
    /* Dispatch latency, of the sample of tasks whose queue entry carries a submit stamp (one in
     * 8 single submits, every batch: local/local.h), so its mean and quantiles are the sample's */
    _Atomic uint64_t timed;   /* tasks in the sample */
    _Atomic uint64_t lat_sum; /* submit -> start, ticks */
    _Atomic uint64_t ovh_sum; /* the part of it the worker was free: start - max(submit, end) */
    _Atomic uint64_t run_sum; /* start -> end of the tasks that ended, ticks */
    _Atomic uint64_t lat_hist[MPROC__HIST_BUCKETS]; /* of the sample */
    _Atomic uint64_t run_hist[MPROC__HIST_BUCKETS];
} mproc__stat_line;

static inline unsigned mproc__hist_bucket(uint64_t v)
{
    if (v < 4) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    return 4 * (msb - 1) + (unsigned)((v >> (msb - 2)) & 3);
}

/* The smallest value of bucket b. */
static inline uint64_t mproc__hist_low(unsigned b)
{
    if (b < 4) return b;
    unsigned msb = b / 4 + 1;
    return (uint64_t)(4 + b % 4) << (msb - 2);
}

static inline void mproc__stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* The parent's counts (pool->mu). */
typedef struct {
    uint64_t submitted;
    uint64_t failed, cancelled; /* decided from outside (slots.c mproc__slot_fail) */
    uint64_t unstarted;         /* of those, records that never ran (still QUEUED) */
    uint64_t deaths;            /* workers that died (not retired or shut down) */
} mproc__pool_counts;

#endif
