/* mproc_pool_resize: grow and shrink a pool under load; running tasks finish, none is lost. */
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

static int sleep_ms(mproc_task *t)
{
    const int *ms = mproc_task_arg(t, NULL);
    usleep((useconds_t)*ms * 1000);
    return 0;
}

static void wait_workers(mproc_pool *p, int n)
{
    double until = harness_now() + 20 * harness_slow();
    while (mproc_pool_worker_pids(p, NULL, 0) != n) {
        CHECK(harness_now() < until);
        usleep(1000);
    }
}

TEST_T(grow_and_shrink_under_load, 60)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    enum { N = 300 };
    mproc_future *fs[N];
    int ms = 3;
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_pool_submit(p, sleep_ms, &ms, sizeof ms, &fs[i]));
    CHECK_OK(mproc_pool_resize(p, 4));
    CHECK_EQ(mproc_pool_size(p), 4);
    wait_workers(p, 4);
    /* The new workers take their share of the queue. */
    mproc_pool_worker_stat w[4];
    double until = harness_now() + 20 * harness_slow();
    for (;;) {
        CHECK_EQ(mproc_pool_worker_stats(p, w, 4), 4);
        if (w[2].tasks > 0 && w[3].tasks > 0) break;
        CHECK(harness_now() < until);
        usleep(1000);
    }
    /* Shrink while every worker runs a task: they finish it, two leave, the rest goes on. */
    CHECK_OK(mproc_pool_resize(p, 1));
    CHECK_EQ(mproc_pool_size(p), 1);
    wait_workers(p, 1);
    for (int i = 0; i < N; i++) {
        CHECK_OK(mproc_future_get(fs[i], NULL, 0, NULL, 60));
        mproc_future_free(fs[i]);
    }
    mproc_pool_stat s;
    CHECK_OK(mproc_pool_stats(p, &s));
    CHECK_EQ(s.done, N);
    CHECK_EQ(s.failed + s.cancelled + s.worker_deaths, 0);
    CHECK_EQ(s.workers, 1);
    /* Every seat used keeps its counts; the emptied ones have no worker. */
    CHECK_EQ(mproc_pool_worker_stats(p, w, 4), 4);
    CHECK(w[0].pid > 0 && w[1].pid == 0 && w[2].pid == 0 && w[3].pid == 0);
    CHECK_EQ(w[0].tasks + w[1].tasks + w[2].tasks + w[3].tasks, N);
    /* And back up. */
    CHECK_OK(mproc_pool_resize(p, 3));
    wait_workers(p, 3);
    for (int i = 0; i < 30; i++)
        CHECK_OK(mproc_pool_submit(p, sleep_ms, &ms, sizeof ms, &fs[i]));
    for (int i = 0; i < 30; i++) {
        CHECK_OK(mproc_future_get(fs[i], NULL, 0, NULL, 60));
        mproc_future_free(fs[i]);
    }
    CHECK_EQ(mproc_pool_worker_stats(p, w, 4), 4);
    CHECK(w[0].pid > 0 && w[1].pid > 0 && w[2].pid > 0 && w[3].pid == 0);
    mproc_pool_free(p);
}

/* A shrink does not wait for the running task, and does not cut it short. */
TEST(shrink_lets_running_task_finish)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    int ms = 200;
    mproc_future *a, *b;
    CHECK_OK(mproc_pool_submit(p, sleep_ms, &ms, sizeof ms, &a));
    CHECK_OK(mproc_pool_submit(p, sleep_ms, &ms, sizeof ms, &b));
    mproc_pool_stat s;
    double until = harness_now() + 20 * harness_slow();
    do {
        CHECK_OK(mproc_pool_stats(p, &s));
        CHECK(harness_now() < until);
    } while (s.running < 2 && (usleep(1000), 1));
    double t0 = harness_now();
    CHECK_OK(mproc_pool_resize(p, 1));
    CHECK(harness_now() - t0 < 0.1 * harness_slow());
    CHECK_OK(mproc_future_get(a, NULL, 0, NULL, 30));
    CHECK_OK(mproc_future_get(b, NULL, 0, NULL, 30));
    mproc_future_free(a);
    mproc_future_free(b);
    wait_workers(p, 1);
    mproc_pool_free(p);
}

TEST(resize_errors)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_RC(mproc_pool_resize(NULL, 1), -EINVAL);
    CHECK_RC(mproc_pool_resize(p, 0), -EINVAL);
    CHECK_RC(mproc_pool_resize(p, -1), -EINVAL);
    CHECK_RC(mproc_pool_resize(p, MPROC_POOL_MAX_WORKERS + 1), -EINVAL);
    int cap = 4 * mproc_cpu_count() > 64 ? 4 * mproc_cpu_count() : 64;
    if (cap < MPROC_POOL_MAX_WORKERS) CHECK_RC(mproc_pool_resize(p, cap + 1), -EINVAL);
    CHECK_EQ(mproc_pool_size(p), 1);
    CHECK_OK(mproc_pool_close(p));
    CHECK_RC(mproc_pool_resize(p, 2), MPROC_ECLOSED);
    mproc_pool_free(p);
}
