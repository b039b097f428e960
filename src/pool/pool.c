/* The public pool API: new, size, worker pids, submit/apply, close/terminate/join/free, and the
 * choice of backend. The task records it hands out are slots.c's; the workers are the backend's. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "process/process.h"
#include "process/start_method.h"
#include "pool/advice.h"
#include "pool/backend.h"
#include "pool/future.h"
#include "pool/pointers.h"
#include "pool/remote/remote.h"
#include "platform/cpu.h"
#include "platform/ticks.h"

/* Every pool of this process, so that exit, mproc_shutdown() and a child's end stop them (no
 * worker replaced, every worker reaped by its supervisor) before the process layer ends the
 * remaining children: the hook of mproc__registry_on_end. */
static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_pool *pools;
static bool hooks_done;

static void pools_at_exit(void)
{
    pid_t self = getpid();
    pthread_mutex_lock(&pools_mu);
    for (mproc_pool *p = pools; p; p = p->next_pool) {
        if (p->owner != self || p->joined) continue;
        pthread_mutex_lock(&p->mu);
        p->state = MPROC__POOL_TERMINATED;
        pthread_mutex_unlock(&p->mu);
        p->backend->terminate(p, MPROC_ECANCELLED);
        /* Not joined when called from its own supervisor (a done-callback): a later free joins. */
        if (p->backend->join(p, INT64_MAX, false) == 0) p->joined = true;
    }
    pthread_mutex_unlock(&pools_mu);
}

static void pools_add(mproc_pool *p)
{
    pthread_mutex_lock(&pools_mu);
    if (!hooks_done) {
        mproc__registry_on_end(pools_at_exit); /* the only pool hook: the table has room */
        pthread_atfork(NULL, NULL, mproc__pool_forget_pid);
        hooks_done = true;
    }
    p->next_pool = pools;
    pools = p;
    pthread_mutex_unlock(&pools_mu);
}

static void pools_remove(mproc_pool *p)
{
    pthread_mutex_lock(&pools_mu);
    for (mproc_pool **pp = &pools; *pp; pp = &(*pp)->next_pool) {
        if (*pp == p) {
            *pp = p->next_pool;
            break;
        }
    }
    pthread_mutex_unlock(&pools_mu);
}

/* opts.initarg_size: the initializer gets an arena copy, valid in every worker. */
static int copy_initarg(mproc_pool *p)
{
    if (!p->opts.initarg_size) return 0;
    int r = mproc__arena_alloc(&p->initarg_copy, p->opts.initarg_size);
    if (r < 0) return r;
    memcpy(p->initarg_copy, p->opts.initarg, p->opts.initarg_size);
    p->opts.initarg = p->initarg_copy;
    return 0;
}

/* MPROC_CHECK_POINTERS: note what a worker has (pointers.c), and check initarg against it. A
 * thread pool shares our memory: nothing to check. */
static int snapshot_pointers(mproc_pool *p, const void *stack_floor)
{
    if (p->method == MPROC__START_THREAD || !mproc__ptr_check_enabled()) return 0;
    pid_t w;
    if (p->backend->worker_pids(p, &w, 1) < 1) return 0;
    if (mproc__ptr_snapshot_take(w, stack_floor, &p->ptrs) < 0) return 0;
    /* A fork worker was forked just now: it has whatever initarg points at (and its initializer
     * may have changed those bytes since). A forkserver one has the helper's older memory. */
    if (p->initarg_copy || p->method != MPROC__START_FORKSERVER) return 0;
    return mproc__ptr_check(p->ptrs, w, p->opts.initarg, "initarg", NULL, 0);
}

int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    mproc_pool_opts o = opts ? *opts : (mproc_pool_opts){0};
    /* Every number is checked here: a bad one is -EINVAL, never a crash later (limits in
     * mproc/pool.h). */
    if (o.workers < 0 || o.workers > MPROC_POOL_MAX_WORKERS || o.task_timeout < 0 ||
        o.restart_window < 0)
        return -EINVAL;
    if (mproc__timeout_check(o.task_timeout) || mproc__timeout_check(o.restart_window))
        return -EINVAL;
    if (o.name && (strlen(o.name) == 0 || strlen(o.name) > 48)) return -EINVAL;
    const char *backend_name = mproc__remote_forced() ? "mpi" : getenv("MPROC_POOL_BACKEND");
    if (!backend_name || !*backend_name) backend_name = o.backend;
    const mproc__pool_backend *backend = &mproc__pool_local_backend;
    if (backend_name && strcmp(backend_name, "local") != 0) {
        if (strcmp(backend_name, "mpi") != 0) return -EINVAL;
        int r = mproc__remote_select(&backend); /* pool/remote/setup.c */
        if (r < 0) return r;
    }
    if (o.initarg_size && !o.initarg) return -EINVAL;
    mproc__start_method method;
    int r = mproc__start_method_for(o.start_method, &method);
    if (r < 0) return r;
    cpu_set_t *sets;
    int nsets = mproc__cpu_placement((int)o.placement, o.cpus, &sets);
    if (nsets < 0) return nsets;
    static const char *const method_names[] = {"fork", "forkserver", "thread"};
    mproc_pool *p = calloc(1, sizeof *p);
    if (!p) {
        free(sets);
        return -ENOMEM;
    }
    p->cpu_sets = sets;
    p->ncpu_sets = nsets;
    p->magic = MPROC__POOL_MAGIC;
    p->owner = getpid();
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "PoolWorker");
    o.name = p->name;
    o.backend = backend->name;
    /* workers = 0: one per core or CPU placed on; confined to a list, one per CPU in it. */
    p->nworkers = o.workers                         ? o.workers
                  : o.placement != MPROC_PLACE_NONE ? nsets
                  : o.cpus                          ? CPU_COUNT(&sets[0])
                                                    : mproc_cpu_count();
    if (p->nworkers > MPROC_POOL_MAX_WORKERS) p->nworkers = MPROC_POOL_MAX_WORKERS;
    if (!o.max_restarts) o.max_restarts = (unsigned)(p->nworkers * 2 > 8 ? p->nworkers * 2 : 8);
    if (o.max_restarts > MPROC_POOL_MAX_RESTARTS) o.max_restarts = MPROC_POOL_NO_RESTART_LIMIT;
    if (o.restart_window == 0) o.restart_window = 10.0;
    p->opts = o;
    p->opts.cpus = NULL; /* the caller's string need not outlive this call: cpu_sets has it */
    p->free_head = MPROC__SLOT_NONE;
    p->backend = backend;
    p->method = (int)method;
    p->method_name = method_names[method];
    o.start_method = p->method_name;
    p->state = MPROC__POOL_OPEN;
    mproc__ticks_mark();
    p->stats_since_ns = mproc__now_ns();
    r = copy_initarg(p);
    if (r == 0) r = backend->start(p);
    if (r < 0) {
        mproc__arena_free(p->initarg_copy);
        free(p->cpu_sets);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return r;
    }
    /* Our own frame: the caller's locals lie above it, later calls' below. */
    r = snapshot_pointers(p, __builtin_frame_address(0));
    if (r < 0) {
        mproc_pool_terminate(p);
        p->backend->join(p, INT64_MAX, false);
        mproc__pool_destroy(p);
        return r;
    }
    pools_add(p);
    *out = p;
    return 0;
}

int mproc_pool_size(mproc_pool *p)
{
    return mproc__pool_valid(p) ? p->nworkers : -EINVAL;
}

const char *mproc_pool_backend(mproc_pool *p)
{
    return mproc__pool_valid(p) ? p->backend->name : NULL;
}

int mproc_pool_resize(mproc_pool *p, int n)
{
    if (!mproc__pool_valid(p) || n < 1 || n > MPROC_POOL_MAX_WORKERS) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = mproc__pool_check_open_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (r < 0) return r;
    r = p->backend->resize(p, n);
    if (r == 0) {
        pthread_mutex_lock(&p->mu);
        p->nworkers = n;
        pthread_mutex_unlock(&p->mu);
    }
    return r;
}

int mproc_pool_worker_pids(mproc_pool *p, pid_t *pids, int cap)
{
    if (!mproc__pool_valid(p) || (cap > 0 && !pids) || cap < 0) return -EINVAL;
    return p->backend->worker_pids(p, pids, cap);
}

int mproc_pool_submit_opts(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                           const mproc_submit_opts *o, mproc_future **out)
{
    if (out) *out = NULL;
    if (!mproc__pool_valid(p) || !fn || !out || (!arg && len)) return -EINVAL;
    if (o && (o->timeout < 0 || o->soft_timeout < 0 || mproc__timeout_check(o->timeout) ||
              mproc__timeout_check(o->soft_timeout)))
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = mproc__pool_check_open_locked(p);
    mproc_future *f = NULL;
    if (r == 0) r = mproc__pool_submit_locked(p, fn, arg, len, o, NULL, &f);
    pthread_mutex_unlock(&p->mu);
    if (r == 0) *out = f;
    return r;
}

int mproc_pool_submit(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                      mproc_future **out)
{
    return mproc_pool_submit_opts(p, fn, arg, len, NULL, out);
}

_Thread_local bool mproc__pool_wait_follows;

int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len, void *out,
                     size_t cap, size_t *outlen)
{
    mproc_future *f;
    mproc__pool_wait_follows = true;
    int r = mproc_pool_submit(p, fn, arg, len, &f);
    mproc__pool_wait_follows = false;
    if (r == 0) {
        r = mproc_future_get(f, out, cap, outlen, MPROC_FOREVER);
        if (r == -EINTR) mproc_future_cancel(f); /* nobody will read its result */
        mproc_future_free(f);
    }
    return r;
}

/* ---- shutdown ---- */

int mproc_pool_close(mproc_pool *p)
{
    if (!mproc__pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    bool was_open = p->state == MPROC__POOL_OPEN;
    if (was_open) p->state = MPROC__POOL_CLOSED;
    pthread_mutex_unlock(&p->mu);
    if (was_open) p->backend->close(p);
    if (was_open) mproc__advise_overhead(p);
    return 0;
}

int mproc_pool_terminate(mproc_pool *p)
{
    if (!mproc__pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    p->state = MPROC__POOL_TERMINATED;
    pthread_mutex_unlock(&p->mu);
    p->backend->terminate(p, MPROC_ECANCELLED);
    return 0;
}

/* mproc_pool_join; free joins without being interrupted. */
static int pool_join(mproc_pool *p, double timeout, bool intr)
{
    if (!mproc__pool_valid(p) || mproc__timeout_check(timeout)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int st = p->state;
    bool joined = p->joined;
    pthread_mutex_unlock(&p->mu);
    if (st == MPROC__POOL_OPEN) return -EINVAL;
    if (joined) return 0;
    int r = p->backend->join(p, mproc__deadline(timeout), intr);
    if (r == 0) {
        pthread_mutex_lock(&p->mu);
        p->joined = true;
        pthread_mutex_unlock(&p->mu);
    }
    return r;
}

int mproc_pool_join(mproc_pool *p, double timeout)
{
    return pool_join(p, timeout, true);
}

void mproc_pool_free(mproc_pool *p)
{
    if (!mproc__pool_valid(p)) return;
    if (p->owner == getpid()) {
        mproc_pool_close(p);
        /* -EDEADLK from the pool's own done-callback: freeing it would pull the supervisor's
         * memory from under it, so it stays (stopped at exit). */
        if (pool_join(p, MPROC_FOREVER, false) < 0) return;
    }
    pools_remove(p);
    pthread_mutex_lock(&p->mu);
    p->freed = true;
    mproc__pool_take_freed_locked(p);
    bool last = p->nlive == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) mproc__pool_destroy(p);
}
