/* mproc: processes, with Python's multiprocessing.Process semantics.
 *
 * A process runs `run(arg)` in a child started by fork; the return value of run is its exit code
 * (0..255). The exit code read back is N for a normal exit and -SIGNAL for a death by signal
 * (a segfault is -SIGSEGV). Children get stdin from /dev/null, their own name (also set as the
 * kernel thread name, so ps and top show it) and a parent-death signal: daemonic children are
 * SIGKILLed when their parent dies by any means; non-daemonic children get SIGTERM if their parent
 * dies without joining them (a normal exit joins them first). Children are reaped through their
 * pidfd: the library never calls waitpid(-1) and installs no SIGCHLD handler.
 *
 * A handle is used by the process that made it; from another process its calls return -ECHILD.
 *
 * Start methods (docs/start-methods.md): "fork" (default); "forkserver", where a helper forked at
 * mproc_init (or, without it, at the first process or pool) forks every child (safe for threaded
 * and large parents; the helper is reached through an unnamed socketpair, so no handshake is
 * needed, and the child sees the program as it was when the helper was forked: pass arg in the
 * arena or with arg_size); "thread", where the process is a thread (for
 * debuggers; terminate/kill/interrupt of a running one return -ENOTSUP). Without pidfds (Linux <
 * 5.3, valgrind) children are watched through sentinel pipes instead.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_process mproc_process;

/* The body of a process; its return value is the exit code. */
typedef int (*mproc_run_fn)(void *arg);

typedef struct {
    const char *name;         /* NULL: "Process-N" (in a child "Process-N:M"), at most 63 bytes */
    mproc_run_fn run;         /* required */
    void *arg;                /* passed to run; see arg_size */
    bool daemon;              /* killed when the parent exits, instead of joined */
    size_t arg_size;          /* if > 0: arg points to that many bytes, copied for the child (into
                               * the arena) at mproc_process_new, as Python pickles its args; needed
                               * with "forkserver" when arg is not in the arena */
    const char *start_method; /* NULL: the library's ("fork"); "forkserver", "thread". The
                               * environment variable MPROC_START overrides it. */
    const char *cpus; /* a CPU list ("0-3,8"): the child runs only on these CPUs (set before its
                       * body runs); NULL: where its parent may. A malformed list, or a CPU this
                       * process may not use: -EINVAL */
} mproc_process_opts;

/* -EINVAL: opts or opts->run is NULL, the name is too long, or a bad cpus list. */
int mproc_process_new(mproc_process **out, const mproc_process_opts *opts);
/* Start once: a second start returns -EINVAL. -EAGAIN/-ENOMEM when fork fails. */
int mproc_process_start(mproc_process *p);
/* Run the body in the calling process, as Python's run(): for debugging. Returns its result. */
int mproc_process_run(mproc_process *p);
/* Wait for the end: 0, -ETIMEDOUT, -EINTR when a signal handler ran while it waited (the child
 * has not ended; call again), -EINVAL if never started or a NaN timeout. */
int mproc_process_join(mproc_process *p, double timeout);
bool mproc_process_is_alive(mproc_process *p);
/* 0 and *code = N or -SIGNAL once ended; -EAGAIN when not started or still running. */
int mproc_process_exitcode(mproc_process *p, int *code);
/* Send SIGTERM, SIGKILL or SIGINT. 0 as well when the process already ended; -EINVAL if never
 * started. */
int mproc_process_terminate(mproc_process *p);
int mproc_process_kill(mproc_process *p);
int mproc_process_interrupt(mproc_process *p);
/* 0 before start. */
pid_t mproc_process_pid(const mproc_process *p);
const char *mproc_process_name(const mproc_process *p);
/* A pidfd, readable once the process has ended; owned by the handle. -EINVAL before start. */
int mproc_process_sentinel(const mproc_process *p);
/* Frees the handle. A process still running is detached: it is reaped later, and at exit it is
 * joined (or killed, if daemonic) like any other child. NULL-safe. */
void mproc_process_free(mproc_process *p);

#ifdef __cplusplus
}
#endif
#endif
