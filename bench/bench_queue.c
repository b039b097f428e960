/* Queue: throughput with 64-byte, page-sized (3,968 B and 4 KiB) and 1 MiB messages (1 producer, 1
 * consumer process; and 2 + 2), and the round trip of a message bounced through two queues between
 * 2 processes. Floors: memcpy for 1 MiB messages, a raw futex round trip between 2 processes for
 * the ping-pong. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"
#include "platform/platform.h"

#define ROUNDS 3
#define SMALL 64
#define SMALL_MSGS 2000000
#define LARGE ((size_t)1 << 20)
#define LARGE_MSGS 2000
#define PAGE_MSGS 200000
#define PINGS 20000

typedef struct {
    mproc_queue *q, *back;
    long count;
    _Atomic int ready;
    _Atomic int go;
    _Atomic double end; /* latest end time of a consumer */
} shared;

static void note_end(shared *s, double t)
{
    double e = atomic_load(&s->end);
    while (t > e && !atomic_compare_exchange_weak(&s->end, &e, t)) {
    }
}

/* ---- throughput ---- */

static int consumer(void *arg)
{
    shared *s = arg;
    size_t cap = LARGE;
    char *buf = malloc(cap);
    atomic_fetch_add(&s->ready, 1);
    for (;;) {
        size_t n;
        int r = mproc_queue_get(s->q, buf, cap, &n, MPROC_FOREVER);
        if (r == MPROC_ECLOSED) break;
        if (r) return 1;
    }
    note_end(s, bench_now());
    free(buf);
    return 0;
}

static int producer(void *arg)
{
    shared *s = arg;
    size_t len = (size_t)s->count >> 40;
    long n = s->count & ((1L << 40) - 1);
    char *buf = calloc(1, len);
    atomic_fetch_add(&s->ready, 1);
    while (!atomic_load(&s->go))
        mproc__cpu_relax();
    for (long i = 0; i < n; i++)
        if (mproc_queue_put(s->q, buf, len, MPROC_FOREVER)) return 1;
    free(buf);
    return 0;
}

/* Messages per second through one queue: np producers and nc consumer processes. */
static double throughput(size_t len, long msgs, int np, int nc, const mproc_queue_opts *opts)
{
    shared *s = mproc_shared_alloc(sizeof *s);
    if (mproc_queue_new(&s->q, opts) < 0) abort();
    s->count = (long)(len << 40) | (msgs / np);
    mproc_process *ps[4], *cs[4];
    for (int i = 0; i < nc; i++)
        cs[i] = bench_start(consumer, s);
    for (int i = 0; i < np; i++)
        ps[i] = bench_start(producer, s);
    while (atomic_load(&s->ready) < np + nc)
        usleep(100);
    double t0 = bench_now();
    atomic_store(&s->go, 1);
    for (int i = 0; i < np; i++)
        bench_join(ps[i]);
    mproc_queue_close(s->q);
    for (int i = 0; i < nc; i++)
        bench_join(cs[i]);
    double rate = (double)(msgs / np * np) / (atomic_load(&s->end) - t0);
    mproc_queue_free(s->q);
    mproc_shared_free(s);
    return rate;
}

static double memcpy_gbs(void)
{
    char *a = malloc(LARGE), *b = malloc(LARGE);
    memset(a, 1, LARGE);
    memset(b, 2, LARGE);
    double t0 = bench_now();
    for (int i = 0; i < 2000; i++) {
        memcpy(i & 1 ? a : b, i & 1 ? b : a, LARGE);
        __asm__ __volatile__("" ::: "memory");
    }
    double gbs = 2000.0 * LARGE / (bench_now() - t0) / 1e9;
    free(a);
    free(b);
    return gbs;
}

/* ---- floor: the least a claim-based ring between 2 processes costs ----
 * One producer and one consumer on 1024 slots of a header line and a 64-byte data line, each side
 * claiming a slot with one CAS (what lets a queue have several producers and consumers) and
 * publishing it with a plain release store: no bounds, no wake-ups, no crash recovery, and no
 * prefetching or waiting for room. It moves with the machine's core-to-core latency, so it puts the
 * mproc row of the same run in proportion.
 */

#define RING 1024
typedef struct {
    _Alignas(64) _Atomic uint64_t seq;
    _Alignas(64) char data[SMALL];
} ring_slot;
typedef struct {
    ring_slot s[RING];
    long n;
    _Atomic int ready, go;
    _Atomic double end;
} ring;

static int ring_consumer(void *arg)
{
    ring *r = arg;
    char buf[SMALL];
    atomic_fetch_add(&r->ready, 1);
    for (long i = 0; i < r->n; i++) {
        ring_slot *x = &r->s[i & (RING - 1)];
        uint64_t want = (uint64_t)i + 1;
        while (!atomic_compare_exchange_weak(&x->seq, &want, want | (1ULL << 63))) {
            want = (uint64_t)i + 1;
            mproc__cpu_relax();
        }
        memcpy(buf, x->data, SMALL);
        __asm__ __volatile__("" ::"r"(buf) : "memory");
        atomic_store_explicit(&x->seq, (uint64_t)i + RING, memory_order_release);
    }
    atomic_store(&r->end, bench_now());
    return 0;
}

static int ring_producer(void *arg)
{
    ring *r = arg;
    char buf[SMALL] = {0};
    atomic_fetch_add(&r->ready, 1);
    while (!atomic_load(&r->go))
        mproc__cpu_relax();
    for (long i = 0; i < r->n; i++) {
        ring_slot *x = &r->s[i & (RING - 1)];
        uint64_t want = (uint64_t)i;
        while (!atomic_compare_exchange_weak(&x->seq, &want, want | (1ULL << 63))) {
            want = (uint64_t)i;
            mproc__cpu_relax();
        }
        memcpy(x->data, buf, SMALL);
        atomic_store_explicit(&x->seq, (uint64_t)i + 1, memory_order_release);
    }
    return 0;
}

static double ring_throughput(void)
{
    ring *r = mproc_shared_alloc(sizeof *r);
    for (uint64_t i = 0; i < RING; i++)
        atomic_init(&r->s[i].seq, i);
    r->n = SMALL_MSGS;
    mproc_process *c = bench_start(ring_consumer, r), *p = bench_start(ring_producer, r);
    while (atomic_load(&r->ready) < 2)
        usleep(100);
    double t0 = bench_now();
    atomic_store(&r->go, 1);
    bench_join(p);
    bench_join(c);
    double rate = (double)r->n / (atomic_load(&r->end) - t0);
    mproc_shared_free(r);
    return rate;
}

/* ---- ping-pong ---- */

static int ponger(void *arg)
{
    shared *s = arg;
    char buf[SMALL];
    for (;;) {
        size_t n;
        int r = mproc_queue_get(s->q, buf, sizeof buf, &n, MPROC_FOREVER);
        if (r == MPROC_ECLOSED) return 0;
        if (r || mproc_queue_put(s->back, buf, n, MPROC_FOREVER)) return 1;
    }
}

/* With idle > 0 the pinger pauses that long before each ping, past the queue's spin, so the
 * ponger is asleep in the futex when the ping comes: the case the issue compares with the raw futex
 * round trip (where both sides sleep too). */
static double pingpong(double idle)
{
    shared *s = mproc_shared_alloc(sizeof *s);
    if (mproc_queue_new(&s->q, NULL) < 0 || mproc_queue_new(&s->back, NULL) < 0) abort();
    mproc_process *p = bench_start(ponger, s);
    static double t[PINGS];
    char buf[SMALL] = {0};
    int count = idle > 0 ? PINGS / 10 : PINGS;
    for (int i = -1000; i < count; i++) {
        size_t n;
        if (idle > 0) nanosleep(&(struct timespec){.tv_nsec = (long)(idle * 1e9)}, NULL);
        double t0 = bench_now();
        if (mproc_queue_put(s->q, buf, sizeof buf, MPROC_FOREVER) ||
            mproc_queue_get(s->back, buf, sizeof buf, &n, MPROC_FOREVER))
            abort();
        if (i >= 0) t[i] = bench_now() - t0;
    }
    mproc_queue_close(s->q);
    bench_join(p);
    mproc_queue_free(s->q);
    mproc_queue_free(s->back);
    mproc_shared_free(s);
    return bench_median(t, count);
}

int main(void)
{
    double a[ROUNDS];
    for (int i = 0; i < ROUNDS; i++)
        a[i] = throughput(SMALL, SMALL_MSGS, 1, 1, NULL);
    bench_row("queue 64 B messages, 1 producer 1 consumer", "mproc", bench_median(a, ROUNDS),
              "msgs/s", "higher");
    for (int i = 0; i < ROUNDS; i++)
        a[i] = ring_throughput();
    bench_row("queue 64 B messages, 1 producer 1 consumer", "floor", bench_median(a, ROUNDS),
              "msgs/s", "higher");
    for (int i = 0; i < ROUNDS; i++)
        a[i] = throughput(SMALL, SMALL_MSGS, 2, 2, NULL);
    bench_row("queue 64 B messages, 2 producers 2 consumers", "mproc", bench_median(a, ROUNDS),
              "msgs/s", "higher");
    /* Just under and at a page: a 4 KiB message and its headers used to take an 8 KiB block. */
    static const size_t page_sizes[] = {3968, 4096};
    for (size_t k = 0; k < 2; k++) {
        for (int i = 0; i < ROUNDS; i++)
            a[i] = throughput(page_sizes[k], PAGE_MSGS, 1, 1, NULL) * (double)page_sizes[k] / 1e9;
        char name[64];
        snprintf(name, sizeof name, "queue %zu B messages, 1 producer 1 consumer", page_sizes[k]);
        bench_row(name, "mproc", bench_median(a, ROUNDS), "GB/s", "higher");
    }
    /* A few messages in flight keep the blocks in cache, as a pipeline of stages would. */
    const mproc_queue_opts big = {.max_bytes = 8 * LARGE};
    for (int i = 0; i < ROUNDS; i++)
        a[i] = throughput(LARGE, LARGE_MSGS, 1, 1, &big) * LARGE / 1e9;
    bench_row("queue 1 MiB messages, 1 producer 1 consumer", "mproc", bench_median(a, ROUNDS),
              "GB/s", "higher");
    for (int i = 0; i < ROUNDS; i++)
        a[i] = memcpy_gbs();
    bench_row("queue 1 MiB messages, 1 producer 1 consumer", "floor", bench_median(a, ROUNDS),
              "GB/s", "higher");
    bench_row("queue ping-pong round trip", "mproc", pingpong(0) * 1e6, "us", "lower");
    double floor_us = bench_futex_round_trip(0, PINGS) * 1e6;
    bench_row("queue ping-pong round trip", "floor", floor_us, "us", "lower");
    bench_row("queue ping-pong round trip, peer asleep", "mproc", pingpong(200e-6) * 1e6, "us",
              "lower");
    bench_row("queue ping-pong round trip, peer asleep", "floor",
              bench_futex_round_trip(200e-6, PINGS / 10) * 1e6, "us", "lower");
    return 0;
}
