/* Synchronisation: lock acquire+release (uncontended, and 2 processes contending) against a raw
 * pthread mutex, and Event set-to-wake latency against a raw futex wake between 2 processes. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"
#include "sync/sync.h"

#define ROUNDS 11
#define UNCONTENDED_OPS 2000000
#define CONTENDED_OPS 200000
#define LATENCY_SAMPLES 2000

/* ---- uncontended ---- */

static double mproc_uncontended(mproc_lock *l)
{
    double t0 = bench_now();
    for (int i = 0; i < UNCONTENDED_OPS; i++) {
        mproc_lock_acquire(l, MPROC_FOREVER);
        mproc_lock_release(l);
    }
    return (bench_now() - t0) / UNCONTENDED_OPS;
}

static double raw_uncontended(pthread_mutex_t *m)
{
    double t0 = bench_now();
    for (int i = 0; i < UNCONTENDED_OPS; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }
    return (bench_now() - t0) / UNCONTENDED_OPS;
}

static void bench_uncontended(void)
{
    mproc_lock *l;
    if (mproc_lock_new(&l) < 0) abort();
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    double a[ROUNDS], b[ROUNDS];
    mproc_uncontended(l);
    raw_uncontended(&m);
    for (int i = 0; i < ROUNDS; i++) {
        a[i] = mproc_uncontended(l);
        b[i] = raw_uncontended(&m);
    }
    bench_row("lock acquire+release uncontended", "mproc", bench_median(a, ROUNDS) * 1e9, "ns",
              "lower");
    bench_row("lock acquire+release uncontended", "floor", bench_median(b, ROUNDS) * 1e9, "ns",
              "lower");
    mproc_lock_free(l);
}

/* ---- 2 processes contending ---- */

typedef struct {
    mproc_lock *lock;
    mproc_barrier *start;
    long counter;
} contend_arg;

static int contend(void *arg)
{
    contend_arg *a = arg;
    mproc_barrier_wait(a->start, MPROC_FOREVER);
    for (int i = 0; i < CONTENDED_OPS; i++) {
        mproc_lock_acquire(a->lock, MPROC_FOREVER);
        a->counter++;
        mproc_lock_release(a->lock);
    }
    return 0;
}

static void bench_contended(void)
{
    contend_arg *a = mproc_shared_alloc(sizeof *a);
    if (!a || mproc_lock_new(&a->lock) < 0 || mproc_barrier_new(&a->start, 2, NULL, NULL) < 0)
        abort();
    double v[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        a->counter = 0;
        mproc_process *p = bench_start(contend, a);
        double t0 = bench_now();
        contend(a);
        bench_join(p);
        v[r] = (bench_now() - t0) / (2.0 * CONTENDED_OPS);
        if (a->counter != 2L * CONTENDED_OPS) abort();
    }
    bench_row("lock acquire+release, 2 processes contending", "mproc",
              bench_median(v, ROUNDS) * 1e9, "ns", "lower");
    mproc_lock_free(a->lock);
    mproc_barrier_free(a->start);
    mproc_shared_free(a);
}

/* ---- Event set-to-wake latency, the waiter asleep in another process ---- */

typedef struct {
    mproc_event *go, *ack;
    _Atomic uint32_t word, ackword; /* the raw futex floor */
    _Atomic uint32_t raw_sleeping;
    _Atomic uint32_t entering; /* the waiter is about to call wait: set now, it is still spinning */
    _Atomic int64_t woke;
} latency_arg;

static int event_waiter(void *arg)
{
    latency_arg *a = arg;
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        mproc_event_wait(a->go, MPROC_FOREVER);
        atomic_store(&a->woke, mproc__now_ns());
        mproc_event_clear(a->go);
        mproc_event_set(a->ack);
    }
    return 0;
}

static double event_latency(latency_arg *a)
{
    double v[LATENCY_SAMPLES];
    mproc_process *p = bench_start(event_waiter, a);
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        /* Already waiting: past its spin, asleep in the kernel. */
        while (mproc__event_sleepers(a->go) == 0)
            sched_yield();
        /* Counted just before its futex wait: give it time to get there (as the floor does). */
        for (int k = 0; k < 20; k++)
            sched_yield();
        int64_t t0 = mproc__now_ns();
        mproc_event_set(a->go);
        mproc_event_wait(a->ack, MPROC_FOREVER);
        mproc_event_clear(a->ack);
        v[i] = (double)(atomic_load(&a->woke) - t0);
    }
    bench_join(p);
    return bench_median(v, LATENCY_SAMPLES);
}

/* The same, set while the waiter is still in its spin (a wait that is short in practice). */
static int spinning_waiter(void *arg)
{
    latency_arg *a = arg;
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        atomic_store(&a->entering, 1);
        mproc_event_wait(a->go, MPROC_FOREVER);
        atomic_store(&a->woke, mproc__now_ns());
        mproc_event_clear(a->go);
        mproc_event_set(a->ack);
    }
    return 0;
}

static double spinning_latency(latency_arg *a)
{
    double v[LATENCY_SAMPLES];
    mproc_process *p = bench_start(spinning_waiter, a);
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        while (!atomic_load(&a->entering))
            mproc__cpu_relax();
        atomic_store(&a->entering, 0);
        int64_t t0 = mproc__now_ns();
        mproc_event_set(a->go);
        mproc_event_wait(a->ack, MPROC_FOREVER);
        mproc_event_clear(a->ack);
        v[i] = (double)(atomic_load(&a->woke) - t0);
    }
    bench_join(p);
    return bench_median(v, LATENCY_SAMPLES);
}

static int raw_waiter(void *arg)
{
    latency_arg *a = arg;
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        atomic_store(&a->raw_sleeping, 1);
        while (atomic_load(&a->word) == 0)
            syscall(SYS_futex, &a->word, FUTEX_WAIT, 0, NULL, NULL, 0);
        atomic_store(&a->woke, mproc__now_ns());
        atomic_store(&a->word, 0);
        atomic_store(&a->ackword, 1);
    }
    return 0;
}

static double raw_latency(latency_arg *a)
{
    double v[LATENCY_SAMPLES];
    mproc_process *p = bench_start(raw_waiter, a);
    for (int i = 0; i < LATENCY_SAMPLES; i++) {
        while (!atomic_load(&a->raw_sleeping))
            sched_yield();
        /* The flag is set just before the futex wait: give it time to get there. */
        for (int k = 0; k < 20; k++)
            sched_yield();
        atomic_store(&a->raw_sleeping, 0);
        int64_t t0 = mproc__now_ns();
        atomic_store(&a->word, 1);
        syscall(SYS_futex, &a->word, FUTEX_WAKE, 1, NULL, NULL, 0);
        while (!atomic_load(&a->ackword))
            sched_yield();
        atomic_store(&a->ackword, 0);
        v[i] = (double)(atomic_load(&a->woke) - t0);
    }
    bench_join(p);
    return bench_median(v, LATENCY_SAMPLES);
}

static void bench_latency(void)
{
    latency_arg *a = mproc_shared_alloc(sizeof *a);
    if (!a || mproc_event_new(&a->go) < 0 || mproc_event_new(&a->ack) < 0) abort();
    double m = event_latency(a), f = raw_latency(a), s = spinning_latency(a);
    bench_row("event set-to-wake latency", "mproc", m / 1e3, "us", "lower");
    bench_row("event set-to-wake latency", "floor", f / 1e3, "us", "lower");
    bench_row("event set-to-wake latency, waiter still spinning", "mproc", s / 1e3, "us", "lower");
    mproc_event_free(a->go);
    mproc_event_free(a->ack);
    mproc_shared_free(a);
}

int main(void)
{
    if (mproc_init(NULL) < 0) return 1;
    bench_uncontended();
    bench_contended();
    bench_latency();
    return 0;
}
