/* Logging from several processes, the talk's way: set it up once in the main process, and every
 * child logs to the same file and console under its own name, with no set-up of its own and no
 * torn or interleaved lines.
 *
 * INFO goes to the file only (the console shows WARNING and above unless verbose). The log file is
 * $XDG_STATE_HOME/process_logging/log/process_logging.log (default ~/.local/state/...); this
 * program prints it at the end. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <mproc.h>
#include <stdint.h>
#include <stdio.h>

#define WORKERS 3

static int worker(void *arg)
{
    int n = (int)(intptr_t)arg;
    MPROC_INFO("worker %d: starting", n);
    MPROC_INFO("worker %d: squared is %d", n, n * n);
    if (n == WORKERS) MPROC_WARNING("worker %d: warnings reach the console too", n);
    return 0;
}

int main(void)
{
    int rc = mproc_log_init(&(mproc_log_config){
        .app_name = "process_logging", .author = "mproc", .delete_existing = true});
    if (rc < 0) {
        fprintf(stderr, "process_logging: %s\n", mproc_strerror(rc));
        return 1;
    }
    MPROC_INFO("starting %d workers", WORKERS);
    mproc_process *p[WORKERS] = {0};
    for (int i = 0; i < WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "Worker-%d", i + 1);
        rc = mproc_process_new(
            &p[i],
            &(mproc_process_opts){.name = name, .run = worker, .arg = (void *)(intptr_t)(i + 1)});
        if (rc == 0) rc = mproc_process_start(p[i]);
        if (rc < 0) MPROC_ERROR("cannot start %s: %s", name, mproc_strerror(rc));
    }
    for (int i = 0; i < WORKERS; i++) {
        if (p[i]) mproc_process_join(p[i], MPROC_FOREVER);
        mproc_process_free(p[i]);
    }
    MPROC_INFO("all workers done");

    const char *path = mproc_log_file_path();
    if (!path) {
        printf("no log file (console only)\n");
        return 0;
    }
    printf("log file: %s\n", path);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    char line[4096];
    while (fgets(line, sizeof line, f))
        fputs(line, stdout);
    fclose(f);
    return 0;
}
