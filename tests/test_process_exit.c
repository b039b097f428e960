/* Processes: the end of a process with children and pools alive. Exit, mproc_shutdown() and a
 * child's return stop the pools first (no worker replaced), then the other children; a process the
 * library did not start (a plain fork() of the program) acts on none of them when it exits. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "process/process.h"

/* Publishes that it runs through the event in its argument, then waits to be cancelled. */
static int wait_cancelled_task(mproc_task *t)
{
    mproc_event *running = *(mproc_event *const *)mproc_task_arg(t, NULL);
    mproc_event_set(running);
    for (int i = 0; i < 30000 && !mproc_task_cancelled(t); i++)
        usleep(1000);
    return 0;
}

/* A child that makes a pool, waits until a task runs in it, and returns with the pool alive. */
static int child_with_live_pool(void *arg)
{
    (void)arg;
    mproc_event *running;
    if (mproc_event_new(&running) < 0) return 20;
    mproc_pool *p;
    if (mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}) < 0) return 21;
    mproc_future *f;
    if (mproc_pool_submit(p, wait_cancelled_task, &running, sizeof running, &f) < 0) return 22;
    if (mproc_event_wait(running, 30) < 0) return 23;
    mproc_event_free(running);
    return 0;
}

TEST_T(child_returning_with_live_pool_exits_promptly, 120)
{
    SKIP_IN_THREAD_MODE("a process run as a thread does not end its children when it returns");
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        mproc_process *c = harness_start(child_with_live_pool, NULL);
        double t0 = harness_now();
        CHECK_OK(mproc_process_join(c, 30 * harness_slow()));
        double dt = harness_now() - t0;
        if (dt > worst) worst = dt;
        int code = -1;
        CHECK_OK(mproc_process_exitcode(c, &code));
        CHECK_EQ(code, 0);
        mproc_process_free(c);
    }
    /* Its end kills the workers (SIGKILL, no grace): well under the 0.5 s daemon grace. */
    CHECK_BETWEEN(worst, 0, 2 * harness_slow());
}

TEST(shutdown_with_running_task_stops_pool_first)
{
    mproc_event *running;
    CHECK_OK(mproc_event_new(&running));
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, wait_cancelled_task, &running, sizeof running, &f));
    CHECK_OK(mproc_event_wait(running, 30));
    double t0 = harness_now();
    CHECK_OK(mproc_shutdown());
    CHECK_BETWEEN(harness_now() - t0, 0, 2 * harness_slow());
    /* The task failed as for a terminate; no worker was replaced, none is left. */
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 5), MPROC_ECANCELLED);
    CHECK_EQ(mproc_pool_worker_pids(p, NULL, 0), 0);
    mproc_future *g;
    CHECK_RC(mproc_pool_submit(p, wait_cancelled_task, &running, sizeof running, &g),
             MPROC_ECLOSED);
    mproc_future_free(f);
    mproc_pool_free(p);
    mproc_event_free(running);
}

/* Waits for the event in its argument, then exits with 7. */
static int wait_then_7(void *arg)
{
    mproc_event *go = arg;
    return mproc_event_wait(go, 60) == 0 ? 7 : 1;
}

TEST(plain_fork_child_exit_leaves_library_children_alone)
{
    mproc_event *go;
    CHECK_OK(mproc_event_new(&go));
    mproc_process *a = harness_start(wait_then_7, go);
    pid_t helper = mproc__forkserver_pid();
    fflush(stdout);
    fflush(stderr);
    double t0 = harness_now();
    pid_t pid = fork();
    if (pid == 0) exit(0); /* the exit handlers run here, in a process the library did not start */
    CHECK(pid > 0);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK_BETWEEN(harness_now() - t0, 0, 1 * harness_slow());
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (helper) {
        CHECK(harness_pid_alive(helper));
        CHECK_EQ(mproc__forkserver_pid(), helper);
    }
    CHECK(mproc_process_is_alive(a));
    CHECK_OK(mproc_event_set(go));
    CHECK_EQ(harness_join(a), 7);
    mproc_event_free(go);
}

static int quick_task(mproc_task *t)
{
    (void)t;
    return 0;
}

static void exit_3(mproc_future *f, void *arg)
{
    (void)f;
    (void)arg;
    exit(3);
}

/* A child whose done-callback (run by the pool's supervisor thread) calls exit(): the exit stops
 * that very pool, which must not wait for its own supervisor. */
static int child_exits_in_callback(void *arg)
{
    (void)arg;
    mproc_pool *p;
    if (mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}) < 0) return 21;
    mproc_future *f;
    if (mproc_pool_submit(p, quick_task, NULL, 0, &f) < 0) return 22;
    if (mproc_future_on_done(f, exit_3, NULL) < 0) return 23;
    for (int i = 0; i < 30000; i++)
        usleep(1000);
    return 24;
}

TEST(exit_from_a_done_callback_does_not_hang)
{
    SKIP_IN_THREAD_MODE("exit() in a thread-mode child ends the whole program");
    mproc_process *c = harness_start(child_exits_in_callback, NULL);
    double t0 = harness_now();
    CHECK_OK(mproc_process_join(c, 20 * harness_slow()));
    CHECK_BETWEEN(harness_now() - t0, 0, 2 * harness_slow());
    int code = -1;
    CHECK_OK(mproc_process_exitcode(c, &code));
    CHECK_EQ(code, 3);
    mproc_process_free(c);
}
