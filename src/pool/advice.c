/* Advice lines (docs/pool.md, "Advice"): once per pool, a WARNING when dispatch costs more than
 * the work, and an INFO when a map did not run in parallel. From the statistics (stats.h). */
#include <stdio.h>
#include <stdlib.h>

#include "mproc/log.h"
#include "platform/ticks.h"
#include "pool/advice.h"
#include "pool/backend.h"

/* The sums the advice needs (no histograms), mu held. */
static void sums_locked(mproc_pool *p, uint64_t *timed, uint64_t *ovh, uint64_t *ran, uint64_t *run)
{
    *timed = *ovh = *ran = *run = 0;
    mproc__stat_line *l;
    pid_t pid;
    for (uint32_t i = 0; p->backend->seat_stats(p, i, &l, &pid); i++) {
        *timed += atomic_load_explicit(&l->timed, memory_order_acquire);
        *ovh += atomic_load_explicit(&l->ovh_sum, memory_order_relaxed);
        *ran += atomic_load_explicit(&l->ok, memory_order_relaxed) +
                atomic_load_explicit(&l->failed, memory_order_relaxed) +
                atomic_load_explicit(&l->cancelled, memory_order_relaxed);
        *run += atomic_load_explicit(&l->run_sum, memory_order_relaxed);
    }
}

void mproc__advise_overhead(mproc_pool *p)
{
    pthread_mutex_lock(&p->mu);
    uint64_t timed = 0, ovh = 0, ran = 0, run = 0;
    bool due = !p->advised_overhead;
    if (due) sums_locked(p, &timed, &ovh, &ran, &run);
    /* mean run < 10 x mean hand-over, over at least MPROC__ADVICE_MIN_TASKS tasks */
    due = due && ran >= MPROC__ADVICE_MIN_TASKS && timed &&
          (double)run / (double)ran < 10.0 * (double)ovh / (double)timed;
    if (due) p->advised_overhead = true;
    pthread_mutex_unlock(&p->mu);
    if (!due) return;
    double tick = mproc__tick_ns();
    double run_us = (double)run / (double)ran * tick / 1e3;
    double ovh_us = (double)ovh / (double)timed * tick / 1e3;
    double k = run_us > 0 ? 10.0 * ovh_us / run_us : 100.0;
    unsigned long chunk = k < 2 ? 2 : k > 1e6 ? 1000000 : (unsigned long)(k + 1);
    MPROC_WARNING("pool %s: %llu tasks ran %.2f us each on average, less than 10 x what handing "
                  "one to a worker costs (%.2f us): dispatch costs more than the work; put about "
                  "%lu times as much work in each task (mproc_map_opts.chunksize, "
                  "mproc_imap_opts.chunksize, or batch items per submit)",
                  p->name, (unsigned long long)ran, run_us, ovh_us, chunk);
}

/* Busy ticks per seat (a running task so far) into busy[0..cap), their sum returned, mu held. */
static uint64_t busy_locked(mproc_pool *p, uint64_t *busy, uint32_t cap, uint64_t now)
{
    uint64_t sum = 0;
    mproc__stat_line *l;
    pid_t pid;
    for (uint32_t i = 0; p->backend->seat_stats(p, i, &l, &pid); i++) {
        uint64_t b = atomic_load_explicit(&l->busy, memory_order_acquire);
        uint64_t cur = atomic_load_explicit(&l->cur_start, memory_order_acquire);
        if (cur && now > cur) b += now - cur;
        if (i < cap) busy[i] = b;
        sum += b;
    }
    return sum;
}

void mproc__map_watch_begin(mproc_pool *p, mproc__map_watch *w)
{
    w->busy = NULL;
    w->n = 0;
    if (p->nworkers < 2 || __atomic_load_n(&p->advised_parallel, __ATOMIC_RELAXED)) return;
    w->n = (uint32_t)p->nworkers;
    w->busy = malloc(w->n * sizeof *w->busy);
    if (!w->busy) return;
    pthread_mutex_lock(&p->mu);
    w->t0 = mproc__ticks();
    w->ns0 = mproc__now_ns();
    w->sum = busy_locked(p, w->busy, w->n, w->t0);
    pthread_mutex_unlock(&p->mu);
}

void mproc__map_watch_end(mproc_pool *p, mproc__map_watch *w, size_t nchunks, int result)
{
    if (!w->busy) return;
    uint64_t *now_busy = malloc(w->n * sizeof *now_busy);
    if (!now_busy) goto out;
    pthread_mutex_lock(&p->mu);
    uint64_t t1 = mproc__ticks();
    int64_t wall_ns = mproc__now_ns() - w->ns0;
    uint64_t sum = busy_locked(p, now_busy, w->n, t1);
    bool due = !p->advised_parallel && result == 0 && wall_ns >= MPROC__ADVICE_MIN_MAP_NS;
    double util = 0;
    uint64_t top = 0, dsum = sum > w->sum ? sum - w->sum : 0;
    if (due) {
        util = (double)dsum / ((double)(t1 - w->t0) * (double)w->n);
        for (uint32_t i = 0; i < w->n; i++) {
            uint64_t d = now_busy[i] > w->busy[i] ? now_busy[i] - w->busy[i] : 0;
            if (d > top) top = d;
        }
        due = util < 0.5;
    }
    if (due) __atomic_store_n(&p->advised_parallel, true, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->mu);
    if (due) {
        const char *why;
        char buf[160];
        if (nchunks < w->n) {
            snprintf(buf, sizeof buf, "too few chunks: %zu for %u workers (a smaller chunksize)",
                     nchunks, w->n);
            why = buf;
        } else if (dsum && (double)top > 0.75 * (double)dsum) {
            why = "one worker did most of the work: one long task, or chunks of very unequal cost";
        } else {
            why = "the workers waited: for a lock or resource they share, or for the caller";
        }
        MPROC_INFO("pool %s: a map of %zu chunks on %u workers kept them %.0f %% busy over %.3f s: "
                   "the work did not run in parallel; %s",
                   p->name, nchunks, w->n, 100 * util, (double)wall_ns / 1e9, why);
    }
out:
    free(now_busy);
    free(w->busy);
    w->busy = NULL;
}
