/* Every example builds and runs, and says what it should: each is run as its own program (fork +
 * exec of build/examples/NAME) and its output is checked. */
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

/* ---- running a built program ------------------------------------------------------------- */

typedef struct {
    int status; /* as waitpid gives it */
    char *out, *err;
    size_t out_len, err_len;
} run_result;

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* The environment plus `extra` ("KEY=VALUE" strings, NULL-terminated), extra winning. Built before
 * the fork: the child only calls async-signal-safe functions. */
static char **make_env(char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    while (extra && extra[k])
        k++;
    char **env = calloc(n + k + 1, sizeof *env);
    CHECK(env != NULL);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < k; j++) {
            size_t klen = strcspn(extra[j], "=");
            if (strncmp(environ[i], extra[j], klen + 1) == 0) overridden = true;
        }
        if (!overridden) env[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        env[m++] = extra[j];
    return env;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    char *b = realloc(*buf, *len + n + 1);
    CHECK(b != NULL);
    memcpy(b + *len, data, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
}

/* Runs argv[0] with stdin from /dev/null, capturing stdout and stderr; as user `uid` unless it is
 * (uid_t)-1. */
static run_result run_as(char *const argv[], char *const *extra_env, uid_t uid)
{
    run_result r = {0};
    append(&r.out, &r.out_len, "", 0);
    append(&r.err, &r.err_len, "", 0);
    int po[2], pe[2];
    CHECK(pipe2(po, O_CLOEXEC) == 0);
    CHECK(pipe2(pe, O_CLOEXEC) == 0);
    char **env = make_env(extra_env);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(126);
        if (uid != (uid_t)-1 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
            _exit(125);
        execve(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            CHECK(errno == EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char buf[65536];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                if (i == 0)
                    append(&r.out, &r.out_len, buf, (size_t)n);
                else
                    append(&r.err, &r.err_len, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    while (waitpid(pid, &r.status, 0) < 0)
        CHECK(errno == EINTR);
    return r;
}

static run_result run(char *const argv[], char *const *extra_env)
{
    return run_as(argv, extra_env, (uid_t)-1);
}

/* A program built beside this test: build/tests/test_x -> build/DIR/NAME. */
static void built_path(const char *dir, const char *name, char *buf, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    CHECK(slash != NULL);
    *slash = '\0';
    snprintf(buf, cap, "%s/../%s/%s", self, dir, name);
    if (access(buf, X_OK) != 0) harness_fail(__FILE__, __LINE__, "%s is not built", buf);
}

/* ---- the examples -------------------------------------------------------------------------- */

static run_result run_example(const char *name, char *const *extra_env)
{
    char path[PATH_MAX];
    built_path("examples", name, path, sizeof path);
    run_result r = run((char *[]){path, NULL}, extra_env);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        harness_fail(__FILE__, __LINE__, "%s: status %#x\nstdout:\n%s\nstderr:\n%s", name, r.status,
                     r.out, r.err);
    return r;
}

static bool has(const char *text, const char *needle)
{
    return strstr(text, needle) != NULL;
}

#define CHECK_HAS(text, needle)                                                                    \
    do {                                                                                           \
        if (!has(text, needle))                                                                    \
            harness_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", needle, text);                   \
    } while (0)

/* The value after "e = " is e to the precision of a double. */
static void check_e(const char *out)
{
    const char *p = strstr(out, "e = ");
    if (!p) harness_fail(__FILE__, __LINE__, "no \"e = \" in:\n%s", out);
    double e = strtod(p + 4, NULL);
    CHECK_BETWEEN(e, 2.718281828459044, 2.718281828459046);
}

static const char *methods[] = {"fork", "forkserver", "thread"};

TEST(first)
{
    run_result r = run_example("first", NULL);
    CHECK_HAS(r.out, "Process-1: waiting for the event");
    CHECK_HAS(r.out, "Process-1 exited with 7");
    run_free(&r);
}

TEST(e_function_stops_when_another_process_sets_the_event)
{
    run_result r = run_example("e_function", NULL);
    check_e(r.out);
    CHECK_HAS(r.out, "stopped by Timer");
    run_free(&r);
}

TEST_T(e_process_subclass_pattern, 60)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char env[64];
        snprintf(env, sizeof env, "MPROC_START=%s", methods[i]);
        run_result r = run_example("e_process", (char *[]){env, NULL});
        CHECK_HAS(r.out, "started CalculateE, alive: yes");
        /* No result can exist before the exit event: the get must time out. */
        CHECK_HAS(r.out, "get_value before the exit event: timed out, no result yet");
        check_e(r.out);
        CHECK_HAS(r.out, "CalculateE exited with 0");
        run_free(&r);
    }
}

TEST(e_main_sleeps_sets_the_event_and_prints_e)
{
    double t0 = harness_now();
    run_result r = run_example("e_main", NULL);
    check_e(r.out);
    CHECK(harness_now() - t0 >= 1.0); /* it slept a second before setting the event */
    const char *in = strstr(r.out, "iterations in ");
    CHECK(in != NULL);
    CHECK_BETWEEN(strtod(in + strlen("iterations in "), NULL), 0.9, 60.0);
    run_free(&r);
}

TEST_T(e_pool_with_an_event_pointer, 60)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char env[64];
        snprintf(env, sizeof env, "MPROC_START=%s", methods[i]);
        run_result r = run_example("e_pool", (char *[]){env, NULL});
        check_e(r.out);
        CHECK_HAS(r.out, "computed by PoolWorker-");
        run_free(&r);
    }
}

TEST(process_logging_names_every_process)
{
    char state[] = "/tmp/mproc-example-log.XXXXXX";
    CHECK(mkdtemp(state) != NULL);
    char env[PATH_MAX + 32], path[PATH_MAX + 64];
    snprintf(env, sizeof env, "XDG_STATE_HOME=%s", state);
    snprintf(path, sizeof path, "log file: %s/process_logging/log/process_logging.log\n", state);
    run_result r = run_example("process_logging", (char *[]){env, NULL});
    CHECK_HAS(r.out, path);
    CHECK_HAS(r.out, " - process_logging - MainProcess - process_logging.c - ");
    CHECK_HAS(r.out, "INFO - starting 3 workers");
    for (int n = 1; n <= 3; n++) {
        char line[128];
        /* Each worker's lines carry its own name. */
        snprintf(line, sizeof line, " - Worker-%d - process_logging.c - ", n);
        CHECK_HAS(r.out, line);
        snprintf(line, sizeof line,
                 "Worker-%d - process_logging.c - 19 - worker - INFO - worker %d: "
                 "squared is %d\n",
                 n, n, n * n);
        CHECK_HAS(r.out, line);
    }
    CHECK_HAS(r.out, "INFO - all workers done");
    /* The console shows the warning, not the INFO lines. */
    CHECK_HAS(r.err, "Worker-3 - process_logging.c - 20 - worker - WARNING - worker 3: warnings");
    CHECK(!has(r.err, "INFO"));
    run_free(&r);
    run_result rm = run((char *[]){"/bin/rm", "-rf", state, NULL}, NULL);
    CHECK_EQ(rm.status, 0);
    run_free(&rm);
}

TEST_T(responsive_loop_ticks_until_the_future_fd_fires, 120)
{
    run_result r = run_example("responsive", NULL);
    const char *result = strstr(r.out, "primes below 3000000: 216816 ");
    if (!result) harness_fail(__FILE__, __LINE__, "no result in:\n%s", r.out);
    /* The loop ticked while the worker computed, before the result came. */
    const char *tick = strstr(r.out, "tick 1: the main loop is responsive");
    CHECK(tick != NULL && tick < result);
    const char *ticks = strstr(result, " s and ");
    CHECK(ticks != NULL);
    CHECK(strtol(ticks + strlen(" s and "), NULL, 10) >= 1);
    run_free(&r);
}
