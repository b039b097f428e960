/* Log throughput: 2 processes logging INFO lines to one file (console off), start to last line
 * written, in lines per second. Every line is a complete write() in the file when the call returns,
 * so there is nothing left to flush at the end. bench/py/bench_log.py is the same workload with
 * Python's logging, a QueueHandler in each process and a QueueListener writing the file. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "mproc.h"

#define PROCS 2
#define LINES 200000

static int writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < LINES; i++)
        MPROC_INFO("message number %d from the benchmark", i);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

int main(void)
{
    char dir[] = "/tmp/mproc-bench-log-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    int r = mproc_log_init(&(mproc_log_config){.app_name = "bench",
                                               .log_dir = dir,
                                               .console_level = MPROC_LOG_OFF,
                                               .max_bytes = SIZE_MAX});
    if (r < 0) return 1;
    double t0 = bench_now();
    mproc_process *p[PROCS];
    for (int i = 0; i < PROCS; i++) {
        if (mproc_process_new(&p[i], &(mproc_process_opts){.run = writer}) < 0) return 1;
        if (mproc_process_start(p[i]) < 0) return 1;
    }
    int bad = 0;
    for (int i = 0; i < PROCS; i++) {
        int code = -1;
        mproc_process_join(p[i], MPROC_FOREVER);
        mproc_process_exitcode(p[i], &code);
        bad |= code != 0;
        mproc_process_free(p[i]);
    }
    double dt = bench_now() - t0;
    mproc_log_shutdown();
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    if (bad) return 1;
    bench_row("log lines/s, 2 processes to one file", "mproc", PROCS * LINES / dt, "lines/s",
              "higher");
    return 0;
}
