/* mproc-demo: the multiprocessing talk's demo in C. Hashes a directory in one worker while another
 * computes e, first with two processes, then with a pool, printing status while it waits.
 * See `mproc-demo --help` and docs/tour.md. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

double demo_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Checked here, before any worker starts, so a typo gets a message and exit code 2 rather than a
 * failed worker. */
static int check_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    errno = 0;
    int rc = readdir(d) ? 0 : (errno ? -errno : 0);
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    demo_opts o;
    bool done;
    int rc = options_parse(argc, argv, &o, &done);
    if (rc || done) return rc;
    if ((rc = check_dir(o.dir)) < 0) {
        fprintf(stderr, "mproc-demo: cannot read directory '%s': %s\n", o.dir, strerror(-rc));
        return 2;
    }

    /* The command line beats the environment, which beats the configuration in the library. */
    if (o.start) setenv("MPROC_START", o.start, 1);
    const char *env = getenv("MPROC_START");
    const char *start = env && *env ? env : "fork";
    mproc_log_config log = {.app_name = "mproc-demo", .author = "mproc", .verbose = o.verbose};
    rc = mproc_init(&(mproc_config){.start_method = o.start, .log = &log});
    if (rc < 0) {
        fprintf(stderr, "mproc-demo: cannot initialise mproc (start method '%s'): %s\n", start,
                mproc_strerror(rc));
        return rc == -EINVAL ? 2 : 1;
    }
    MPROC_INFO("mproc-demo on %s, mode %s, start method %s", o.dir, o.mode, start);

    /* With --json, stdout carries only the JSON; status goes to stderr. */
    FILE *status = o.json ? stderr : stdout;
    bool tty = isatty(fileno(status));
    dir_progress *pg = progress_new();
    if (!pg) {
        fprintf(stderr, "mproc-demo: %s\n", strerror(ENOMEM));
        return 1;
    }
    if (!o.json)
        printf("mproc-demo: hashing %s while computing e (start method %s, %d CPUs, %d physical "
               "cores)\n",
               o.dir, start, mproc_cpu_count(), mproc_physical_cores());

    double t0 = demo_now();
    mode_result results[2];
    int n = 0, failed = 0;
    if (strcmp(o.mode, "pool") != 0) {
        progress_reset(pg);
        failed |= run_process_mode(&o, pg, status, tty, &results[n]) < 0;
        if (!o.json) report_text(stdout, &results[n], mproc_log_file_path());
        n++;
    }
    if (strcmp(o.mode, "process") != 0) {
        progress_reset(pg);
        failed |= run_pool_mode(&o, pg, status, tty, &results[n]) < 0;
        if (!o.json) report_text(stdout, &results[n], mproc_log_file_path());
        n++;
    }
    for (int i = 0; i < n; i++)
        failed |= results[i].dir.error < 0;
    double total = demo_now() - t0;
    MPROC_INFO("done in %.3f s", total);

    const char *log_path = mproc_log_file_path();
    if (o.json) {
        report_json(stdout, &o, start, results, n, total, log_path);
    } else {
        printf("total %.2f s\n", total);
        printf("log file: %s\n", log_path ? log_path : "(none: console only)");
    }
    progress_free(pg);
    return failed ? 1 : 0;
}
