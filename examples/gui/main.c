/* mproc-longtask [--duration SECONDS] [--crash] [--report FILE] [--quit-when-done]
 *
 * The pool is made first, while the program is one thread: its workers come from a forkserver
 * helper forked here, so a replacement worker (after a crash) is a clean copy of this moment,
 * not of a process that holds GTK's threads and its X connection. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "longtask.h"

static void usage(FILE *to)
{
    fprintf(to, "usage: mproc-longtask [--duration SECONDS] [--crash] [--report FILE] "
                "[--quit-when-done]\n"
                "  --duration SECONDS  how long the task computes e (default 4)\n"
                "  --crash             the task raises SIGSEGV half way (the switch starts on)\n"
                "  --report FILE       at quit, write the final state as JSON\n"
                "  --quit-when-done    quit once the first task has ended\n");
}

static int parse(lt_app *a, int argc, char **argv)
{
    static const struct option opts[] = {
        {"duration", required_argument, NULL, 'd'}, {"crash", no_argument, NULL, 'c'},
        {"report", required_argument, NULL, 'r'},   {"quit-when-done", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},           {0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        char *end;
        switch (c) {
        case 'd':
            a->duration = strtod(optarg, &end);
            if (*end || !isfinite(a->duration) || a->duration <= 0 || a->duration > 3600) {
                fprintf(stderr, "mproc-longtask: --duration wants seconds in (0, 3600]\n");
                return 2;
            }
            break;
        case 'c':
            a->crash = true;
            break;
        case 'r':
            a->report = optarg;
            break;
        case 'q':
            a->quit_when_done = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The fds mproc held before the tear-down and that are still open after it: what the pool opened
 * at its start, the pidfds of its workers (a replacement's too), the fd of a future still
 * running; plus any fd the tear-down itself opened. GTK's own fds are none of these. */
static int count_leaked(const lt_fds *at_start, const lt_fds *with_pool, const lt_fds *before,
                        const lt_fds *after, int live_fd)
{
    int n = 0;
    for (int i = 0; i < LT_MAX_FDS; i++) {
        bool mproc = (with_pool->kind[i] && !at_start->kind[i]) || before->kind[i] == LT_FD_PIDFD ||
                     i == live_fd;
        if (after->kind[i] && (mproc || !before->kind[i])) n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    lt_app a = {.duration = 4.0};
    int rc = parse(&a, argc, argv);
    if (rc >= 0) return rc;
    const char *method = getenv("MPROC_START"); /* it overrides the pool's choice */
    if (method && strcmp(method, "thread") == 0)
        fprintf(stderr, "mproc-longtask: MPROC_START=thread: the task runs in this process, and "
                        "a crash will take the window with it\n");
    static lt_fds at_start, with_pool, before, after;
    a.progress = mproc_shared_alloc(sizeof *a.progress);
    rc = a.progress ? 0 : -errno;
    /* After the first allocation: the arena it mapped keeps its memfd open for the program's life
     * (a manager may hand it to a client on the same machine), which is not the tear-down's. */
    lt_fds_take(&at_start);
    if (rc == 0)
        rc = mproc_pool_new(&a.pool, &(mproc_pool_opts){.workers = 1,
                                                        .name = "LongTask",
                                                        .start_method = "forkserver",
                                                        .initializer = lt_lower_priority});
    if (rc < 0) {
        fprintf(stderr, "mproc-longtask: %s\n", mproc_strerror(rc));
        return 1;
    }
    lt_fds_take(&with_pool);

    if (!gtk_init_check()) {
        fprintf(stderr, "mproc-longtask: cannot open a display (set DISPLAY, or run it under "
                        "xvfb-run)\n");
        mproc_pool_terminate(a.pool);
        mproc_pool_free(a.pool);
        return 1;
    }
    a.runs = g_array_new(FALSE, TRUE, sizeof(lt_run));
    lt_window_build(&a);
    gtk_window_present(GTK_WINDOW(a.window));
    while (!a.quit)
        g_main_context_iteration(NULL, TRUE);
    gtk_window_destroy(GTK_WINDOW(a.window));

    /* Tear-down, also in the middle of a run: the task was asked to stop (lt_quit); terminate
     * kills the worker if it has not, and reaps it; shutdown stops the forkserver helper. */
    lt_fds_take(&before);
    int live_fd = a.future ? mproc_future_fd(a.future) : -1;
    mproc_future_free(a.future);
    mproc_pool_terminate(a.pool);
    mproc_pool_free(a.pool);
    mproc_shared_free(a.progress);
    mproc_shutdown();
    lt_fds_take(&after);
    int leaked = count_leaked(&at_start, &with_pool, &before, &after, live_fd);
    if (a.report && lt_report_write(&a, a.report, leaked, lt_count_children()) < 0) {
        perror(a.report);
        rc = 1;
    }
    g_array_free(a.runs, TRUE);
    return rc < 0 ? 1 : rc;
}
