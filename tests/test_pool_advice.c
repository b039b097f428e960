/* Advice lines: once per pool, a WARNING when tasks are too small for their dispatch, an INFO when
 * a map did not run in parallel; read back from the log's ring. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log_util.h"

static char *logdir;

static void log_to_ring(void)
{
    logdir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "advice",
                                                .log_dir = logdir,
                                                .console_level = MPROC_LOG_OFF,
                                                .ring_lines = 256}));
}

/* Lines of the ring holding `what` (and `level`). */
static int count_lines(const char *level, const char *what)
{
    char **lines;
    size_t n;
    CHECK_OK(mproc_log_ring_get(&lines, &n));
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (strstr(lines[i], level) && strstr(lines[i], what)) k++;
    free(lines);
    return k;
}

static void log_done(void)
{
    mproc_log_shutdown();
    tmpdir_remove(logdir);
}

static int trivial(mproc_task *t)
{
    (void)t;
    return 0;
}

static int sleep_ms(mproc_task *t)
{
    const int *ms = mproc_task_arg(t, NULL);
    usleep((useconds_t)*ms * 1000);
    return 0;
}

static void run_many(mproc_pool *p, mproc_task_fn fn, int ms, int n)
{
    mproc_future **fs = calloc((size_t)n, sizeof *fs);
    CHECK(fs != NULL);
    for (int i = 0; i < n; i++)
        CHECK_OK(mproc_pool_submit(p, fn, &ms, sizeof ms, &fs[i]));
    for (int i = 0; i < n; i++) {
        CHECK_OK(mproc_future_get(fs[i], NULL, 0, NULL, 60));
        mproc_future_free(fs[i]);
    }
    free(fs);
}

#define OVERHEAD "dispatch costs more than the work"
#define SERIAL "the work did not run in parallel"

TEST(warning_once_when_tasks_are_too_small)
{
    log_to_ring();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .name = "Tiny"}));
    run_many(p, trivial, 0, 500);
    mproc_pool_stat s;
    CHECK_OK(mproc_pool_stats(p, &s));
    CHECK_EQ(count_lines("WARNING", OVERHEAD), 0); /* under 1000 tasks: nothing yet */
    run_many(p, trivial, 0, 1500);
    CHECK_OK(mproc_pool_stats(p, &s));
    CHECK(s.run_mean < 10 * s.overhead_mean);
    CHECK_EQ(count_lines("WARNING", OVERHEAD), 1);
    CHECK_EQ(count_lines("WARNING", "pool Tiny: "), 1);
    CHECK_EQ(count_lines("WARNING", "chunksize"), 1);
    run_many(p, trivial, 0, 1000);
    CHECK_OK(mproc_pool_stats(p, &s));
    mproc_pool_free(p); /* close looks again: still once per pool */
    CHECK_EQ(count_lines("WARNING", OVERHEAD), 1);
    log_done();
}

TEST_T(no_warning_for_tasks_worth_their_dispatch, 60)
{
    log_to_ring();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    run_many(p, sleep_ms, 2, 1000);
    mproc_pool_stat s;
    CHECK_OK(mproc_pool_stats(p, &s));
    CHECK(s.run_mean >= 10 * s.overhead_mean);
    mproc_pool_free(p);
    CHECK_EQ(count_lines("WARNING", OVERHEAD), 0);
    log_done();
}

static int sleep_item(const void *in, void *out, void *arg)
{
    (void)out;
    (void)arg;
    usleep((useconds_t) * (const int *)in * 1000);
    return 0;
}

TEST(info_once_when_a_map_is_not_parallel)
{
    log_to_ring();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 4, .name = "Wide"}));
    /* Every worker up first (tasks, which are not watched): a worker still starting when the
     * parallel map below runs leaves its chunk to another, and the map looks half serial. */
    run_many(p, sleep_ms, 30, 8);
    int in[4] = {30, 30, 30, 30};
    /* Four chunks of 30 ms on four workers: parallel, nothing to say (it would take a 60 ms
     * wall, 30 ms of dispatch delay, to look serial). */
    CHECK_OK(mproc_pool_map(p, sleep_item, in, sizeof *in, NULL, 0, 4,
                            &(mproc_map_opts){.chunksize = 1}));
    CHECK_EQ(count_lines("INFO", SERIAL), 0);
    /* One chunk of 120 ms: one worker of four busy. */
    CHECK_OK(mproc_pool_map(p, sleep_item, in, sizeof *in, NULL, 0, 4,
                            &(mproc_map_opts){.chunksize = 4}));
    CHECK_EQ(count_lines("INFO", SERIAL), 1);
    CHECK_EQ(count_lines("INFO", "too few chunks: 1 for 4 workers"), 1);
    CHECK_EQ(count_lines("INFO", "pool Wide: "), 1);
    CHECK_OK(mproc_pool_map(p, sleep_item, in, sizeof *in, NULL, 0, 4,
                            &(mproc_map_opts){.chunksize = 4}));
    CHECK_EQ(count_lines("INFO", SERIAL), 1); /* once per pool */
    mproc_pool_free(p);
    /* One worker: nothing to say about parallelism. */
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_OK(mproc_pool_map(p, sleep_item, in, sizeof *in, NULL, 0, 4, NULL));
    mproc_pool_free(p);
    CHECK_EQ(count_lines("INFO", SERIAL), 1);
    log_done();
}
