/* What is particular to each start method; the process suite itself runs under all three. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena/arena.h"
#include "harness.h"
#include "platform/platform.h"
#include "process/process.h"
#include "process/start_method.h"

/* ---- forkserver: safe for a parent whose threads hold locks ---- */

static pthread_mutex_t busy_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool stop_busy;

static void *busy(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_busy)) {
        pthread_mutex_lock(&busy_mu);
        for (volatile int i = 0; i < 20000; i++) {
        }
        pthread_mutex_unlock(&busy_mu);
    }
    return NULL;
}

/* A forked copy of a parent whose thread held busy_mu would wait for it forever. */
static int take_busy_lock(void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_mutex_timedlock(&busy_mu, &ts) != 0) return 1;
    pthread_mutex_unlock(&busy_mu);
    return 0;
}

TEST_T(forkserver_children_of_a_threaded_parent_do_not_inherit_held_locks, 120)
{
    unsetenv("MPROC_START");
    CHECK_OK(mproc_init(&(mproc_config){.start_method = "forkserver"}));
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, busy, NULL), 0);
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(harness_join(harness_start(take_busy_lock, NULL)), 0);
    }
    atomic_store(&stop_busy, true);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
}

static int ret7(void *arg)
{
    (void)arg;
    return 7;
}

TEST(forkserver_restarts_after_its_helper_dies)
{
    unsetenv("MPROC_START");
    mproc_process_opts fs = {.run = ret7, .start_method = "forkserver"};
    CHECK_EQ(harness_join(harness_start_opts(&fs)), 7);
    pid_t helper = mproc__forkserver_pid();
    CHECK(helper > 0);
    CHECK_EQ(kill(helper, SIGKILL), 0);
    CHECK(harness_wait_gone(helper, 5));
    CHECK_EQ(harness_join(harness_start_opts(&fs)), 7);
    CHECK(mproc__forkserver_pid() != helper);
}

static int check_copy(void *arg)
{
    return strcmp(arg, "copied for the child") == 0 ? 0 : 1;
}

TEST(arg_size_copies_the_argument_for_every_method)
{
    unsetenv("MPROC_START");
    const char *methods[] = {"fork", "forkserver", "thread"};
    for (int i = 0; i < 3; i++) {
        char *heap = strdup("copied for the child");
        mproc_process *p = harness_start_opts(&(mproc_process_opts){.run = check_copy,
                                                                    .arg = heap,
                                                                    .arg_size = strlen(heap) + 1,
                                                                    .start_method = methods[i]});
        free(heap); /* the child has its own copy */
        CHECK_EQ(harness_join(p), 0);
    }
}

static int report_name(void *arg)
{
    snprintf(arg, 64, "%s", mproc_current_name());
    return 0;
}

TEST(env_overrides_the_requested_method)
{
    setenv("MPROC_START", "thread", 1);
    char *name = mproc_shared_alloc(64);
    mproc_process *p = harness_start_opts(
        &(mproc_process_opts){.run = report_name, .arg = name, .start_method = "fork"});
    /* A thread runs in this process: its pid is ours. */
    CHECK_EQ(mproc_process_pid(p), getpid());
    CHECK_EQ(harness_wait(p), 0);
    CHECK(strcmp(name, mproc_process_name(p)) == 0);
    CHECK(strcmp(mproc_current_name(), "MainProcess") == 0);
    mproc_process_free(p);
    mproc_shared_free(name);
}

static int wait_forever(void *arg)
{
    _Atomic uint32_t *flag = arg;
    while (!atomic_load(flag))
        mproc__futex_wait(flag, 0, INT64_MAX);
    return 0;
}

TEST(thread_mode_refuses_signals)
{
    unsetenv("MPROC_START");
    _Atomic uint32_t *flag = mproc_shared_alloc(sizeof *flag);
    mproc_process *p = harness_start_opts(
        &(mproc_process_opts){.run = wait_forever, .arg = (void *)flag, .start_method = "thread"});
    CHECK_RC(mproc_process_terminate(p), -ENOTSUP);
    CHECK_RC(mproc_process_kill(p), -ENOTSUP);
    CHECK_RC(mproc_process_interrupt(p), -ENOTSUP);
    atomic_store(flag, 1);
    mproc__futex_wake(flag, 1);
    CHECK_EQ(harness_wait(p), 0);
    CHECK_OK(mproc_process_terminate(p)); /* ended: nothing to do, as for a process */
    mproc_process_free(p);
    mproc_shared_free((void *)flag);
}

TEST(unknown_method_is_refused)
{
    unsetenv("MPROC_START");
    mproc_process *p;
    CHECK_RC(mproc_process_new(&p, &(mproc_process_opts){.run = ret7, .start_method = "spawnish"}),
             -EINVAL);
    setenv("MPROC_START", "bogus", 1);
    CHECK_RC(mproc_process_new(&p, &(mproc_process_opts){.run = ret7}), -EINVAL);
}

/* ---- without mproc_init: when the forkserver helper is forked ---- */

/* arg is a copy (arg_size) of the write end's handle, a pointer into the heap of the program as
 * it was when the helper was forked. */
static int send_on_inherited_pipe(void *arg)
{
    mproc_conn *w = *(mproc_conn **)arg;
    return mproc_conn_send(w, "inherited", 9) == 0 ? 7 : 1;
}

/* Without mproc_init the process layer sets itself up at the first process or pool, not at the
 * first use of the arena: the helper is forked then, so a pipe made before the first process, and
 * after the arena is in use, is in the helper and so in its children. A helper forked at the
 * arena's first use would show as a pid before any process exists, and its children would not
 * have the pipe (neither its fd nor its handle in the heap): the send fails or faults. */
TEST(forkserver_helper_is_forked_at_the_first_process_not_the_first_arena_use)
{
    /* A fresh library: each case is a fork of the harness, which never uses it. */
    CHECK(!mproc__arena_ready());
    CHECK(!mproc__process_layer_started());
    setenv("MPROC_START", "forkserver", 1);
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK_OK(mproc_event_set(e));
    CHECK(mproc_event_is_set(e));
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, NULL));
    CHECK_OK(mproc_queue_put(q, "q", 1, 0));
    char c;
    CHECK_OK(mproc_queue_get(q, &c, 1, NULL, 0));
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, false));
    CHECK(mproc__arena_ready());
    CHECK_EQ(mproc__forkserver_pid(), 0);
    CHECK(!mproc__process_layer_started());

    mproc_process *p;
    CHECK_OK(mproc_process_new(
        &p, &(mproc_process_opts){.run = send_on_inherited_pipe, .arg = &w, .arg_size = sizeof w}));
    pid_t helper = mproc__forkserver_pid();
    CHECK(helper > 0); /* forked by the creation, before the start */
    CHECK_OK(mproc_process_start(p));
    CHECK_EQ(harness_join(p), 7);
    CHECK_EQ(mproc__forkserver_pid(), helper);
    char buf[16];
    size_t n = 0;
    CHECK_OK(mproc_conn_recv(r, buf, sizeof buf, &n, 0)); /* sent before the child ended */
    CHECK_EQ(n, 9);
    CHECK(memcmp(buf, "inherited", 9) == 0);
    mproc_conn_close(r);
    mproc_conn_close(w);
    mproc_queue_free(q);
    mproc_event_free(e);
}
