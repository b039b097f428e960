/* mproc-demo: types shared by its files. Each file holds one concern: dirinfo.c (scan and hash a
 * directory), e.c (compute e until told to stop), progress.c (shared counters and the status line),
 * process_mode.c and pool_mode.c (the two ways of running the workers), report.c (text and JSON
 * output), options.c (command line), main.c (wiring). */
#ifndef MPROC_DEMO_H
#define MPROC_DEMO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <mproc.h>

/* Published by the directory worker, read by the main process while it waits. Lives in the family
 * arena, so the same pointer works in a child process, a pool worker or a thread. */
typedef struct {
    _Atomic uint64_t files_total; /* regular files found so far (final once hashing starts) */
    _Atomic uint64_t bytes_total; /* their sizes as listed */
    _Atomic uint64_t files_done;  /* hashed or skipped */
    _Atomic uint64_t bytes_done;  /* bytes hashed */
    _Atomic int hashing;          /* 0 while listing, 1 once the list is complete */
} dir_progress;

typedef struct {
    int error;        /* 0, or a negative errno: the directory could not be scanned at all */
    uint64_t found;   /* regular files listed (symlinks are not followed) */
    uint64_t files;   /* of those, files hashed whole */
    uint64_t bytes;   /* bytes fed to the digest (a file cut short by a read error included) */
    uint64_t skipped; /* files not hashed whole, and directories not listed whole (logged) */
    char sha256[65];  /* hex digest of the contents of all files, in bytewise order of path */
    double seconds;
} dir_result;

typedef struct {
    double e;
    uint64_t iterations;
    double seconds;
} e_result;

/* The verdict "ran in parallel": two workers busy at least this share of the time (pool mode:
 * utilisation; process mode: a total under this share of the work's sum). */
#define DEMO_PARALLEL_UTILISATION 0.75

typedef struct {
    const char *mode; /* "process" or "pool" */
    int rc;           /* 0, or what went wrong (an mproc code) */
    dir_result dir;
    e_result e;
    double total_seconds;
    /* pool mode: the pool's stats over the time both tasks could run (mproc_pool_stats) */
    bool have_stats;
    double utilisation, busy_seconds, wall_seconds;
    int workers;
} mode_result;

typedef struct {
    const char *dir;
    const char *mode;  /* "process", "pool" or "both" */
    const char *start; /* NULL: the library's (env MPROC_START, else fork) */
    double interval;   /* seconds between status lines */
    bool json;
    bool verbose;
} demo_opts;

/* dirinfo.c: scan DIR (no symlinks followed), hash every regular file in bytewise order of the
 * relative paths. Publishes its progress in pg (may be NULL). */
void dirinfo_compute(const char *dir, dir_progress *pg, dir_result *out);

/* e.c: sum 1/k! until stop is set (checked every 1000 terms). */
void e_compute(mproc_event *stop, e_result *out);

/* progress.c */
dir_progress *progress_new(void);
void progress_reset(dir_progress *pg);
void progress_free(dir_progress *pg);
/* A status line: "waiting on dir info for 4.0 seconds ..." plus the progress. On a terminal it
 * rewrites one line (with a bar); elsewhere it prints one plain line per call. */
void status_show(FILE *out, bool tty, double elapsed, const dir_progress *pg);
/* Ends an updating line (terminal only). */
void status_end(FILE *out, bool tty);

/* process_mode.c, pool_mode.c: run both workers, wait with status lines, fill *out. */
int run_process_mode(const demo_opts *o, dir_progress *pg, FILE *status, bool tty,
                     mode_result *out);
int run_pool_mode(const demo_opts *o, dir_progress *pg, FILE *status, bool tty, mode_result *out);

/* report.c. log_path: the log file, or NULL when there is none (console only). */
void report_text(FILE *out, const mode_result *r, const char *log_path);
void report_json(FILE *out, const demo_opts *o, const char *start, const mode_result *rs, int n,
                 double total, const char *log_path);

/* options.c: parse argv; returns 0, or the exit code (2 for bad usage, 0 for --help, with
 * *done set). */
int options_parse(int argc, char **argv, demo_opts *o, bool *done);
/* The default directory: the highest /usr/lib/python3.N, else /usr/share. Static storage. */
const char *options_default_dir(void);

double demo_now(void);

#endif
