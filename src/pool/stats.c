/* mproc_pool_stats, _worker_stats, _stats_reset: the sums of the workers' lines and the parent's
 * counts (stats.h), less what the last reset saw. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "platform/ticks.h"
#include "pool/advice.h"
#include "pool/backend.h"

/* One seat's line as read at one moment. */
typedef struct {
    uint64_t started, ok, failed, cancelled, busy, timed, lat_sum, ovh_sum, run_sum;
    uint64_t lat_hist[MPROC__HIST_BUCKETS], run_hist[MPROC__HIST_BUCKETS];
    bool running;
} seat_snap;

struct mproc__stats_base {
    mproc__pool_counts counts;
    uint32_t nseats;
    seat_snap seats[];
};

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_acquire);
}

/* Outcomes before `started` and `busy` before `cur_start`, the reverse of the order the worker
 * writes them in: a task may be missed for a moment, never counted twice or finished before it
 * started. A running task counts as busy so far. */
static void snap(mproc__stat_line *l, uint64_t now, seat_snap *o)
{
    o->ok = ld(&l->ok);
    o->failed = ld(&l->failed);
    o->cancelled = ld(&l->cancelled);
    o->busy = ld(&l->busy);
    uint64_t cur = ld(&l->cur_start);
    o->running = cur != 0;
    if (cur && now > cur) o->busy += now - cur;
    o->started = ld(&l->started);
    o->timed = ld(&l->timed);
    o->lat_sum = ld(&l->lat_sum);
    o->ovh_sum = ld(&l->ovh_sum);
    o->run_sum = ld(&l->run_sum);
    for (unsigned b = 0; b < MPROC__HIST_BUCKETS; b++) {
        o->lat_hist[b] = ld(&l->lat_hist[b]);
        o->run_hist[b] = ld(&l->run_hist[b]);
    }
}

/* x - base, never below 0 (a busy-so-far at reset may exceed what a killed task added). */
static uint64_t since(uint64_t x, uint64_t base)
{
    return x > base ? x - base : 0;
}

static void snap_since(seat_snap *o, const seat_snap *b)
{
    o->started = since(o->started, b->started);
    o->ok = since(o->ok, b->ok);
    o->failed = since(o->failed, b->failed);
    o->cancelled = since(o->cancelled, b->cancelled);
    o->busy = since(o->busy, b->busy);
    o->timed = since(o->timed, b->timed);
    o->lat_sum = since(o->lat_sum, b->lat_sum);
    o->ovh_sum = since(o->ovh_sum, b->ovh_sum);
    o->run_sum = since(o->run_sum, b->run_sum);
    for (unsigned k = 0; k < MPROC__HIST_BUCKETS; k++) {
        o->lat_hist[k] = since(o->lat_hist[k], b->lat_hist[k]);
        o->run_hist[k] = since(o->run_hist[k], b->run_hist[k]);
    }
}

/* The q-quantile of a histogram of n values, in ticks: the middle of its bucket. */
static double quantile(const uint64_t *h, uint64_t n, double q)
{
    if (!n) return 0;
    uint64_t want = (uint64_t)(q * (double)n), seen = 0;
    if (want >= n) want = n - 1;
    for (unsigned b = 0; b < MPROC__HIST_BUCKETS; b++) {
        seen += h[b];
        if (seen > want) {
            double lo = (double)mproc__hist_low(b);
            double hi = b + 1 < MPROC__HIST_BUCKETS ? (double)mproc__hist_low(b + 1) : lo * 1.19;
            return b < 4 ? lo : (lo + hi) / 2;
        }
    }
    return 0;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0;
}

int mproc_pool_stats(mproc_pool *p, mproc_pool_stat *out)
{
    if (!mproc__pool_valid(p) || !out) return -EINVAL;
    seat_snap *sum = calloc(2, sizeof *sum), *one = sum + 1;
    if (!sum) return -ENOMEM;
    double tick = mproc__tick_ns();
    pthread_mutex_lock(&p->mu);
    mproc__pool_counts c = p->counts;
    const struct mproc__stats_base *base = p->stats_base;
    int64_t wall_ns = mproc__now_ns() - p->stats_since_ns;
    uint64_t now = mproc__ticks();
    uint64_t started_all = 0, finished_all = 0;
    mproc__stat_line *l;
    pid_t pid;
    for (uint32_t i = 0; p->backend->seat_stats(p, i, &l, &pid); i++) {
        snap(l, now, one);
        started_all += one->started;
        finished_all += one->ok + one->failed + one->cancelled;
        if (base && i < base->nseats) snap_since(one, &base->seats[i]);
        sum->started += one->started;
        sum->ok += one->ok;
        sum->failed += one->failed;
        sum->cancelled += one->cancelled;
        sum->busy += one->busy;
        sum->timed += one->timed;
        sum->lat_sum += one->lat_sum;
        sum->ovh_sum += one->ovh_sum;
        sum->run_sum += one->run_sum;
        for (unsigned b = 0; b < MPROC__HIST_BUCKETS; b++) {
            sum->lat_hist[b] += one->lat_hist[b];
            sum->run_hist[b] += one->run_hist[b];
        }
    }
    mproc__pool_counts b0 = base ? base->counts : (mproc__pool_counts){0};
    int workers = p->nworkers;
    pthread_mutex_unlock(&p->mu);

    memset(out, 0, sizeof *out);
    /* Gauges: every record submitted is queued, running, or was completed by a worker or from
     * outside (unstarted: while queued). A worker killed between taking a record and counting
     * it could make these one short: they never go below 0. */
    uint64_t outside_running = c.failed + c.cancelled - c.unstarted;
    uint64_t gone = started_all + c.unstarted;
    out->queued = c.submitted > gone ? (size_t)(c.submitted - gone) : 0;
    uint64_t ended = finished_all + outside_running;
    out->running = started_all > ended ? (size_t)(started_all - ended) : 0;
    out->submitted = (size_t)since(c.submitted, b0.submitted);
    out->done = (size_t)sum->ok;
    out->failed = (size_t)(sum->failed + since(c.failed, b0.failed));
    out->cancelled = (size_t)(sum->cancelled + since(c.cancelled, b0.cancelled));
    out->worker_deaths = (size_t)since(c.deaths, b0.deaths);
    out->workers = workers;
    out->wall_seconds = (double)wall_ns / 1e9;
    out->busy_seconds = (double)sum->busy * tick / 1e9;
    if (workers > 0 && out->wall_seconds > 0) {
        out->utilisation = out->busy_seconds / (workers * out->wall_seconds);
        if (out->utilisation > 1) out->utilisation = 1;
    }
    double s = tick / 1e9;
    /* Of the sample of tasks whose submit was stamped (stats.h). */
    out->dispatch_mean = ratio(sum->lat_sum, sum->timed) * s;
    out->dispatch_p50 = quantile(sum->lat_hist, sum->timed, 0.50) * s;
    out->dispatch_p99 = quantile(sum->lat_hist, sum->timed, 0.99) * s;
    out->overhead_mean = ratio(sum->ovh_sum, sum->timed) * s;
    uint64_t nrun = 0;
    for (unsigned b = 0; b < MPROC__HIST_BUCKETS; b++)
        nrun += sum->run_hist[b];
    out->run_mean = ratio(sum->run_sum, nrun) * s;
    out->run_p50 = quantile(sum->run_hist, nrun, 0.50) * s;
    out->run_p99 = quantile(sum->run_hist, nrun, 0.99) * s;
    free(sum);
    mproc__advise_overhead(p);
    return 0;
}

int mproc_pool_worker_stats(mproc_pool *p, mproc_pool_worker_stat *out, int cap)
{
    if (!mproc__pool_valid(p) || cap < 0 || (cap > 0 && !out)) return -EINVAL;
    seat_snap *one = malloc(sizeof *one);
    if (!one) return -ENOMEM;
    double tick = mproc__tick_ns();
    pthread_mutex_lock(&p->mu);
    const struct mproc__stats_base *base = p->stats_base;
    double wall = (double)(mproc__now_ns() - p->stats_since_ns) / 1e9;
    uint64_t now = mproc__ticks();
    mproc__stat_line *l;
    pid_t pid;
    uint32_t i = 0;
    for (; p->backend->seat_stats(p, i, &l, &pid); i++) {
        if ((int)i >= cap) continue;
        snap(l, now, one);
        if (base && i < base->nseats) snap_since(one, &base->seats[i]);
        mproc_pool_worker_stat *w = &out[i];
        w->pid = pid;
        w->tasks = (size_t)one->started;
        w->done = (size_t)one->ok;
        uint64_t settled = one->ok + (one->running ? 1 : 0);
        w->failed = (size_t)since(one->started, settled);
        w->busy_seconds = (double)one->busy * tick / 1e9;
        w->utilisation = wall > 0 ? w->busy_seconds / wall : 0;
        if (w->utilisation > 1) w->utilisation = 1;
    }
    pthread_mutex_unlock(&p->mu);
    free(one);
    return (int)i;
}

int mproc_pool_stats_reset(mproc_pool *p)
{
    if (!mproc__pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    mproc__stat_line *l;
    pid_t pid;
    uint32_t n = 0;
    while (p->backend->seat_stats(p, n, &l, &pid))
        n++;
    struct mproc__stats_base *b = p->stats_base;
    if (!b || b->nseats != n) {
        b = malloc(sizeof *b + n * sizeof b->seats[0]);
        if (!b) {
            pthread_mutex_unlock(&p->mu);
            return -ENOMEM;
        }
        free(p->stats_base);
        p->stats_base = b;
        b->nseats = n;
    }
    b->counts = p->counts;
    uint64_t now = mproc__ticks();
    for (uint32_t i = 0; i < n; i++) {
        p->backend->seat_stats(p, i, &l, &pid);
        snap(l, now, &b->seats[i]);
    }
    p->stats_since_ns = mproc__now_ns();
    pthread_mutex_unlock(&p->mu);
    return 0;
}
