/* The message driver of bench/peers/msg.h: the same processes, stamps, checks and clocks for
 * mproc and for every peer, so that a row differs only by the transport. */
#include "msg.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

const size_t peer_msg_sizes[PEER_MSG_NSIZES] = {64, 256, 1024, 4096, 16 * 1024, 64 * 1024, 1 << 20};

size_t peer_msg_depth(size_t len)
{
    size_t d = ((size_t)8 << 20) / len;
    return d > 1024 ? 1024 : d;
}

long peer_msg_count(size_t len)
{
    long n = (long)(((size_t)256 << 20) / len);
    return n > 2000000 ? 2000000 : n < 256 ? 256 : n;
}

void peer_msg_workload(char *buf, size_t cap, size_t len)
{
    if (len >= (1 << 20))
        snprintf(buf, cap, "messages %zu MiB, 1 producer 1 consumer", len >> 20);
    else if (len >= 1024)
        snprintf(buf, cap, "messages %zu KiB, 1 producer 1 consumer", len >> 10);
    else
        snprintf(buf, cap, "messages %zu B, 1 producer 1 consumer", len);
}

double peer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void peer_row(const char *workload, const char *impl, double value, const char *unit,
              const char *better)
{
    printf("ROW\t%s\t%s\t%.6g\t%s\t%s\n", workload, impl, value, unit, better);
    fflush(stdout);
}

#define STAMP_EVERY 4096
#define PROBE 1000       /* messages or round trips of the probe run */
#define RUN_SECONDS 0.25 /* what a measured run aims at, within peer_msg_count */

static unsigned char pattern_byte(size_t i)
{
    return (unsigned char)(i * 131 + 7);
}

void peer_msg_init(void *buf, size_t len)
{
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = pattern_byte(i);
}

void peer_msg_stamp(void *buf, size_t len, uint64_t seq)
{
    char *b = buf;
    for (size_t off = 0; off + 8 <= len; off += STAMP_EVERY)
        memcpy(b + off, &seq, 8);
    memcpy(b + len - 8, &seq, 8);
}

/* The pattern a stamped message has between its stamps, made once per size. */
static const unsigned char *reference(size_t len)
{
    static unsigned char *ref;
    static size_t ref_len;
    if (ref_len != len) {
        free(ref);
        ref = malloc(len);
        if (!ref) exit(4);
        peer_msg_init(ref, len);
        ref_len = len;
    }
    return ref;
}

void peer_msg_check(const void *msg, size_t got, size_t len, uint64_t seq)
{
    const unsigned char *m = msg, *ref = reference(len);
    if (!m || got != len) exit(3);
    uint64_t v;
    memcpy(&v, m + len - 8, 8);
    if (v != seq) exit(3);
    for (size_t off = 0; off < len; off += STAMP_EVERY) {
        size_t end = off + STAMP_EVERY < len - 8 ? off + STAMP_EVERY : len - 8;
        memcpy(&v, m + off, 8);
        if (v != seq || (end > off + 8 && memcmp(m + off + 8, ref + off + 8, end - off - 8)))
            exit(3);
    }
}

/* ---- the two processes ---- */

typedef struct {
    const peer_msg_ops *ops;
    void *st;
    size_t len;
    long n;
    _Atomic int ready, go, done;
    double t_first, t_last; /* of the consumer's first and last message */
    double rtt[PEER_PINGS];
} ctl;

static void wait_flag(_Atomic int *f, int v)
{
    while (atomic_load(f) < v)
        usleep(50);
}

static int consumer(void *arg)
{
    ctl *c = arg;
    char *buf = malloc(c->len);
    void *h = c->ops->open(c->st, 0);
    if (!h || !buf) return 2;
    atomic_fetch_add(&c->ready, 1);
    for (long i = 0; i < c->n; i++) {
        size_t got = 0;
        const void *m = c->ops->recv(h, buf, c->len, &got);
        if (i == 0) c->t_first = peer_now();
        peer_msg_check(m, got, c->len, (uint64_t)i);
    }
    c->t_last = peer_now();
    atomic_store(&c->done, 1);
    c->ops->close(h);
    free(buf);
    return 0;
}

static int producer(void *arg)
{
    ctl *c = arg;
    char *buf = malloc(c->len);
    void *h = c->ops->open(c->st, 1);
    if (!h || !buf) return 2;
    peer_msg_init(buf, c->len);
    atomic_fetch_add(&c->ready, 1);
    wait_flag(&c->go, 1);
    for (long i = 0; i < c->n; i++) {
        peer_msg_stamp(buf, c->len, (uint64_t)i);
        if (c->ops->send(h, buf, c->len)) return 5;
    }
    /* Some transports drop what is still buffered when the sender closes. */
    wait_flag(&c->done, 1);
    c->ops->close(h);
    free(buf);
    return 0;
}

static int ponger(void *arg)
{
    ctl *c = arg;
    char *buf = malloc(c->len);
    void *h = c->ops->open(c->st, 0);
    if (!h || !buf) return 2;
    atomic_fetch_add(&c->ready, 1);
    for (long i = 0; i < c->n; i++) {
        size_t got = 0;
        const void *m = c->ops->recv(h, buf, c->len, &got);
        peer_msg_check(m, got, c->len, (uint64_t)i);
        if (c->ops->send(h, m, got)) return 5;
    }
    wait_flag(&c->done, 1);
    c->ops->close(h);
    free(buf);
    return 0;
}

static int pinger(void *arg)
{
    ctl *c = arg;
    char *buf = malloc(c->len), *back = malloc(c->len);
    void *h = c->ops->open(c->st, 1);
    if (!h || !buf || !back) return 2;
    peer_msg_init(buf, c->len);
    atomic_fetch_add(&c->ready, 1);
    wait_flag(&c->go, 1);
    for (long i = 0; i < c->n; i++) {
        peer_msg_stamp(buf, c->len, (uint64_t)i);
        double t0 = peer_now();
        size_t got = 0;
        if (c->ops->send(h, buf, c->len)) return 5;
        const void *m = c->ops->recv(h, back, c->len, &got);
        double dt = peer_now() - t0;
        peer_msg_check(m, got, c->len, (uint64_t)i);
        if (i >= PEER_PING_WARMUP) c->rtt[i - PEER_PING_WARMUP] = dt;
    }
    atomic_store(&c->done, 1);
    c->ops->close(h);
    free(buf);
    free(back);
    return 0;
}

static mproc_process *start(mproc_run_fn fn, void *arg)
{
    mproc_process *p;
    if (mproc_process_new(
            &p, &(mproc_process_opts){.run = fn, .arg = arg, .start_method = "fork"}) < 0 ||
        mproc_process_start(p) < 0)
        abort();
    return p;
}

/* Waits for both processes; when one fails, the other is killed (it may be blocked on it). */
static void join_pair(mproc_process *p[2], int code[2])
{
    bool done[2] = {false, false};
    while (!done[0] || !done[1]) {
        for (int i = 0; i < 2; i++) {
            if (done[i] || mproc_process_join(p[i], 0.002) < 0) continue;
            done[i] = true;
            if (mproc_process_exitcode(p[i], &code[i]) < 0) code[i] = -1;
            if (code[i] && !done[1 - i]) mproc_process_kill(p[1 - i]);
        }
    }
    mproc_process_free(p[0]);
    mproc_process_free(p[1]);
}

/* Runs side 0 and side 1 in two processes; 0 when both exited 0. */
static int run_pair(ctl *c, mproc_run_fn side0, mproc_run_fn side1, const char *what)
{
    c->st = c->ops->prepare(c->len, peer_msg_depth(c->len));
    if (!c->st) return -1;
    atomic_store(&c->ready, 0);
    atomic_store(&c->go, 0);
    atomic_store(&c->done, 0);
    mproc_process *p[2] = {start(side0, c), start(side1, c)};
    while (atomic_load(&c->ready) < 2 && mproc_process_is_alive(p[0]) &&
           mproc_process_is_alive(p[1]))
        usleep(100);
    atomic_store(&c->go, 1);
    int code[2] = {-1, -1};
    join_pair(p, code);
    c->ops->cleanup(c->st);
    if (code[0] || code[1]) {
        fprintf(stderr, "%s %s %zu B: the processes exited %d and %d (3: a message was wrong)\n",
                c->ops->impl, what, c->len, code[0], code[1]);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int peer_msg_main(const peer_msg_ops *const *ops, int n)
{
    ctl *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED) return 1;
    for (int k = 0; k < n; k++) {
        c->ops = ops[k];
        for (int s = 0; s < PEER_MSG_NSIZES; s++) {
            c->len = peer_msg_sizes[s];
            /* a short probe first, so that a slow peer's run stays near RUN_SECONDS */
            c->n = PROBE;
            if (run_pair(c, consumer, producer, "throughput")) continue;
            double rate = (double)(c->n - 1) / (c->t_last - c->t_first);
            c->n = (long)(rate * RUN_SECONDS);
            if (c->n > peer_msg_count(c->len)) c->n = peer_msg_count(c->len);
            if (c->n < PROBE) c->n = PROBE;
            if (run_pair(c, consumer, producer, "throughput")) continue;
            char name[96];
            peer_msg_workload(name, sizeof name, c->len);
            double mbs = (double)(c->n - 1) * (double)c->len / (c->t_last - c->t_first) / 1e6;
            peer_row(name, c->ops->impl, mbs, "MB/s", "higher");
        }
        c->len = PEER_PING_SIZE;
        c->n = PEER_PING_WARMUP + PROBE;
        if (run_pair(c, ponger, pinger, "ping-pong")) continue;
        qsort(c->rtt, PROBE, sizeof c->rtt[0], cmp_double);
        long pings = (long)(RUN_SECONDS / c->rtt[PROBE / 2]);
        pings = pings > PEER_PINGS ? PEER_PINGS : pings < PROBE ? PROBE : pings;
        c->n = PEER_PING_WARMUP + pings;
        if (run_pair(c, ponger, pinger, "ping-pong")) continue;
        qsort(c->rtt, (size_t)pings, sizeof c->rtt[0], cmp_double);
        peer_row(PEER_PING_WORKLOAD, c->ops->impl, c->rtt[pings / 2] * 1e6, "us", "lower");
    }
    munmap(c, sizeof *c);
    return 0;
}
