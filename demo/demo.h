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
    uint64_t bytes;   /* bytes read (of a file cut short by a read error too) */
    uint64_t skipped; /* files not hashed whole, and directories not listed whole (logged) */
    char sha256[65];  /* hex digest of the files' digests in bytewise order of path (below) */
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

/* dirinfo.c. The tree's digest is SHA-256 over the files' SHA-256 digests in hex, one line each
 * ("<64 hex digits>\n"), in bytewise order of the relative paths: what
 * `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | cut -c1-64 | sha256sum`
 * prints. Files can so be hashed apart, in any order: pool mode maps dirinfo_hash_file. */
typedef struct {
    int root;     /* the directory, open */
    char **paths; /* regular files (no symlinks followed), relative, sorted bytewise */
    size_t n;
    uint64_t skipped; /* directories that could not be listed whole (logged) */
} dir_list;
typedef struct {
    int64_t bytes;   /* read */
    int status;      /* 0: hashed whole; 1: cut short by a read error; -errno: not opened */
    char sha256[65]; /* hex, when status is 0 */
} file_digest;
/* Lists DIR into *out, publishing the counts in pg (may be NULL). 0 or -errno (logged). */
int dirinfo_list(const char *dir, dir_progress *pg, dir_list *out);
void dirinfo_list_free(dir_list *l);
/* Hashes path (relative to the directory fd root); bytes go to pg. Logs why a file was skipped. */
void dirinfo_hash_file(int root, const char *path, dir_progress *pg, file_digest *out);
/* The result from the list and its n digests (files[i] for paths[i]): counts and the tree's digest,
 * unless error (then only the counts), logged; seconds since t0. */
void dirinfo_summarise(const dir_list *l, const file_digest *files, int error, double t0,
                       dir_result *out);
/* All of it in the calling process (process mode's DirInfo worker). */
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
