/* mproc: conventions shared by every module.
 *
 * Fallible functions return 0 (or a documented non-negative value) on success and a negative
 * code on failure: a negated errno value where one fits, else one of the MPROC_E* codes below,
 * which lie outside the errno range. mproc_strerror() names any of them.
 *
 * Timeouts are double seconds: 0 polls, MPROC_FOREVER (any negative value) waits forever.
 * A timeout returns -ETIMEDOUT; a non-blocking call that cannot proceed returns -EAGAIN.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

/* The running library's version, "MAJOR.MINOR.PATCH" (static string): what a bug report should
 * quote. It may differ from the MPROC_VERSION_* macros a program was compiled with; the SONAME
 * (libmproc.so.MAJOR) guarantees only that the ABI is compatible (docs/versioning.md). */
const char *mproc_version(void);

/* Wait without a time limit. */
#define MPROC_FOREVER (-1.0)

/* Library error codes (negative, outside the errno range). */
enum {
    MPROC_ECLOSED = -10001,     /* the object was closed */
    MPROC_EWORKERLOST = -10002, /* the process running a task died */
    MPROC_ETASKFAILED = -10003, /* the task function reported failure */
    MPROC_ECANCELLED = -10004,  /* cancelled before it completed */
    MPROC_EBROKEN = -10005,     /* barrier broken, pool broken */
    MPROC_EAUTH = -10006,       /* authentication failed */
    MPROC_EOWNERDEAD = -10007,  /* lock acquired; its previous holder died holding it */
    MPROC_EPROTO = -10008,      /* malformed message */
    MPROC_EEND = -10009,        /* an imap has no more results (its normal end) */
    MPROC_ETIMELIMIT = -10010,  /* the task ran past its hard time limit; its worker was killed */
    MPROC_EREMOTE = -10011,     /* the remote side raised an exception (a Python manager's) */
};

/* A static, human-readable description of any code this library returns (or of 0). The errno
 * codes the API returns are worded for what they mean here (-ETIMEDOUT: "timed out", not
 * "Connection timed out"); other errno values get the C library's text. */
const char *mproc_strerror(int code);

/* Library configuration; every field has a default (zero value = default). */
typedef struct mproc_log_config mproc_log_config;
typedef struct {
    const char *start_method;    /* "fork" (default); env MPROC_START overrides */
    size_t arena_size;           /* address space of the family arena; 0: 4 GiB (sparse) */
    const mproc_log_config *log; /* logging set-up; NULL: defaults */
} mproc_config;

/* Configure the library. Optional: each part sets itself up with defaults on first use (the
 * arena on the first allocation or process, the forkserver helper on the first process or pool).
 * Call it early in main, before starting threads, to pass a config or to fork the forkserver
 * helper while the program is single-threaded. Returns -EALREADY (with no change) once the arena
 * is mapped or a process or pool was made, -EINVAL for a bad config. */
int mproc_init(const mproc_config *cfg);

/* Do now what normal exit does (it is also done then), in this order: terminate this process's
 * pools (their running and queued tasks fail with MPROC_ECANCELLED, no worker is replaced, every
 * worker is reaped; the handles stay valid, to be freed), SIGTERM its daemonic children, join the
 * non-daemonic ones, SIGKILL the daemonic ones still alive after 0.5 s, stop the forkserver
 * helper. For programs and tests that must leave no child behind before they go on. */
int mproc_shutdown(void);

/* CPUs this process may use: its affinity mask, limited by a cgroup (v2 or v1) CPU quota
 * rounded up; environment variable MPROC_CPU_COUNT overrides. Always >= 1. */
int mproc_cpu_count(void);

/* Physical cores among the CPUs this process may use (hwloc). Always >= 1. */
int mproc_physical_cores(void);

/* Where a pool puts its workers (mproc_pool_opts.placement; docs/pool.md, "Placement"). */
typedef enum {
    MPROC_PLACE_NONE = 0, /* the scheduler decides (within opts.cpus, if given) */
    MPROC_PLACE_CORES,    /* one worker per physical core, pinned to that core's CPUs */
    MPROC_PLACE_CPUS,     /* one worker per logical CPU, pinned to it */
} mproc_placement;

/* "MainProcess", or the name of this process as given when the library started it. */
const char *mproc_current_name(void);

/* Pid of the process that started this one through the library; 0 in the main process. */
pid_t mproc_parent_pid(void);

#ifdef __cplusplus
}
#endif
#endif
