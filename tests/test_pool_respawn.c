/* Pool: what a replacement worker starts with. A worker that replaces a crashed, timed-out or
 * recycled one is started by the pool's supervisor thread (which blocks every signal), yet it must
 * start with the program's signal mask and dispositions, must not print the program's buffered
 * output again, and its crash report must not land in a file of the task. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* What a task sees of its worker's signal state. */
typedef struct {
    uint64_t blocked; /* signal s as bit s - 1 */
    int usr1_ignored, term_default;
    pid_t pid;
} sig_report;

static uint64_t mask_bits(const sigset_t *set)
{
    uint64_t bits = 0;
    for (int s = 1; s < 65; s++)
        if (sigismember(set, s) == 1) bits |= (uint64_t)1 << (s - 1);
    return bits;
}

static int report_signals(mproc_task *t)
{
    sig_report r = {0};
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    r.blocked = mask_bits(&cur);
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    r.usr1_ignored = sa.sa_handler == SIG_IGN;
    sigaction(SIGTERM, NULL, &sa);
    r.term_default = sa.sa_handler == SIG_DFL;
    r.pid = getpid();
    return mproc_task_return(t, &r, sizeof r);
}

static int crash_task(mproc_task *t)
{
    (void)t;
    raise(SIGSEGV);
    return 0;
}

static int sleep_task(mproc_task *t)
{
    const double *s = mproc_task_arg(t, NULL);
    double t0 = harness_now();
    while (harness_now() - t0 < *s && !mproc_task_cancelled(t))
        usleep(1000);
    return 0;
}

static int nothing_task(mproc_task *t)
{
    (void)t;
    return 0;
}

/* The program's state for these cases: SIGUSR2 blocked in the thread that makes the pool, SIGUSR1
 * ignored after the pool (and the forkserver helper) exist. */
static uint64_t program_state(void)
{
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return mask_bits(&cur);
}

/* The report of a worker started after SIGUSR1 was ignored; `first` (n of them) were started
 * before, so they may not have it. */
static void check_report_but(mproc_future *f, uint64_t want_mask, const pid_t *first, int n)
{
    sig_report r;
    CHECK_OK(mproc_future_get(f, &r, sizeof r, NULL, 30));
    bool early = false;
    for (int i = 0; i < n; i++)
        early |= r.pid == first[i];
    if (r.blocked != want_mask)
        harness_fail(__FILE__, __LINE__, "worker %d blocks %#llx, the program %#llx", (int)r.pid,
                     (unsigned long long)r.blocked, (unsigned long long)want_mask);
    CHECK(early || r.usr1_ignored);
    CHECK(r.term_default);
}

static void check_report(mproc_future *f, uint64_t want_mask)
{
    check_report_but(f, want_mask, NULL, 0);
}

static void restore_program_state(void)
{
    signal(SIGUSR1, SIG_DFL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
}

TEST(replacement_after_crash_has_program_signals)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    uint64_t want = program_state();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    signal(SIGUSR1, SIG_IGN);
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, crash_task, NULL, 0, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    mproc_future_free(f);
    /* In the replacement: a second crash is a crash (not a blocked signal and a "success"). */
    CHECK_OK(mproc_pool_submit(p, crash_task, NULL, 0, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
    mproc_error e;
    CHECK_OK(mproc_future_error(f, &e));
    CHECK_EQ(e.signal, SIGSEGV);
    CHECK(strstr(e.message, "backtrace:") != NULL);
    mproc_future_free(f);
    CHECK_OK(mproc_pool_submit(p, report_signals, NULL, 0, &f));
    check_report(f, want);
    mproc_future_free(f);
    mproc_pool_free(p);
    restore_program_state();
}

TEST(replacement_after_time_limit_has_program_signals)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed: hard limits become cancel requests");
    uint64_t want = program_state();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    signal(SIGUSR1, SIG_IGN);
    double secs = 30;
    mproc_future *f;
    CHECK_OK(mproc_pool_submit_opts(p, sleep_task, &secs, sizeof secs,
                                    &(mproc_submit_opts){.timeout = 0.2}, &f));
    CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_ETIMELIMIT);
    mproc_future_free(f);
    CHECK_OK(mproc_pool_submit(p, report_signals, NULL, 0, &f));
    check_report(f, want);
    mproc_future_free(f);
    mproc_pool_free(p);
    restore_program_state();
}

TEST(recycled_workers_have_program_signals)
{
    uint64_t want = program_state();
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .max_tasks_per_child = 1}));
    pid_t first[2];
    int nfirst = mproc_pool_worker_pids(p, first, 2);
    CHECK_EQ(nfirst, 2);
    signal(SIGUSR1, SIG_IGN);
    /* The first two may run in the workers made by this thread; the rest run in replacements. */
    enum { N = 12 };
    mproc_future *fs[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(mproc_pool_submit(p, report_signals, NULL, 0, &fs[i]));
    for (int i = 0; i < N; i++) {
        check_report_but(fs[i], want, first, strcmp(harness_method(), "thread") ? 2 : 0);
        mproc_future_free(fs[i]);
    }
    mproc_pool_free(p);
    restore_program_state();
}

/* A process started from a task: the program's dispositions (not the worker's SIGINT and crash
 * handlers) and mask; then it waits to be terminated. */
static int grandchild(void *arg)
{
    (void)arg;
    struct sigaction sa;
    sigaction(SIGINT, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) return 10;
    sigaction(SIGSEGV, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) return 11;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (sigismember(&cur, SIGTERM)) return 12;
    for (int i = 0; i < 30000; i++)
        usleep(1000);
    return 13;
}

static int start_and_terminate_task(mproc_task *t)
{
    mproc_process *c;
    int code = -1000;
    int r = mproc_process_new(&c, &(mproc_process_opts){.run = grandchild});
    if (r == 0) r = mproc_process_start(c);
    if (r == 0) {
        /* Either it returned at once (a wrong state) or it is waiting: terminate it. */
        usleep(20000);
        r = mproc_process_terminate(c);
        if (r == 0) r = mproc_process_join(c, 10);
        if (r == 0) r = mproc_process_exitcode(c, &code);
    }
    mproc_process_free(c);
    if (r < 0) return r;
    return mproc_task_return(t, &code, sizeof code);
}

TEST(process_started_in_a_replacement_can_be_terminated)
{
    SKIP_IN_THREAD_MODE("a thread cannot be terminated");
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .max_tasks_per_child = 1}));
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(p, nothing_task, NULL, 0, &f));
    CHECK_OK(mproc_future_get(f, NULL, 0, NULL, 30));
    mproc_future_free(f);
    CHECK_OK(mproc_pool_submit(p, start_and_terminate_task, NULL, 0, &f));
    int code = 0;
    CHECK_OK(mproc_future_get(f, &code, sizeof code, NULL, 60));
    CHECK_EQ(code, -SIGTERM);
    mproc_future_free(f);
    mproc_pool_free(p);
}

static long count_lines(const char *path)
{
    FILE *in = fopen(path, "r");
    CHECK(in != NULL);
    long n = 0;
    for (int c; (c = getc(in)) != EOF;)
        n += c == '\n';
    fclose(in);
    return n;
}

TEST(buffered_output_is_not_printed_twice)
{
    char path[] = "/tmp/mproc-respawn-out-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    CHECK(saved >= 0);
    CHECK(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
    close(fd);
    /* Fully buffered, as for a file: the lines sit in the buffer while workers are forked. */
    static char buf[1 << 16];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    enum { LINES = 200, BEFORE = 20, TASKS = 100 };
    /* Unflushed when the pool (and a forkserver helper) is made. */
    for (int i = 0; i < BEFORE; i++)
        printf("line %d before the pool\n", i);
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2, .max_tasks_per_child = 1}));
    mproc_future *fs[TASKS];
    int queued = 0;
    for (int i = BEFORE; i < LINES; i++) {
        printf("line %d from main while workers are replaced\n", i);
        if (queued < TASKS) CHECK_OK(mproc_pool_submit(p, nothing_task, NULL, 0, &fs[queued++]));
        usleep(200);
    }
    for (int i = 0; i < queued; i++) {
        CHECK_OK(mproc_future_get(fs[i], NULL, 0, NULL, 60));
        mproc_future_free(fs[i]);
    }
    mproc_pool_free(p);
    fflush(stdout);
    CHECK(dup2(saved, STDOUT_FILENO) == STDOUT_FILENO);
    close(saved);
    setvbuf(stdout, NULL, _IOLBF, 0);
    long n = count_lines(path);
    unlink(path);
    CHECK_EQ(n, LINES);
}

/* Close every fd, then open a file at every low number and at the top of the range (where the
 * crash handler keeps its own), leaving a gap; then crash. */
static int crash_with_files_task(mproc_task *t)
{
    const char *path = mproc_task_arg(t, NULL);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int top = rl.rlim_cur > 4096 ? 4096 : (int)rl.rlim_cur;
    for (int fd = 3; fd < top; fd++)
        close(fd);
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -errno;
    for (int i = fd + 1; i < 64; i++)
        dup2(fd, i);
    for (int i = top - 48; i < top; i++)
        dup2(fd, i);
    raise(SIGSEGV);
    return 0;
}

TEST(crash_report_never_lands_in_a_task_file)
{
    SKIP_IN_THREAD_MODE("a crash takes the whole process in thread mode");
    char path[] = "/tmp/mproc-respawn-crash-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "mine\n", 5) == 5);
    close(fd);
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    for (int round = 0; round < 2; round++) { /* the first worker, then its replacement */
        mproc_future *f;
        CHECK_OK(mproc_pool_submit(p, crash_with_files_task, path, strlen(path) + 1, &f));
        CHECK_RC(mproc_future_get(f, NULL, 0, NULL, 30), MPROC_EWORKERLOST);
        mproc_error e;
        CHECK_OK(mproc_future_error(f, &e));
        CHECK_EQ(e.signal, SIGSEGV);
        /* The backtrace still reaches the parent... */
        CHECK(strstr(e.message, "backtrace:") != NULL);
        CHECK(strstr(e.message, "[0x") != NULL);
        mproc_future_free(f);
        /* ...and the task's file is as it was (not truncated, no frames written into it). */
        struct stat st;
        CHECK(stat(path, &st) == 0);
        CHECK_EQ(st.st_size, 5);
    }
    mproc_pool_free(p);
    unlink(path);
}
