#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "arena/arena.h"
#include "platform/platform.h"

static int early_fds[2];

/* Waits on an event the parent makes only after this child started. */
static int wait_for_later_event(void *arg)
{
    (void)arg;
    mproc_event *e;
    if (read(early_fds[0], &e, sizeof e) != (ssize_t)sizeof e) return 2;
    return mproc_event_wait(e, 30.0) == 0 ? 7 : 1;
}

/* The first thing the program does is start a child: the arena must already exist in it, or the
 * objects made afterwards would live in a mapping the child does not share. */
TEST(child_started_before_the_first_allocation_shares_later_objects)
{
    CHECK(!mproc__arena_ready());
    CHECK_EQ(pipe(early_fds), 0);
    mproc_process *p = harness_start(wait_for_later_event, NULL);
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK_OK(mproc_event_set(e));
    CHECK_EQ(write(early_fds[1], &e, sizeof e), (ssize_t)sizeof e);
    CHECK_EQ(harness_join(p), 7);
    mproc_event_free(e);
    close(early_fds[0]);
    close(early_fds[1]);
}

static int ret_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int sleep_forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* A body that runs until the flag it is given becomes non-zero: ends the same way in every start
 * method (a thread cannot be killed). */
static int until_flag(void *arg)
{
    _Atomic uint32_t *flag = arg;
    while (!atomic_load(flag))
        mproc__futex_wait(flag, 0, INT64_MAX);
    return 4;
}

static _Atomic uint32_t *new_flag(void)
{
    _Atomic uint32_t *f = mproc_shared_alloc(sizeof *f);
    CHECK(f != NULL);
    return f;
}

static void raise_flag(_Atomic uint32_t *f)
{
    atomic_store(f, 1);
    mproc__futex_wake(f, INT32_MAX);
}

static int segfault(void *arg)
{
    (void)arg;
    volatile int *p = NULL;
    raise(SIGSEGV); /* in case the compiler drops the store below under a sanitizer */
    return *p;
}

TEST(exit_codes_from_return)
{
    mproc_process *a = harness_start(ret_arg, (void *)0), *b = harness_start(ret_arg, (void *)8);
    CHECK_EQ(harness_join(a), 0);
    CHECK_EQ(harness_join(b), 8);
}

TEST(exit_codes_from_signals)
{
    SKIP_IN_THREAD_MODE("a thread cannot be signalled or crash on its own");
    mproc_process *t = harness_start(sleep_forever, NULL);
    mproc_process *k = harness_start(sleep_forever, NULL);
    mproc_process *i = harness_start(sleep_forever, NULL);
    mproc_process *s = harness_start(segfault, NULL);
    CHECK_OK(mproc_process_terminate(t));
    CHECK_OK(mproc_process_kill(k));
    CHECK_OK(mproc_process_interrupt(i));
    CHECK_EQ(harness_wait(t), -SIGTERM);
    CHECK_EQ(harness_wait(k), -SIGKILL);
    CHECK_EQ(harness_wait(i), -SIGINT);
    CHECK_EQ(harness_wait(s), -SIGSEGV);
    /* Signalling a process that has ended is not an error, as in Python. */
    CHECK_OK(mproc_process_terminate(t));
    mproc_process_free(t);
    mproc_process_free(k);
    mproc_process_free(i);
    mproc_process_free(s);
}

TEST(join_timeout_and_exitcode_while_running)
{
    _Atomic uint32_t *flag = new_flag();
    mproc_process *p = harness_start(until_flag, (void *)flag);
    int code;
    double t0 = harness_now();
    CHECK_RC(mproc_process_join(p, 0), -ETIMEDOUT);
    CHECK(harness_now() - t0 < 0.05 * harness_slow());
    t0 = harness_now();
    CHECK_RC(mproc_process_join(p, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 0.3 * harness_slow());
    CHECK(mproc_process_is_alive(p));
    CHECK_RC(mproc_process_exitcode(p, &code), -EAGAIN);
    raise_flag(flag);
    CHECK_OK(mproc_process_join(p, 5));
    CHECK(!mproc_process_is_alive(p));
    CHECK_OK(mproc_process_exitcode(p, &code));
    CHECK_EQ(code, 4);
    mproc_process_free(p);
    mproc_shared_free((void *)flag);
}

TEST(sentinel_readable_after_exit)
{
    _Atomic uint32_t *flag = new_flag();
    mproc_process *p = harness_start(until_flag, (void *)flag);
    int fd = mproc_process_sentinel(p);
    CHECK(fd >= 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&pfd, 1, 0), 0);
    raise_flag(flag);
    double t0 = harness_now();
    CHECK_EQ(poll(&pfd, 1, (int)(1000 * harness_slow())), 1);
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    CHECK_OK(mproc_process_join(p, 1));
    mproc_process_free(p);
    mproc_shared_free((void *)flag);
}

/* The child reports its name and whether mproc_parent_pid() is the pid its parent wrote first. */
struct report {
    pid_t parent;
    char text[64];
};

static int report_name(void *arg)
{
    struct report *r = arg;
    snprintf(r->text, sizeof r->text, "%s|%d", mproc_current_name(),
             mproc_parent_pid() == r->parent);
    return 0;
}

TEST(names_and_identity)
{
    struct report *shared = mproc_shared_alloc(sizeof *shared);
    CHECK(shared != NULL);
    shared->parent = getpid();
    CHECK(strcmp(mproc_current_name(), "MainProcess") == 0);
    CHECK_EQ(mproc_parent_pid(), 0);
    mproc_process *a, *b;
    CHECK_OK(mproc_process_new(&a, &(mproc_process_opts){.run = report_name, .arg = shared}));
    CHECK_OK(mproc_process_new(&b, &(mproc_process_opts){.run = ret_arg, .name = "worker"}));
    CHECK(strncmp(mproc_process_name(a), "Process-", 8) == 0);
    CHECK(strcmp(mproc_process_name(b), "worker") == 0);
    CHECK_OK(mproc_process_start(a));
    CHECK_EQ(harness_wait(a), 0);
    char expect[80];
    snprintf(expect, sizeof expect, "%s|1", mproc_process_name(a));
    CHECK(strcmp(shared->text, expect) == 0);
    mproc_process_free(a);
    mproc_process_free(b);
    mproc_shared_free(shared);
}

static int grandchild_name(void *arg)
{
    struct report *r = arg;
    r->parent = getpid();
    mproc_process *p;
    if (mproc_process_new(&p, &(mproc_process_opts){.run = report_name, .arg = arg}) < 0) return 1;
    if (mproc_process_start(p) < 0 || mproc_process_join(p, MPROC_FOREVER) < 0) return 2;
    mproc_process_free(p);
    return 0;
}

TEST(child_names_nest_like_python)
{
    struct report *shared = mproc_shared_alloc(sizeof *shared);
    mproc_process *a = harness_start(grandchild_name, shared);
    CHECK_EQ(harness_wait(a), 0);
    char expect[80];
    snprintf(expect, sizeof expect, "Process-%s:1|1", mproc_process_name(a) + 8);
    CHECK(strcmp(shared->text, expect) == 0);
    mproc_process_free(a);
    mproc_shared_free(shared);
}

TEST(run_in_caller)
{
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, &(mproc_process_opts){.run = ret_arg, .arg = (void *)7}));
    CHECK_EQ(mproc_process_run(p), 7);
    CHECK_EQ(mproc_process_pid(p), 0);
    mproc_process_free(p);
}

TEST(hundred_children)
{
    enum { N = 100 };
    mproc_process *ps[N];
    mproc_process *warm = harness_start(ret_arg, NULL); /* the library's own fds exist from here */
    CHECK_EQ(harness_join(warm), 0);
    int fds = harness_fd_count();
    for (int i = 0; i < N; i++)
        ps[i] = harness_start(ret_arg, (void *)(intptr_t)(i % 50));
    for (int i = 0; i < N; i++)
        CHECK_EQ(harness_join(ps[i]), i % 50);
    CHECK_EQ(harness_fd_count(), fds);
    CHECK_OK(mproc_shutdown());
    CHECK_EQ(harness_child_count(getpid()), 0);
}

TEST(hundred_children_terminated)
{
    SKIP_IN_THREAD_MODE("a thread cannot be terminated");
    enum { N = 100 };
    mproc_process *ps[N];
    for (int i = 0; i < N; i++)
        ps[i] = harness_start(sleep_forever, NULL);
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_process_terminate(ps[i]));
    for (int i = 0; i < N; i++)
        CHECK_EQ(harness_join(ps[i]), -SIGTERM);
    CHECK_OK(mproc_shutdown());
    CHECK_EQ(harness_child_count(getpid()), 0);
}

static int stdin_is_devnull(void *arg)
{
    char c;
    return read(STDIN_FILENO, &c, 1) == 0 ? 0 : 1;
}

TEST(child_stdin_is_dev_null)
{
    SKIP_IN_THREAD_MODE("a thread shares its process's stdin");
    mproc_process *p = harness_start(stdin_is_devnull, NULL);
    CHECK_EQ(harness_join(p), 0);
}

/* A middle process starts daemonic and non-daemonic children, reports their pids, then dies by
 * SIGKILL: both kinds must not outlive it (daemons by SIGKILL, the others by SIGTERM). */
static int spawn_and_wait(void *arg)
{
    pid_t *pids = arg;
    mproc_process *d =
        harness_start_opts(&(mproc_process_opts){.run = sleep_forever, .daemon = true});
    mproc_process *n = harness_start(sleep_forever, NULL);
    pids[0] = mproc_process_pid(d);
    __atomic_store_n(&pids[1], mproc_process_pid(n), __ATOMIC_RELEASE);
    for (;;)
        pause();
    return 0;
}

TEST(parent_killed_children_follow)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed");
    pid_t *pids = mproc_shared_alloc(2 * sizeof(pid_t));
    mproc_process *mid = harness_start(spawn_and_wait, pids);
    double until = harness_now() + 10;
    while (!__atomic_load_n(&pids[1], __ATOMIC_ACQUIRE) && harness_now() < until)
        usleep(1000);
    CHECK(pids[0] > 0 && pids[1] > 0);
    CHECK(harness_pid_alive(pids[0]) && harness_pid_alive(pids[1]));
    CHECK_OK(mproc_process_kill(mid));
    CHECK_EQ(harness_wait(mid), -SIGKILL);
    CHECK(harness_wait_gone(pids[0], 1.0 * harness_slow()));
    CHECK(harness_wait_gone(pids[1], 1.0 * harness_slow()));
    mproc_process_free(mid);
    mproc_shared_free(pids);
}

/* A process that returns from its body with children still running: the non-daemonic child is
 * joined before it exits, the daemonic one is ended. */
static int short_child(void *arg)
{
    usleep(100000);
    *(int *)arg = 42;
    return 0;
}

/* Still reachable when the body returns, on purpose (not static: stores to a static array that is
 * never read would be optimised away). */
mproc_process *left_running[2];

static int exit_with_children(void *arg)
{
    int *flag = arg;
    left_running[0] = harness_start(short_child, flag);
    left_running[1] =
        harness_start_opts(&(mproc_process_opts){.run = sleep_forever, .daemon = true});
    return 5;
}

TEST(exit_joins_non_daemons_and_ends_daemons)
{
    SKIP_IN_THREAD_MODE("a process run as a thread leaves its children to the program's exit");
    int *flag = mproc_shared_alloc(sizeof(int));
    mproc_process *p = harness_start(exit_with_children, flag);
    CHECK_EQ(harness_join(p), 5);
    CHECK_EQ(*flag, 42);
    mproc_shared_free(flag);
}

TEST(free_running_process_detaches)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed");
    mproc_process *p = harness_start(sleep_forever, NULL);
    pid_t pid = mproc_process_pid(p);
    kill(pid, SIGKILL);
    mproc_process_free(p);
    /* The detached child is reaped by the next start. */
    CHECK(harness_wait_gone(pid, 5));
    mproc_process *q = harness_start(ret_arg, NULL);
    CHECK_EQ(harness_join(q), 0);
    CHECK_OK(mproc_shutdown());
    CHECK_EQ(harness_child_count(getpid()), 0);
}

TEST(host_children_are_not_stolen)
{
    /* The library must not reap children it did not start. */
    pid_t host = fork();
    if (host == 0) _exit(9);
    mproc_process *p = harness_start(ret_arg, (void *)1);
    CHECK_EQ(harness_join(p), 1);
    int status;
    CHECK_EQ(waitpid(host, &status, 0), host);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 9);
}

/* 1 if SIGUSR2 is blocked in the child, 0 if not. */
static int usr2_blocked(void *arg)
{
    (void)arg;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, SIGUSR2);
}

TEST(child_starts_with_the_starting_threads_mask)
{
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old);
    mproc_process *p = harness_start(usr2_blocked, NULL);
    CHECK_EQ(harness_join(p), 1);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    p = harness_start(usr2_blocked, NULL);
    CHECK_EQ(harness_join(p), 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int sleep_long(void *arg)
{
    (void)arg;
    sleep(30);
    return 0;
}

TEST(a_plain_fork_of_the_parent_does_not_own_its_children)
{
    SKIP_IN_THREAD_MODE("a thread cannot be killed alone");
    /* The library keeps its pid without a system call per use: a fork() of the program must
     * still make the child a process of its own, not the owner of its parent's children. */
    mproc_process *p = harness_start(sleep_long, NULL);
    CHECK(mproc_process_is_alive(p));
    pid_t host = fork();
    if (host == 0) {
        int r = mproc_process_join(p, 0);
        bool alive = mproc_process_is_alive(p);
        int code;
        int e = mproc_process_exitcode(p, &code);
        _exit(r == -ECHILD && !alive && e == -ECHILD ? 0 : 1);
    }
    int status;
    CHECK_EQ(waitpid(host, &status, 0), host);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(mproc_process_is_alive(p));
    CHECK_OK(mproc_process_kill(p));
    CHECK_EQ(harness_join(p), -SIGKILL);
}

TEST(bad_input)
{
    mproc_process *p = NULL;
    CHECK_RC(mproc_process_new(NULL, &(mproc_process_opts){.run = ret_arg}), -EINVAL);
    CHECK_RC(mproc_process_new(&p, NULL), -EINVAL);
    CHECK_RC(mproc_process_new(&p, &(mproc_process_opts){.run = NULL}), -EINVAL);
    char longname[100];
    memset(longname, 'x', sizeof longname - 1);
    longname[99] = '\0';
    CHECK_RC(mproc_process_new(&p, &(mproc_process_opts){.run = ret_arg, .name = longname}),
             -EINVAL);
    CHECK_RC(mproc_process_start(NULL), -EINVAL);
    CHECK_RC(mproc_process_join(NULL, 0), -EINVAL);
    CHECK_RC(mproc_process_terminate(NULL), -EINVAL);
    CHECK(!mproc_process_is_alive(NULL));
    CHECK_RC(mproc_process_sentinel(NULL), -EINVAL);
    mproc_process_free(NULL);
    CHECK_OK(mproc_process_new(&p, &(mproc_process_opts){.run = ret_arg}));
    int code;
    CHECK_RC(mproc_process_join(p, 0), -EINVAL);
    CHECK_RC(mproc_process_exitcode(p, &code), -EAGAIN);
    CHECK_RC(mproc_process_kill(p), -EINVAL);
    CHECK_OK(mproc_process_start(p));
    CHECK_RC(mproc_process_start(p), -EINVAL);
    CHECK_OK(mproc_process_join(p, MPROC_FOREVER));
    mproc_process_free(p);
}
