/* mproc: process pool (Python's multiprocessing.Pool and concurrent.futures, in C).
 *
 * Workers are processes forked once when the pool is made; a task is a function pointer plus a
 * byte string, and because workers are forks of the same program the pointer is valid in them.
 * Small arguments and results travel inline in shared slots; large ones go through the family
 * arena by reference. Pointers inside arguments work when they point into the arena
 * (mproc_shared_alloc) or into memory that existed, unchanged, when the pool was made.
 *
 * Failure model (docs/pool.md): a worker that dies while running a task (SIGKILL, segfault,
 * exit(), abort()) fails exactly that task with MPROC_EWORKERLOST; it is replaced and every other
 * task completes. A crash loop (too many deaths in a row, no task succeeding) breaks the pool:
 * pending and later tasks fail with MPROC_EBROKEN. A failing initializer breaks the pool too.
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include <limits.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_pool mproc_pool;
typedef struct mproc_future mproc_future;
typedef struct mproc_error mproc_error; /* a failed task's error record (below) */

/* ---- The worker's side of a task ---------------------------------------------------------- */

typedef struct mproc_task mproc_task; /* a task as its worker sees it */
/* 0 = success; anything else fails the task (a negative value is kept as the code, a positive
 * one becomes MPROC_ETASKFAILED). */
typedef int (*mproc_task_fn)(mproc_task *t);
/* The argument bytes (valid until the function returns); *len gets their size if len != NULL. */
const void *mproc_task_arg(mproc_task *t, size_t *len);
/* Set the result bytes (copied; a later call replaces them). 0, -EINVAL, -ENOMEM. */
int mproc_task_return(mproc_task *t, const void *data, size_t len);
/* Fail the task with `code` (negative: kept; 0 or positive: MPROC_ETASKFAILED) and a message that
 * reaches the caller through mproc_future_error. Returns the code the caller will see; the task
 * function should return it: `return mproc_task_fail(t, -ENOENT, "no %s", path);` */
int mproc_task_fail(mproc_task *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True once the caller cancelled the running task or its soft time limit passed: a long task
 * should poll it and return early. */
bool mproc_task_cancelled(mproc_task *t);
/* The task the calling worker thread is running, NULL outside one. For a map item function,
 * which gets no handle: `return mproc_task_fail(mproc_task_current(), -EIO, "bad row %d", r);`
 * fails the map with that message (mproc_map_opts.error), and mproc_task_cancelled on it tells
 * the item the map was abandoned. (In a map item, mproc_task_return on it is ignored.) */
mproc_task *mproc_task_current(void);

/* ---- Pools -------------------------------------------------------------------------------- */

/* Limits of mproc_pool_opts (a value outside them is -EINVAL unless said otherwise). */
#define MPROC_POOL_MAX_WORKERS 4096
#define MPROC_POOL_MAX_RESTARTS 100000 /* max_restarts above this: no crash-loop limit */
#define MPROC_POOL_NO_RESTART_LIMIT UINT_MAX

typedef struct {
    int workers;                   /* 0: mproc_cpu_count(); negative or more than
                                      MPROC_POOL_MAX_WORKERS: -EINVAL */
    const char *name;              /* workers are "NAME-1", "NAME-2", ... (replacements continue the
                                      numbering); NULL: "PoolWorker"; at most 48 bytes */
    int (*initializer)(void *arg); /* run once in each worker; nonzero breaks the pool */
    /* Passed to the initializer. Without initarg_size it must point into the arena or to data
     * every worker has: as it was when the pool was made (fork) or when the forkserver helper
     * started; with initarg_size > 0, those bytes are copied into the arena at mproc_pool_new
     * and the initializer gets the copy (valid for the pool's life). */
    void *initarg;
    size_t initarg_size;
    unsigned max_tasks_per_child; /* 0: unlimited; else a worker is replaced after N tasks */
    /* 0: none; else a worker whose resident set passed this many bytes after a task is replaced
     * before its next one (a leak guard, billiard's max_memory_per_child). Costs one read of
     * /proc/self/statm per task; ignored by thread pools (their RSS is the whole process's). */
    size_t max_memory_per_child;
    double task_timeout;   /* hard limit per task, from its start: it fails with MPROC_ETIMELIMIT,
                              its worker is killed and replaced; 0: none (as are infinity and
                              > 1e9 s); negative or NaN: -EINVAL */
    const char *backend;   /* "local" (default) or "mpi": the tasks run on the other ranks of an
                              MPI job (docs/mpi.md; needs libmproc_mpi linked, else -ENOTSUP;
                              without a launcher or with one rank: local, and one warning);
                              env MPROC_POOL_BACKEND overrides */
    unsigned max_restarts; /* crash-loop limit: more than this many worker deaths within
                              restart_window seconds with no task succeeding in between breaks the
                              pool; 0: max(8, 2 * workers); above MPROC_POOL_MAX_RESTARTS
                              (e.g. MPROC_POOL_NO_RESTART_LIMIT): no limit, deaths never break it */
    double restart_window; /* 0: 10 s; negative or NaN: -EINVAL; huge or infinite: every death
                              since the last task that succeeded counts */
    const char *start_method; /* how workers start: NULL: the library's ("fork"), "forkserver"
                                 (then initarg must point into the arena or to data as it was
                                 when the helper was forked: docs/start-methods.md), "thread" (a
                                 thread pool: no crash isolation; hard time limits become cancel
                                 requests). Env MPROC_START wins. */
    /* Where the workers run (docs/pool.md, "Placement"). MPROC_PLACE_CORES: one worker per
     * physical core (hwloc), pinned to that core's CPUs, its SMT siblings left to the rest of
     * the system; MPROC_PLACE_CPUS: one per logical CPU, pinned to it; with either, workers = 0
     * means one per core / CPU, and more workers than that go round the cores / CPUs again.
     * Only the CPUs this process may use count (its affinity mask, and through it the cgroup's
     * cpuset). A replacement worker takes the seat, and the CPUs, of the one it replaces.
     * Another value: -EINVAL. */
    mproc_placement placement;
    /* A CPU list, "0-3,8": the workers are confined to these CPUs (with a placement: the cores or
     * CPUs among them; without: all workers share them, workers = 0 meaning one per CPU).
     * NULL: every CPU this process may use. -EINVAL for a malformed list or a CPU this process
     * may not use. */
    const char *cpus;
} mproc_pool_opts;

/* -EINVAL (a number out of its limits, bad name, initarg_size without initarg), -ENOTSUP
 * (backend "mpi" without libmproc_mpi, or under a launcher without mproc_init), -ENOMEM, a fork
 * error, or -EFAULT (MPROC_CHECK_POINTERS=1, forkserver, and initarg, without initarg_size, points
 * at memory the workers do not have). */
int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts);
/* Number of workers the pool keeps running (backend "mpi": on every worker rank together). */
int mproc_pool_size(mproc_pool *p);
/* The backend the pool runs on: "local" or "mpi" (NULL for an invalid pool). */
const char *mproc_pool_backend(mproc_pool *p);
/* Keep n workers from now on: new ones start at once (on the next seats, with their placement);
 * when shrinking, the workers past n finish the task they run and leave (queued tasks go to the
 * others). Returns without waiting for either. n from 1 to the pool's room: 64, 4 per CPU, or
 * its starting size, whichever is most (-EINVAL past it); MPROC_ECLOSED once closed,
 * MPROC_EBROKEN. mproc_pool_size then says n. */
int mproc_pool_resize(mproc_pool *p, int n);
/* Pids of the live workers (for tests and monitoring): fills up to cap, returns how many live. */
int mproc_pool_worker_pids(mproc_pool *p, pid_t *pids, int cap);

/* ---- Statistics (docs/pool.md, "Reading the stats") ------------------------------------- */

/* What the pool did since it started or since the last mproc_pool_stats_reset. A task is one
 * submit, or one chunk of a map or an imap. Counts are exact once the pool is quiet; while tasks
 * run, each count is a moment's value (a task finishing meanwhile may show in one and not yet in
 * another). */
typedef struct {
    size_t submitted; /* tasks submitted */
    size_t queued;    /* now: waiting for a worker (not reset) */
    size_t running;   /* now: running on a worker (not reset) */
    size_t done;      /* succeeded */
    size_t failed;    /* failed: the task's own error, a crash of its worker (MPROC_EWORKERLOST),
                         a hard time limit, a broken pool */
    size_t cancelled; /* ended with MPROC_ECANCELLED: cancelled before they ran, by terminate,
                         or tasks that stopped on a cancel request and said so */
    size_t worker_deaths; /* workers that died (crash, kill, time limit), not those retired by
                             max_tasks_per_child or shut down */
    int workers;          /* workers the pool keeps */
    double wall_seconds;  /* since the pool started or the reset */
    double busy_seconds;  /* time the workers spent in tasks (running ones count so far) */
    double utilisation;   /* busy / (workers * wall), 0..1 */
    /* Dispatch latency: from submit to a worker starting the task, seconds (a task that waits
     * behind others waits for them too). Mean, median and 99th percentile of a sample of the
     * tasks started (one single submit in 8, the first included, and every map batch), p50/p99
     * to within 19 % (log-scale histograms). */
    double dispatch_mean, dispatch_p50, dispatch_p99;
    /* The part of the dispatch latency the task's worker was free: from submit, or from the end
     * of the worker's previous task if that was later, to the start. What each task costs to
     * hand over (wake-up, queue), without the waiting behind other tasks. Same sample. */
    double overhead_mean;
    /* Run time of the tasks that ended (on their worker, from start to end), seconds. */
    double run_mean, run_p50, run_p99;
} mproc_pool_stat;

/* One worker seat (a replacement takes over the seat of the worker it replaces). */
typedef struct {
    pid_t pid;           /* the worker in the seat now, 0: none */
    size_t tasks;        /* tasks started in the seat */
    size_t done, failed; /* of those, succeeded / failed or cancelled (deaths included) */
    double busy_seconds;
    double utilisation; /* busy / wall */
} mproc_pool_worker_stat;

/* 0 and *out filled; -EINVAL (NULL). Costs a few microseconds per worker: call it when a
 * status line or a report wants it, not per task. */
int mproc_pool_stats(mproc_pool *p, mproc_pool_stat *out);
/* Fills out[0..cap) with the seats in order and returns how many seats the pool has used (its
 * largest size so far: after mproc_pool_resize shrank it, the emptied seats keep their counts
 * and have pid 0), or -EINVAL. */
int mproc_pool_worker_stats(mproc_pool *p, mproc_pool_worker_stat *out, int cap);
/* Start counting afresh: the counts, times and histograms read from now on (queued and running
 * stay what they are). 0 or -EINVAL, -ENOMEM. */
int mproc_pool_stats_reset(mproc_pool *p);

/* Per-task options (submit_opts). Both limits count from the moment a worker starts the task. */
typedef struct {
    double timeout;      /* hard limit (kill + replace the worker, MPROC_ETIMELIMIT); 0: the pool's;
                            infinity or above 1e9 s: none, whatever the pool's */
    double soft_timeout; /* after this, mproc_task_cancelled() is true in the task; 0, infinity or
                            above 1e9 s: none; kept to the ms, at most 24.8 days. Either negative
                            or NaN: -EINVAL */
} mproc_submit_opts;

/* apply_async: queue fn(arg bytes, copied) and return a future. Never blocks unless more than
 * 2^20 tasks are queued. MPROC_ECLOSED after close/terminate, MPROC_EBROKEN on a broken pool,
 * -EINVAL for NULL pool/fn/out or arg == NULL with len > 0. */
int mproc_pool_submit(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                      mproc_future **out);
int mproc_pool_submit_opts(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                           const mproc_submit_opts *opts, mproc_future **out);
/* apply: submit and wait. Returns what mproc_future_get returns (the result is copied to out,
 * *outlen gets its size; -EMSGSIZE when cap is too small). -EINTR if a signal handler ran while
 * waiting (the task is then cancelled if still queued). */
int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len, void *out,
                     size_t cap, size_t *outlen);

/* ---- map: fixed-size items, results in input order ---------------------------------------- */

/* Computes one item: reads in_size bytes at `in`, writes out_size bytes at `out`. 0 = ok;
 * nonzero fails the map (negative: that code, positive: MPROC_ETASKFAILED). */
typedef int (*mproc_map_fn)(const void *in, void *out, void *arg);
typedef struct {
    size_t chunksize; /* items per task; 0: automatic (about 4 chunks per worker, 16 with the
                         "mpi" backend, larger for big inputs, so that dispatch costs a few ns
                         per item) */
    /* Passed to fn. With arg_size > 0 the arg_size bytes at arg are copied into the arena for
     * this call and fn gets the copy. With arg_size 0 the pointer itself is passed, and must be
     * valid in the workers: in the arena (mproc_shared_alloc), or memory as it was when the pool
     * was made (fork) or the forkserver helper started; heap or stack memory made later reads
     * as garbage there (MPROC_CHECK_POINTERS=1 catches most such pointers: -EFAULT). */
    void *arg;
    size_t arg_size;
    /* Outputs, when not NULL, filled on every return. error: code 0 on success; else the code
     * the map returns, the signal, worker pid and exit status of a worker that died, and a
     * message ("map item 17: " + the item's mproc_task_fail message, or what killed its worker,
     * with its backtrace). failed_index: the item that failed the map (the first in input order;
     * a chunk that failed before it ran, e.g. on a broken pool, names its first item), or
     * SIZE_MAX when no item is to blame (success, -EINVAL, -EINTR, ...). */
    mproc_error *error;
    size_t *failed_index;
    /* Called in the caller's thread while the map runs, with how many items are done (those of
     * the chunks that have ended) and n: at most every progress_interval seconds while the
     * count moves, and once at the end (with n after a success). The count never goes down.
     * Signals stay blocked while it runs (a handler runs once the map returns). */
    void (*progress)(size_t done, size_t total, void *arg);
    void *progress_arg;
    double progress_interval; /* 0: 0.1 s; negative or NaN: -EINVAL */
} mproc_map_opts;
/* out[i] = fn(in[i]) for i < n. in/out may be any memory: items are staged through the arena
 * (no copy when both already lie in the arena). n == 0 returns 0 at once. Returns 0, the first
 * failing item's code, MPROC_EWORKERLOST/MPROC_ETIMELIMIT if a chunk's worker died, -EINTR when a
 * signal handler ran (remaining chunks are cancelled), MPROC_ECLOSED, MPROC_EBROKEN, -EINVAL,
 * -EFAULT (MPROC_CHECK_POINTERS found arg pointing at memory the workers do not have). */
int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, const void *in, size_t in_size, void *out,
                   size_t out_size, size_t n, const mproc_map_opts *opts);

/* ---- imap: lazy, variable-size items ------------------------------------------------------ */

typedef struct mproc_imap mproc_imap;
/* Produces the next input: 1 with *data and *len set (the bytes must stay valid until the next
 * call), 0 at the end of the input, negative to stop with that error. Called in the caller's
 * thread from mproc_imap_next, so an endless generator works: only `window` items are read
 * ahead. */
typedef int (*mproc_imap_input_fn)(const void **data, size_t *len, void *arg);
typedef struct {
    bool unordered; /* yield results as they complete (imap_unordered) instead of in order */
    size_t window;  /* tasks in flight at most; 0: 4 * workers + 4 */
    /* Items per task (Python's imap chunksize); 0 or 1: one task per item. A chunk's items are
     * run one after the other on one worker and their results come back together: use it for
     * many small items, where a task's own cost would dominate. If the worker dies, every item
     * of its chunk fails with the same error. */
    size_t chunksize;
} mproc_imap_opts;
int mproc_imap_new(mproc_imap **out, mproc_pool *p, mproc_task_fn fn, mproc_imap_input_fn input,
                   void *input_arg, const mproc_imap_opts *opts);
/* Next result: 0 with *data and *len (valid until the next call or free) and *index = the input's
 * position (may be NULL); MPROC_EEND at the end (it was MPROC_ECLOSED, which now means only that
 * the pool was closed under it); the task's error code if it failed (the iteration goes on: call
 * again for the next one; *index tells which failed); -ETIMEDOUT; -EINTR when a signal handler
 * ran while it waited (call again to go on). */
int mproc_imap_next(mproc_imap *it, const void **data, size_t *len, size_t *index, double timeout);
/* Up to n results at once (n >= 1), as n calls of mproc_imap_next would return them, without
 * its per-call cost: > 0, the number of items filled in, all from one task (so up to chunksize),
 * each valid until the next call or free; the first item's outcome as mproc_imap_next returns it
 * otherwise (MPROC_EEND, an item's error code, -ETIMEDOUT, -EINTR). A batch stops before an
 * item that failed: the next call returns its code, and mproc_imap_error describes it. */
typedef struct {
    const void *data;
    size_t len;
    size_t index; /* the input's position */
} mproc_imap_item;
int mproc_imap_next_batch(mproc_imap *it, mproc_imap_item *items, size_t n, double timeout);
/* The error record of the last failed item. */
int mproc_imap_error(mproc_imap *it, mproc_error *out);
/* Cancels what is still in flight. NULL-safe. */
void mproc_imap_free(mproc_imap *it);

/* ---- Shutdown ----------------------------------------------------------------------------- */

/* No more tasks (later submits: MPROC_ECLOSED); queued tasks still run. */
int mproc_pool_close(mproc_pool *p);
/* Kill the workers now; queued and running tasks fail with MPROC_ECANCELLED. Returns when the
 * workers are gone. */
int mproc_pool_terminate(mproc_pool *p);
/* After close or terminate: wait for the queued tasks and the workers' exit. -EINVAL if the pool
 * is still open, -ETIMEDOUT; -EINTR when a signal handler ran (the pool goes on closing: join
 * again); -EDEADLK from one of its own done-callbacks (which run in the thread that join waits
 * for). */
int mproc_pool_join(mproc_pool *p, double timeout);
/* Closes and joins a running pool (drains it), then frees it. Futures stay usable until freed.
 * NULL-safe. From one of its own done-callbacks it only closes the pool (the join would be
 * -EDEADLK); exit stops it. */
void mproc_pool_free(mproc_pool *p);

/* ---- Futures (process-local handles) ------------------------------------------------------ */

#define MPROC_ERROR_MSG_MAX 2048
#define MPROC_ERROR_HOST_MAX 64
struct mproc_error {
    int code;        /* what mproc_future_get returns */
    int signal;      /* the signal that killed the worker, or 0 */
    pid_t worker;    /* pid of the worker that ran (or was running) the task, or 0 */
    int exit_status; /* the worker's exit status if it exited during the task, else -1 */
    char message[MPROC_ERROR_MSG_MAX]; /* from mproc_task_fail, or what happened (with the
                                          worker's backtrace for a crash) */
    /* Where the task ran. rank: with the "mpi" backend, the MPI rank (in MPI_COMM_WORLD, or in
     * mproc_mpi_serve's communicator) whose worker ran it or was running it when it failed; -1
     * with the local backend and for a task no rank took (cancelled while queued). host
     * (NUL-terminated): that rank's host name; with the local backend this machine's when a
     * worker took the task; empty when no worker or rank took it. */
    int rank;
    char host[MPROC_ERROR_HOST_MAX];
};

/* 0 once done, -ETIMEDOUT, -EINTR (a signal handler ran while it waited and the task is not done;
 * the handler has run when it returns, the future stays usable), -EINVAL. */
int mproc_future_wait(mproc_future *f, double timeout);
bool mproc_future_done(mproc_future *f);
/* Wait, then copy the result into buf and set *len (len may be NULL): 0; -EMSGSIZE with
 * *len = needed when cap is too small (call again with a bigger buffer); or the task's error
 * code (MPROC_ETASKFAILED or its own, MPROC_EWORKERLOST, MPROC_ETIMELIMIT for a hard time limit,
 * MPROC_ECANCELLED, MPROC_EBROKEN); -ETIMEDOUT, -EINTR as mproc_future_wait. */
int mproc_future_get(mproc_future *f, void *buf, size_t cap, size_t *len, double timeout);
/* Zero-copy access to the result of a finished, successful task: valid until the future is
 * freed. -EAGAIN while not done; the error code if it failed. */
int mproc_future_result(mproc_future *f, const void **data, size_t *len);
/* The error record of a failed task: 0 and *out filled; -EAGAIN while not done; 1 (and *out
 * zeroed with code 0) if it succeeded. */
int mproc_future_error(mproc_future *f, mproc_error *out);
/* 0: cancelled before it started (done, MPROC_ECANCELLED); -EBUSY ("still running (cancel
 * requested)"): it is running, and mproc_task_cancelled() now returns true in it; -EALREADY:
 * already done. */
int mproc_future_cancel(mproc_future *f);
/* An eventfd that becomes readable once the future is done (made on first call, owned by the
 * future, closed by mproc_future_free). For poll/epoll loops. */
int mproc_future_fd(mproc_future *f);
/* Run cb(f, arg) once the future is done: in the pool's supervisor thread, or right away in
 * the caller when it is already done. Callbacks must not free the future or block for long; one
 * may call exit() or mproc_shutdown() (the pool's workers are killed, not waited for by it). */
int mproc_future_on_done(mproc_future *f, void (*cb)(mproc_future *f, void *arg), void *arg);
#define MPROC_FIRST_COMPLETED 1
#define MPROC_ALL_COMPLETED 2
/* Wait until one (FIRST) or all (ALL) of fs[0..n) are done: 0; -ETIMEDOUT; -EINTR (a signal handler
 * ran while it waited); -EINVAL.
 * n == 0 returns 0. */
int mproc_futures_wait(mproc_future **fs, size_t n, int mode, double timeout);
/* Release the handle (and its result). A task still queued is cancelled; a running one is left
 * to finish and its result dropped. NULL-safe. */
void mproc_future_free(mproc_future *f);

#ifdef __cplusplus
}
#endif
#endif
