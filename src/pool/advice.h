/* Advice lines: what the statistics say about how the pool is used, logged once per pool
 * (advice.c, docs/pool.md "Advice"). */
#ifndef MPROC_POOL_ADVICE_H
#define MPROC_POOL_ADVICE_H

#include "pool/pool.h"

/* Tasks that must have run before the dispatch-cost warning can fire. */
#define MPROC__ADVICE_MIN_TASKS 1000
/* A map shorter than this says nothing about parallelism. */
#define MPROC__ADVICE_MIN_MAP_NS 10000000

/* The WARNING when the tasks' mean run time is under 10 x their mean hand-over cost (after
 * map, close, mproc_pool_stats). */
void mproc__advise_overhead(mproc_pool *p);

/* A map's utilisation, from its start to its end: the INFO line when it was under 50 % with
 * more than one worker. */
typedef struct {
    uint64_t *busy; /* per seat at the start; NULL: not watched */
    uint32_t n;
    uint64_t t0, sum;
    int64_t ns0;
} mproc__map_watch;
void mproc__map_watch_begin(mproc_pool *p, mproc__map_watch *w);
void mproc__map_watch_end(mproc_pool *p, mproc__map_watch *w, size_t nchunks, int result);

#endif
