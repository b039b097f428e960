/* map progress: called in the caller's thread, at most every interval, monotonic, once at the end
 * with the total. */
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

enum { MAXCALLS = 4096 };

typedef struct {
    size_t n;
    size_t done[MAXCALLS], total[MAXCALLS];
    double at[MAXCALLS];
    bool other_thread;
    pthread_t caller;
} calls;

static void record(size_t done, size_t total, void *arg)
{
    calls *c = arg;
    if (!pthread_equal(pthread_self(), c->caller)) c->other_thread = true;
    if (c->n < MAXCALLS) {
        c->done[c->n] = done;
        c->total[c->n] = total;
        c->at[c->n] = harness_now();
    }
    c->n++;
}

static int slow_item(const void *in, void *out, void *arg)
{
    (void)arg;
    usleep(1000);
    *(int *)out = *(const int *)in + 1;
    return *(const int *)in == 150 && arg ? -EIO : 0;
}

static void check_monotonic(const calls *c, size_t total)
{
    CHECK(c->n >= 1 && c->n <= MAXCALLS);
    CHECK(!c->other_thread);
    for (size_t i = 0; i < c->n; i++) {
        CHECK_EQ(c->total[i], total);
        CHECK(c->done[i] <= total);
        if (i) CHECK(c->done[i] >= c->done[i - 1]);
    }
}

TEST(progress_monotonic_ending_at_total)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    enum { N = 200 };
    static int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    static calls c;
    c.caller = pthread_self();
    const double every = 0.02;
    CHECK_OK(mproc_pool_map(
        p, slow_item, in, sizeof *in, out, sizeof *out, N,
        &(mproc_map_opts){
            .chunksize = 5, .progress = record, .progress_arg = &c, .progress_interval = every}));
    for (int i = 0; i < N; i++)
        CHECK_EQ(out[i], i + 1);
    check_monotonic(&c, N);
    /* About 100 ms of work: some calls on the way, then the last with the total. */
    CHECK(c.n >= 2);
    CHECK_EQ(c.done[c.n - 1], N);
    for (size_t i = 0; i + 1 < c.n; i++) {
        CHECK(c.done[i] < N || i + 2 == c.n);                /* the end is reported once */
        if (i) CHECK(c.at[i] - c.at[i - 1] >= every * 0.95); /* at most every interval */
        if (i) CHECK(c.done[i] > c.done[i - 1]);             /* only when the count moved */
    }
    mproc_pool_free(p);
}

TEST(progress_once_at_end_of_failed_map)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    enum { N = 200 };
    static int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    static calls c;
    c.caller = pthread_self();
    int fail = 1;
    CHECK_RC(mproc_pool_map(p, slow_item, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.chunksize = 5,
                                              .arg = &fail,
                                              .progress = record,
                                              .progress_arg = &c,
                                              .progress_interval = 0.01}),
             -EIO);
    check_monotonic(&c, N);
    CHECK(c.done[c.n - 1] >= 150 - 5 && c.done[c.n - 1] < N);
    mproc_pool_free(p);
}

/* A quick map still reports its end, once; bad intervals are refused before anything runs. */
TEST(progress_quick_map_and_bad_interval)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    static int in[10], out[10];
    static calls c;
    c.caller = pthread_self();
    CHECK_OK(mproc_pool_map(
        p, slow_item, in, sizeof *in, out, sizeof *out, 10,
        &(mproc_map_opts){.progress = record, .progress_arg = &c, .progress_interval = 1e12}));
    CHECK_EQ(c.n, 1);
    CHECK_EQ(c.done[0], 10);
    c.n = 0;
    CHECK_RC(mproc_pool_map(p, slow_item, in, sizeof *in, out, sizeof *out, 10,
                            &(mproc_map_opts){
                                .progress = record, .progress_arg = &c, .progress_interval = -1}),
             -EINVAL);
    CHECK_RC(mproc_pool_map(p, slow_item, in, sizeof *in, out, sizeof *out, 10,
                            &(mproc_map_opts){
                                .progress = record, .progress_arg = &c, .progress_interval = NAN}),
             -EINVAL);
    CHECK_EQ(c.n, 0);
    mproc_pool_free(p);
}
