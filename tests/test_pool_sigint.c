/* Ctrl-C during a map: a real child program (this binary re-executed with MPROC_TEST_POOL_CHILD
 * set), in its own process group, gets SIGINT sent to the whole group as a terminal would. The
 * workers ignore it; the program either dies of it (default action) or its handler runs and map
 * returns -EINTR; either way every worker is gone within a second. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- the child program ---- */

static int *started; /* arena: set by the first item (passed as the map's arg, since a
                        forkserver's workers do not see this variable's later value) */
static int report_fd = -1;

static int slow_item(const void *in, void *out, void *arg)
{
    __atomic_store_n((int *)arg, 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    *(int *)out = *(const int *)in;
    return 0;
}

static void *tell_started(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(started, __ATOMIC_SEQ_CST))
        usleep(1000);
    ssize_t w = write(report_fd, "R", 1);
    (void)w;
    return NULL;
}

static void on_sigint(int sig)
{
    (void)sig;
}

static int child_main(const char *mode)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test case */
    report_fd = atoi(getenv("MPROC_TEST_POOL_FD"));
    if (strcmp(mode, "handler") == 0) {
        /* SA_RESTART on purpose: the wait must still come back with EINTR. */
        struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
    started = mproc_shared_alloc(sizeof *started);
    mproc_pool *p;
    if (mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}) < 0) return 10;
    pid_t pids[2];
    if (mproc_pool_worker_pids(p, pids, 2) != 2) return 11;
    char line[64];
    int n = snprintf(line, sizeof line, "%d %d\n", (int)pids[0], (int)pids[1]);
    if (write(report_fd, line, (size_t)n) != n) return 12;
    pthread_t th;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the signal must land in the main thread */
    pthread_create(&th, NULL, tell_started, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    size_t items = 200000;
    int *in = calloc(items, sizeof *in), *out = calloc(items, sizeof *out);
    int r = mproc_pool_map(p, slow_item, in, sizeof *in, out, sizeof *out, items,
                           &(mproc_map_opts){.arg = started});
    pthread_join(th, NULL);
    mproc_pool_terminate(p);
    mproc_pool_free(p);
    free(in);
    free(out);
    return r == -EINTR ? 42 : 13;
}

__attribute__((constructor)) static void maybe_child(void)
{
    const char *mode = getenv("MPROC_TEST_POOL_CHILD");
    if (mode) exit(child_main(mode));
}

/* ---- the test ---- */

static void run_child_and_interrupt(const char *mode, int *status)
{
    int fds[2];
    CHECK_OK(pipe2(fds, O_CLOEXEC));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        int w = dup(fds[1]); /* without O_CLOEXEC: survives the exec */
        char fdnum[16];
        snprintf(fdnum, sizeof fdnum, "%d", w);
        setenv("MPROC_TEST_POOL_FD", fdnum, 1);
        setenv("MPROC_TEST_POOL_CHILD", mode, 1);
        execl("/proc/self/exe", "test_pool_sigint_child", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(fds[1]);
    char buf[128];
    size_t got = 0;
    /* "PID PID\n" then "R" once the map runs */
    double until = harness_now() + 30 * harness_slow();
    while (harness_now() < until && !(memchr(buf, 'R', got))) {
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t n = read(fds[0], buf + got, sizeof buf - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    int w1 = 0, w2 = 0;
    CHECK_EQ(sscanf(buf, "%d %d", &w1, &w2), 2);
    CHECK(strchr(buf, 'R') != NULL);
    CHECK(harness_pid_alive(w1) && harness_pid_alive(w2));
    double t0 = harness_now();
    /* One Ctrl-C, whenever it lands: asleep in a wait or copying between two (the map keeps
     * signals pending until it can act on them). */
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd pf = {.fd = pfd, .events = POLLIN};
    CHECK_OK(kill(-pid, SIGINT));
    int ended = poll(&pf, 1, (int)(10000 * harness_slow()));
    CHECK_EQ(ended, 1);
    close(pfd);
    CHECK_EQ(waitpid(pid, status, 0), pid);
    /* the workers are gone within 1 s of the interrupt */
    double left = 1.0 * harness_slow() - (harness_now() - t0);
    CHECK(harness_wait_gone(w1, left > 0 ? left : 0.01));
    CHECK(harness_wait_gone(w2, left > 0 ? left : 0.01));
    CHECK_BETWEEN(harness_now() - t0, 0, 1.0 * harness_slow());
    close(fds[0]);
}

TEST(ctrl_c_default_action_kills_program_and_workers)
{
    SKIP_IN_THREAD_MODE("workers are threads: nothing to outlive the program");
    int status;
    run_child_and_interrupt("default", &status);
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGINT);
}

TEST(ctrl_c_with_handler_map_returns_eintr)
{
    SKIP_IN_THREAD_MODE("a thread pool's workers may take the signal themselves");
    int status;
    run_child_and_interrupt("handler", &status);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 42);
}
