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
#include "harness_run.h"

/* ---- the examples -------------------------------------------------------------------------- */

static harness_run_result run_example(const char *name, char *const *extra_env)
{
    char path[PATH_MAX];
    harness_built_path("examples", name, path, sizeof path);
    harness_run_result r = harness_run((char *[]){path, NULL}, extra_env);
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
    harness_run_result r = run_example("first", NULL);
    CHECK_HAS(r.out, "Process-1: waiting for the event");
    CHECK_HAS(r.out, "Process-1 exited with 7");
    harness_run_free(&r);
}

TEST(e_function_stops_when_another_process_sets_the_event)
{
    harness_run_result r = run_example("e_function", NULL);
    check_e(r.out);
    CHECK_HAS(r.out, "stopped by Timer");
    harness_run_free(&r);
}

TEST_T(e_process_subclass_pattern, 60)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char env[64];
        snprintf(env, sizeof env, "MPROC_START=%s", methods[i]);
        harness_run_result r = run_example("e_process", (char *[]){env, NULL});
        CHECK_HAS(r.out, "started CalculateE, alive: yes");
        /* No result can exist before the exit event: the get must time out. */
        CHECK_HAS(r.out, "get_value before the exit event: timed out, no result yet");
        check_e(r.out);
        CHECK_HAS(r.out, "CalculateE exited with 0");
        harness_run_free(&r);
    }
}

TEST(e_main_sleeps_sets_the_event_and_prints_e)
{
    double t0 = harness_now();
    harness_run_result r = run_example("e_main", NULL);
    check_e(r.out);
    CHECK(harness_now() - t0 >= 1.0); /* it slept a second before setting the event */
    const char *in = strstr(r.out, "iterations in ");
    CHECK(in != NULL);
    CHECK_BETWEEN(strtod(in + strlen("iterations in "), NULL), 0.9, 60.0);
    harness_run_free(&r);
}

TEST_T(manager_event_hands_a_managers_event_and_an_arena_event_to_a_pool_task, 60)
{
    harness_run_result r = run_example("manager_event", NULL);
    CHECK_HAS(r.out, "manager at unix:@mproc-example-manager-");
    CHECK_HAS(r.out, "manager Event: e = 2.71828182845904");
    CHECK_HAS(r.out, "arena Event: e = 2.71828182845904");
    harness_run_free(&r);
}

TEST_T(py_manager_client_uses_a_python_managers_dict_queue_and_event, 60)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0) harness_skip("no python3");
    harness_run_result r = run_example("py_manager_client", NULL);
    CHECK_HAS(r.out, "dialect python");
    CHECK_HAS(r.out, "jobs[\"owner\"] = \"python\" (a Python str)");
    CHECK_HAS(r.out, "jobs[\"missing\"]: KeyError: 'missing'");
    CHECK_HAS(r.out, "task 4 done: jobs[\"square of 4\"] = 16");
    CHECK_HAS(r.out, "jobs has 4 entries");
    CHECK_HAS(r.out, "done is set: yes");
    harness_run_free(&r);
}

TEST_T(e_pool_with_an_event_pointer, 60)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char env[64];
        snprintf(env, sizeof env, "MPROC_START=%s", methods[i]);
        harness_run_result r = run_example("e_pool", (char *[]){env, NULL});
        check_e(r.out);
        CHECK_HAS(r.out, "computed by PoolWorker-");
        harness_run_free(&r);
    }
}

TEST(process_logging_names_every_process)
{
    char state[] = "/tmp/mproc-example-log.XXXXXX";
    CHECK(mkdtemp(state) != NULL);
    char env[PATH_MAX + 32], path[PATH_MAX + 64];
    snprintf(env, sizeof env, "XDG_STATE_HOME=%s", state);
    snprintf(path, sizeof path, "log file: %s/process_logging/log/process_logging.log\n", state);
    harness_run_result r = run_example("process_logging", (char *[]){env, NULL});
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
    harness_run_free(&r);
    harness_run_result rm = harness_run((char *[]){"/bin/rm", "-rf", state, NULL}, NULL);
    CHECK_EQ(rm.status, 0);
    harness_run_free(&rm);
}

TEST_T(responsive_loop_ticks_until_the_future_fd_fires, 120)
{
    harness_run_result r = run_example("responsive", NULL);
    const char *result = strstr(r.out, "primes below 3000000: 216816 ");
    if (!result) harness_fail(__FILE__, __LINE__, "no result in:\n%s", r.out);
    /* The loop ticked while the worker computed, before the result came. */
    const char *tick = strstr(r.out, "tick 1: the main loop is responsive");
    CHECK(tick != NULL && tick < result);
    const char *ticks = strstr(result, " s and ");
    CHECK(ticks != NULL);
    CHECK(strtol(ticks + strlen(" s and "), NULL, 10) >= 1);
    harness_run_free(&r);
}

/* The future's fd in an epoll loop and a libuv loop (docs/event-loops.md): the result comes
 * through the fd while the loop ticks. */
static void check_loop_example(const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    harness_run_result r = run_example(path, NULL);
    const char *p = strstr(r.out, "answer 42 after ");
    if (!p) harness_fail(__FILE__, __LINE__, "no answer in:\n%s", r.out);
    CHECK(strtol(p + strlen("answer 42 after "), NULL, 10) >= 1);
    harness_run_free(&r);
}

TEST_T(future_epoll_loop, 60)
{
    check_loop_example(".", "future_epoll");
}

TEST_T(future_uv_loop, 60)
{
    char path[PATH_MAX];
    harness_built_path("examples", "", path, sizeof path); /* the examples folder exists */
    snprintf(path + strlen(path), sizeof path - strlen(path), "uv/future_uv");
    if (access(path, X_OK) != 0) harness_skip("libuv was not found at build time");
    check_loop_example("uv", "future_uv");
}
