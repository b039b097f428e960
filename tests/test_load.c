/* Load (label `load`, docs/testing.md "Load"): many processes at once, many more workers than
 * CPUs, millions of tiny tasks with the resident set sampled, many queues, many outstanding
 * futures. Each case prints its figures. Sizes shrink under HARNESS_SLOW (sanitizers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "arena/arena.h"
#include "harness.h"

static double slow_div(void)
{
    double s = harness_slow();
    return s > 1 ? s * 4 : 1;
}

/* Waits until every one is started, so all are alive at once. */
static int quick(void *arg)
{
    return mproc_event_wait(arg, 120) == 0 ? 7 : 1;
}

TEST_T(thousand_processes_at_once, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads here");
    enum { N = 1000 };
    struct rlimit rl;
    CHECK_EQ(getrlimit(RLIMIT_NPROC, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < N + 200) {
        char why[128];
        snprintf(why, sizeof why, "RLIMIT_NPROC is %llu, below the %d processes needed",
                 (unsigned long long)rl.rlim_cur, N + 200);
        harness_skip(why);
    }
    static mproc_process *ps[N];
    mproc_event *go;
    CHECK_OK(mproc_event_new(&go));
    double t0 = harness_now();
    for (int i = 0; i < N; i++)
        ps[i] = harness_start(quick, go);
    double started = harness_now() - t0;
    CHECK_OK(mproc_event_set(go));
    for (int i = 0; i < N; i++)
        CHECK_EQ(harness_join(ps[i]), 7);
    printf("1000 processes alive at once: started in %.2f s, all joined after %.2f s\n", started,
           harness_now() - t0);
    mproc_event_free(go);
}

static int square(mproc_task *t)
{
    const int *x = mproc_task_arg(t, NULL);
    long long y = (long long)*x * *x;
    return mproc_task_return(t, &y, sizeof y);
}

static void run_batch(mproc_pool *p, mproc_future **fs, int n, int base)
{
    for (int i = 0; i < n; i++) {
        int x = base + i;
        CHECK_OK(mproc_pool_submit(p, square, &x, sizeof x, &fs[i]));
    }
    for (int i = 0; i < n; i++) {
        long long y;
        CHECK_OK(mproc_future_get(fs[i], &y, sizeof y, NULL, 120));
        CHECK_EQ(y, (long long)(base + i) * (base + i));
        mproc_future_free(fs[i]);
    }
}

TEST_T(sixty_four_workers_on_few_cpus, 240)
{
    mproc_pool *p;
    double t0 = harness_now();
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 64}));
    static mproc_future *fs[10000];
    run_batch(p, fs, 10000, 0);
    pid_t pids[64];
    if (strcmp(harness_method(), "thread") != 0) CHECK_EQ(mproc_pool_worker_pids(p, pids, 64), 64);
    mproc_pool_free(p);
    printf("64 workers on %d CPUs: 10000 tasks in %.2f s\n", mproc_cpu_count(), harness_now() - t0);
}

TEST_T(ten_thousand_outstanding_futures, 240)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    static mproc_future *fs[10000];
    double t0 = harness_now();
    run_batch(p, fs, 10000, 1000); /* all submitted before the first get */
    mproc_pool_free(p);
    printf("10000 outstanding futures: %.2f s\n", harness_now() - t0);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, res = 0;
    int ok = fscanf(f, "%ld %ld", &size, &res) == 2;
    fclose(f);
    return ok ? res * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/* Millions of tiny tasks: the parent's resident set is flat after a warm-up (growth under 5 %).
 * MPROC_LOAD_TASKS sets the count (default 10 M, divided under HARNESS_SLOW, at least 3 M);
 * MPROC_LOAD_TRACE=1 prints the RSS every 500 k tasks. */
TEST_T(millions_of_tiny_tasks_keep_memory_flat, 600)
{
    const char *e = getenv("MPROC_LOAD_TASKS");
    long total = e && *e ? atol(e) : 10000000;
    total = (long)(total / slow_div());
    /* The resident set grows over the first ~1.5 M tasks (pages of the arena's task records and
     * of the allocator touched for the first time), then stays flat: warm up for 2 M. */
    long warm = 2000000;
    if (total < warm + warm / 2) total = warm + warm / 2;
    enum { BATCH = 5000 };
    static mproc_future *fs[BATCH];
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    double t0 = harness_now();
    long done = 0, rss_warm = 0, rss_max = 0;
    while (done < total) {
        run_batch(p, fs, BATCH, (int)(done % 1000000));
        done += BATCH;
        long r = rss_kib();
        if (getenv("MPROC_LOAD_TRACE") && done % 500000 == 0) printf("  %ld: %ld KiB\n", done, r);
        if (done >= warm && !rss_warm) rss_warm = r;
        if (rss_warm && r > rss_max) rss_max = r;
    }
    double dt = harness_now() - t0;
    mproc_pool_free(p);
    printf("%ld tiny tasks in %.1f s (%.2f us each); RSS after warm-up %ld KiB, max %ld KiB "
           "(+%.2f %%)\n",
           done, dt, dt / (double)done * 1e6, rss_warm, rss_max,
           100.0 * (double)(rss_max - rss_warm) / (double)rss_warm);
    CHECK(rss_max <= rss_warm + rss_warm / 20);
}

TEST_T(thousand_queues, 240)
{
    enum { N = 1000 };
    static mproc_queue *qs[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_queue_new(&qs[i], NULL));
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_queue_put(qs[i], &i, sizeof i, 1));
    for (int i = 0; i < N; i++) {
        int v;
        size_t n;
        CHECK_OK(mproc_queue_get(qs[N - 1 - i], &v, sizeof v, &n, 1));
        CHECK_EQ(v, N - 1 - i);
    }
    for (int i = 0; i < N; i++)
        mproc_queue_free(qs[i]);
}

/* ---- a slow imap consumer: memory bounded by the window ---- */

enum { IMAP_ITEM = 64 << 10, IMAP_WINDOW = 8 };

typedef struct {
    unsigned char buf[IMAP_ITEM];
    size_t produced, consumed, max_ahead, total;
} imap_src;

static int imap_input(const void **data, size_t *len, void *arg)
{
    imap_src *s = arg;
    if (s->produced == s->total) return 0;
    s->produced++;
    if (s->produced - s->consumed > s->max_ahead) s->max_ahead = s->produced - s->consumed;
    memset(s->buf, (int)(s->produced & 0xff), 16);
    *data = s->buf;
    *len = sizeof s->buf;
    return 1;
}

static int echo_task(mproc_task *t)
{
    size_t n;
    const void *a = mproc_task_arg(t, &n);
    return mproc_task_return(t, a, n);
}

TEST_T(slow_imap_consumer_memory_bounded_by_window, 240)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    static imap_src src;
    memset(&src, 0, sizeof src);
    src.total = (size_t)(3000 / slow_div());
    mproc__arena_stats st;
    mproc__arena_get_stats(&st);
    size_t base = st.in_use, peak = 0;
    mproc_imap *it;
    CHECK_OK(mproc_imap_new(&it, p, echo_task, imap_input, &src,
                            &(mproc_imap_opts){.window = IMAP_WINDOW}));
    for (;;) {
        const void *d;
        size_t len, idx;
        int r = mproc_imap_next(it, &d, &len, &idx, 60);
        if (r == MPROC_EEND) break;
        CHECK_OK(r);
        CHECK_EQ(len, IMAP_ITEM);
        CHECK_EQ(idx, src.consumed);
        src.consumed++;
        mproc__arena_get_stats(&st);
        if (st.in_use - base > peak) peak = st.in_use - base;
        usleep(200); /* slower than the workers */
    }
    mproc_imap_free(it);
    mproc_pool_free(p);
    printf("slow imap consumer: %zu items of %d KiB, window %d: at most %zu read ahead, arena "
           "peak +%zu KiB\n",
           src.consumed, IMAP_ITEM >> 10, IMAP_WINDOW, src.max_ahead, peak >> 10);
    CHECK_EQ(src.consumed, src.total);
    CHECK(src.max_ahead <= IMAP_WINDOW + 1);
    /* Arguments and results of the window's tasks, twice over for slack: not the whole input. */
    CHECK(peak <= (size_t)4 * (IMAP_WINDOW + 2) * IMAP_ITEM);
}
