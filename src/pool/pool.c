/* The pool: task records and their life cycle, submit/apply, shutdown policy, backend choice.
 *
 * Task records live in arena chunks of 4096 and are recycled through a free list, so submitting
 * allocates nothing once the pool has warmed up. Every record goes QUEUED -> RUNNING(owner) ->
 * DONE_* (or straight to DONE_SUPERR when cancelled); the parent decides failures from outside
 * (death, time limit, cancel, broken pool) only under pool->mu, and a CAS on the state settles
 * any race with the worker finishing at the same moment.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "process/start_method.h"
#include "pool/backend.h"

_Atomic uint32_t mproc__completion_gen;

void mproc__completion_bump(void)
{
    atomic_fetch_add(&mproc__completion_gen, 1);
    mproc__futex_wake(&mproc__completion_gen, INT32_MAX);
}

/* Every pool of this process, so that exit can stop them before the process module's exit
 * handler ends the workers (which would otherwise be replaced). */
static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_pool *pools;
static bool atexit_done;

static void pools_at_exit(void)
{
    pid_t self = getpid();
    pthread_mutex_lock(&pools_mu);
    for (mproc_pool *p = pools; p; p = p->gnext) {
        if (p->owner != self || p->joined) continue;
        pthread_mutex_lock(&p->mu);
        p->state = PS_TERMINATED;
        pthread_mutex_unlock(&p->mu);
        p->be->terminate(p, MPROC_ECANCELLED);
        p->be->join(p, INT64_MAX);
        p->joined = true;
    }
    pthread_mutex_unlock(&pools_mu);
}

/* getpid() is a system call: cache it for the owner check on every submit. */
static pid_t cached_pid;

static void forget_pid(void)
{
    cached_pid = 0;
}

static pid_t self_pid(void)
{
    pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
    if (!p) __atomic_store_n(&cached_pid, p = getpid(), __ATOMIC_RELAXED);
    return p;
}

static void pools_add(mproc_pool *p)
{
    pthread_mutex_lock(&pools_mu);
    if (!atexit_done) {
        atexit(pools_at_exit);
        pthread_atfork(NULL, NULL, forget_pid);
        atexit_done = true;
    }
    p->gnext = pools;
    pools = p;
    pthread_mutex_unlock(&pools_mu);
}

static void pools_remove(mproc_pool *p)
{
    pthread_mutex_lock(&pools_mu);
    for (mproc_pool **pp = &pools; *pp; pp = &(*pp)->gnext) {
        if (*pp == p) {
            *pp = p->gnext;
            break;
        }
    }
    pthread_mutex_unlock(&pools_mu);
}

static bool pool_valid(const mproc_pool *p)
{
    return p && p->magic == POOL_MAGIC && !p->freed;
}

int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    mproc_pool_opts o = opts ? *opts : (mproc_pool_opts){0};
    if (o.workers < 0 || o.task_timeout < 0 || o.restart_window < 0) return -EINVAL;
    if (o.name && (strlen(o.name) == 0 || strlen(o.name) > 48)) return -EINVAL;
    const char *be_name = getenv("MPROC_POOL_BACKEND");
    if (!be_name || !*be_name) be_name = o.backend;
    const mproc__pool_backend *be = &mproc__pool_local_backend;
    if (be_name && strcmp(be_name, "local") != 0) {
        if (strcmp(be_name, "mpi") == 0) return -ENOTSUP;
        return -EINVAL;
    }
    mproc__start_method method;
    int r = mproc__start_method_for(o.start_method, &method);
    if (r < 0) return r;
    static const char *const method_names[] = {"fork", "forkserver", "thread"};
    mproc_pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->magic = POOL_MAGIC;
    p->owner = getpid();
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "PoolWorker");
    o.name = p->name;
    o.backend = be->name;
    p->nworkers = o.workers ? o.workers : mproc_cpu_count();
    if (!o.max_restarts) o.max_restarts = (unsigned)(p->nworkers * 2 > 8 ? p->nworkers * 2 : 8);
    if (o.restart_window == 0) o.restart_window = 10.0;
    p->opts = o;
    p->free_head = SLOT_NONE;
    p->be = be;
    p->method = (int)method;
    p->method_name = method_names[method];
    o.start_method = p->method_name;
    p->state = PS_OPEN;
    r = be->start(p);
    if (r < 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return r;
    }
    pools_add(p);
    *out = p;
    return 0;
}

int mproc_pool_size(mproc_pool *p)
{
    return pool_valid(p) ? p->nworkers : -EINVAL;
}

int mproc_pool_worker_pids(mproc_pool *p, pid_t *pids, int cap)
{
    if (!pool_valid(p) || (cap > 0 && !pids) || cap < 0) return -EINVAL;
    return p->be->worker_pids(p, pids, cap);
}

/* ---- records ---- */

/* A chunk of SLOT_CHUNK records: an arena block (the records 64-aligned inside it, so each is
 * exactly two cache lines) and the matching futures, both faulted in at once here rather than
 * page by page on the submit path. */
static int grow_locked(mproc_pool *p)
{
    if (p->nchunks == SLOT_MAX_CHUNKS) return -ENOMEM;
    size_t bytes = sizeof(mproc__slot) * SLOT_CHUNK;
    void *raw;
    int r = mproc__arena_alloc(&raw, bytes + 64);
    if (r < 0) return r;
    mproc__slot *sc = (mproc__slot *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    mproc_future *fc = calloc(SLOT_CHUNK, sizeof *fc);
    if (!fc) {
        mproc__arena_free(raw);
        return -ENOMEM;
    }
    mproc__prefault(sc, bytes);
    mproc__prefault(fc, SLOT_CHUNK * sizeof *fc);
    uint32_t c = p->nchunks;
    p->fchunks[c] = fc;
    p->sraw[c] = raw;
    /* Published before any index in it is queued (the queue's release store orders it). */
    p->schunks[c] = sc;
    p->nchunks = c + 1;
    for (uint32_t i = SLOT_CHUNK; i-- > 0;) {
        fc[i].magic = FUTURE_MAGIC;
        fc[i].idx = (c << SLOT_CHUNK_SHIFT) | i;
        fc[i].pool = p;
        fc[i].efd = -1;
        fc[i].next_free = p->free_head;
        p->free_head = fc[i].idx;
    }
    return 0;
}

int mproc__pool_alloc_locked(mproc_pool *p, mproc_future **out)
{
    if (p->free_head == SLOT_NONE) {
        int r = grow_locked(p);
        if (r < 0) return r;
    }
    mproc_future *f = mproc__future_at(p, p->free_head);
    p->free_head = f->next_free;
    f->fl = FF_LIVE;
    f->cbs = NULL;
    f->stage = NULL;
    f->wnext = f->wprev = NULL;
    p->nlive++;
    *out = f;
    return 0;
}

int mproc__slot_fill(mproc__slot *s, mproc_task_fn fn, const void *arg, size_t len,
                     const mproc_submit_opts *o)
{
    if (len > UINT32_MAX) return -EMSGSIZE;
    s->fn = fn;
    s->arg_len = (uint32_t)len;
    if (len <= SLOT_INLINE) {
        if (len) memcpy(s->inl, arg, len);
    } else {
        int r = mproc__arena_alloc(&s->arg_ext, len);
        if (r < 0) return r;
        memcpy(s->arg_ext, arg, len);
    }
    atomic_store_explicit(&s->flags, 0, memory_order_relaxed);
    s->timeout_ns = 0;
    s->soft_timeout_ms = 0;
    if (o) {
        if (o->timeout > 0) s->timeout_ns = (int64_t)(o->timeout * 1e9);
        if (o->soft_timeout > 0) {
            double ms = o->soft_timeout * 1e3;
            s->soft_timeout_ms = ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int32_t)ms;
        }
    }
    s->pid = 0;
    s->sup_status = -1;
    atomic_store_explicit(&s->state, SK_QUEUED, memory_order_release);
    return 0;
}

void mproc__pool_release_locked(mproc_pool *p, mproc_future *f)
{
    mproc__slot *s = mproc__slot_at(p->schunks, f->idx);
    if (s->arg_ext) mproc__arena_free(s->arg_ext);
    if (s->res_ext) mproc__arena_free(s->res_ext);
    if (s->err_msg) mproc__arena_free(s->err_msg);
    free(s->sup_msg);
    s->arg_ext = s->res_ext = NULL;
    s->err_msg = s->sup_msg = NULL;
    s->sup_code = s->sup_sig = 0;
    s->err_code = 0;
    atomic_store_explicit(&s->state, SK_FREE, memory_order_relaxed);
    if (f->efd >= 0) close(f->efd);
    f->efd = -1;
    for (mproc__cb *c = f->cbs, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    f->cbs = NULL;
    if (f->stage) mproc__stage_unref(p, f->stage);
    f->stage = NULL;
    f->fl = 0;
    f->next_free = p->free_head;
    p->free_head = f->idx;
    p->nlive--;
}

bool mproc__slot_fail(mproc_pool *p, uint32_t idx, uint32_t expect, int code, int sig, int status,
                      pid_t pid, const char *fmt, ...)
{
    mproc__slot *s = mproc__slot_at(p->schunks, idx);
    uint32_t st = atomic_load(&s->state);
    if ((st & ~SS_WAITER) != expect) return false;
    char *msg = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
        va_end(ap);
    }
    s->sup_code = code;
    s->sup_sig = sig;
    s->sup_status = status;
    if (pid) s->pid = pid;
    free(s->sup_msg);
    s->sup_msg = msg;
    for (;;) {
        if ((st & ~SS_WAITER) != expect) {
            free(s->sup_msg);
            s->sup_msg = NULL;
            return false;
        }
        if (atomic_compare_exchange_weak(&s->state, &st, SK_DONE_SUPERR)) break;
    }
    if (st & SS_WAITER) mproc__futex_wake(&s->state, INT32_MAX);
    mproc_future *f = mproc__future_at(p, idx);
    if (f->fl & FF_WATCHED) p->be->notify(p);
    return true;
}

struct fail_arg {
    int code;
    const char *msg;
};

static void fail_one(mproc_pool *p, uint32_t idx, void *arg)
{
    struct fail_arg *a = arg;
    mproc__slot_fail(p, idx, SK_QUEUED, a->code, 0, -1, 0, "%s", a->msg);
}

void mproc__pool_fail_queued(mproc_pool *p, int code, const char *msg)
{
    struct fail_arg a = {code, msg};
    p->be->for_queued(p, fail_one, &a);
}

void mproc__pool_break(mproc_pool *p, const char *msg)
{
    pthread_mutex_lock(&p->mu);
    if (!atomic_load(&p->broken)) {
        snprintf(p->broken_msg, sizeof p->broken_msg, "pool broken: %s", msg);
        atomic_store(&p->broken, MPROC_EBROKEN);
        mproc__pool_fail_queued(p, MPROC_EBROKEN, p->broken_msg);
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static int check_open_locked(mproc_pool *p)
{
    if (p->owner != self_pid()) return -ECHILD;
    if (p->state != PS_OPEN) return MPROC_ECLOSED;
    int b = atomic_load(&p->broken);
    return b ? b : 0;
}

/* Queue records: the transport may be full (2^20 queued), then wait for room. */
int mproc__pool_queue_locked(mproc_pool *p, mproc_future **fs, uint32_t n)
{
    uint32_t idx[64];
    for (uint32_t i = 0; i < n;) {
        uint32_t k = n - i < 64 ? n - i : 64;
        for (uint32_t j = 0; j < k; j++)
            idx[j] = fs[i + j]->idx;
        int r = p->be->send(p, idx, k);
        if (r == -EAGAIN) {
            pthread_mutex_unlock(&p->mu);
            nanosleep(&(struct timespec){0, 200000}, NULL);
            pthread_mutex_lock(&p->mu);
            r = check_open_locked(p);
            if (r < 0) return r;
            continue;
        }
        if (r < 0) return r;
        i += k;
    }
    return 0;
}

int mproc_pool_submit_opts(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                           const mproc_submit_opts *o, mproc_future **out)
{
    if (out) *out = NULL;
    if (!pool_valid(p) || !fn || !out || (!arg && len)) return -EINVAL;
    if (o && (o->timeout < 0 || o->soft_timeout < 0)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = check_open_locked(p);
    mproc_future *f = NULL;
    if (r == 0) r = mproc__pool_alloc_locked(p, &f);
    if (r == 0) {
        r = mproc__slot_fill(mproc__slot_at(p->schunks, f->idx), fn, arg, len, o);
        if (r == 0) r = mproc__pool_queue_locked(p, &f, 1);
        if (r < 0) mproc__pool_release_locked(p, f);
    }
    pthread_mutex_unlock(&p->mu);
    if (r == 0) *out = f;
    return r;
}

int mproc_pool_submit(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                      mproc_future **out)
{
    return mproc_pool_submit_opts(p, fn, arg, len, NULL, out);
}

int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len, void *out,
                     size_t cap, size_t *outlen)
{
    mproc_future *f;
    int r = mproc_pool_submit(p, fn, arg, len, &f);
    if (r < 0) return r;
    r = mproc_future_get(f, out, cap, outlen, MPROC_FOREVER);
    mproc_future_free(f);
    return r;
}

/* ---- shutdown ---- */

int mproc_pool_close(mproc_pool *p)
{
    if (!pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    bool was_open = p->state == PS_OPEN;
    if (was_open) p->state = PS_CLOSED;
    pthread_mutex_unlock(&p->mu);
    if (was_open) p->be->close(p);
    return 0;
}

int mproc_pool_terminate(mproc_pool *p)
{
    if (!pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    p->state = PS_TERMINATED;
    pthread_mutex_unlock(&p->mu);
    p->be->terminate(p, MPROC_ECANCELLED);
    return 0;
}

int mproc_pool_join(mproc_pool *p, double timeout)
{
    if (!pool_valid(p)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int st = p->state;
    bool joined = p->joined;
    pthread_mutex_unlock(&p->mu);
    if (st == PS_OPEN) return -EINVAL;
    if (joined) return 0;
    int r = p->be->join(p, mproc__deadline(timeout));
    if (r == 0) {
        pthread_mutex_lock(&p->mu);
        p->joined = true;
        pthread_mutex_unlock(&p->mu);
    }
    return r;
}

/* Free the pool's memory: the workers are gone and no future refers to it any more. */
void mproc__pool_destroy(mproc_pool *p)
{
    for (uint32_t c = 0; c < p->nchunks; c++) {
        mproc__arena_free(p->sraw[c]);
        free(p->fchunks[c]);
    }
    p->be->destroy(p);
    if (p->stage_cache) {
        mproc__arena_free(p->stage_cache->mem);
        free(p->stage_cache);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    p->magic = 0;
    free(p);
}

void mproc_pool_free(mproc_pool *p)
{
    if (!pool_valid(p)) return;
    if (p->owner == getpid()) {
        mproc_pool_close(p);
        mproc_pool_join(p, MPROC_FOREVER);
    }
    pools_remove(p);
    pthread_mutex_lock(&p->mu);
    p->freed = true;
    bool last = p->nlive == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) mproc__pool_destroy(p);
}
