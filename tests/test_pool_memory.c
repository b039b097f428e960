/* max_memory_per_child: a worker whose resident set passed the limit after a task is replaced
 * before its next task; one under it is kept. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static size_t resident(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    unsigned long size, pages;
    CHECK(fscanf(f, "%lu %lu", &size, &pages) == 2);
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Returns its worker's pid; with a nonzero argument first leaks that many MiB, touched. */
static int pid_task(mproc_task *t)
{
    const int *mib = mproc_task_arg(t, NULL);
    if (*mib) {
        size_t n = (size_t)*mib << 20;
        char *leak = malloc(n);
        if (!leak) return -ENOMEM;
        memset(leak, 1, n);
        __asm__ volatile("" : : "r"(leak) : "memory"); /* kept: the leak is the point */
    }
    pid_t pid = getpid();
    return mproc_task_return(t, &pid, sizeof pid);
}

static pid_t run_on(mproc_pool *p, int mib)
{
    pid_t pid = 0;
    CHECK_OK(mproc_pool_apply(p, pid_task, &mib, sizeof mib, &pid, sizeof pid, NULL));
    return pid;
}

TEST(worker_past_the_limit_is_replaced)
{
    SKIP_IN_THREAD_MODE("a thread pool's RSS is the whole process's: the limit is ignored");
    /* The limit: what a worker has from its start (about what we have), plus 64 MiB. */
    size_t limit = resident() + ((size_t)64 << 20);
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .max_memory_per_child = limit}));
    pid_t a = run_on(p, 0), b = run_on(p, 1);
    CHECK_EQ(a, b);          /* under the limit: the same worker */
    pid_t c = run_on(p, 96); /* past it after this task */
    CHECK_EQ(c, a);
    pid_t d = run_on(p, 0);
    CHECK(d != c); /* replaced before its next task */
    CHECK_EQ(run_on(p, 0), d);
    mproc_pool_stat s;
    CHECK_OK(mproc_pool_stats(p, &s));
    CHECK_EQ(s.worker_deaths, 0); /* a retirement, not a death */
    CHECK_EQ(s.done, 5);
    CHECK_EQ(s.failed, 0);
    mproc_pool_free(p);
}

TEST(thread_pool_ignores_the_limit)
{
    if (strcmp(harness_method(), "thread") != 0) harness_skip("thread pools only");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .max_memory_per_child = 1}));
    pid_t before, after;
    CHECK_EQ(mproc_pool_worker_pids(p, &before, 1), 1);
    run_on(p, 0);
    run_on(p, 0);
    CHECK_EQ(mproc_pool_worker_pids(p, &after, 1), 1);
    CHECK_EQ(before, after); /* the same worker thread, though the process is past 1 byte */
    mproc_pool_free(p);
}
