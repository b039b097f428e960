/* A worker rank of the remote ("mpi") backend: mproc_init never returns here. For each pool of
 * rank 0 this rank runs a local pool, whose workers are forked by the forkserver helper that
 * mproc_init started before the transport (so no worker inherits MPI state, and a task that
 * crashes kills a worker, not the rank). Tasks arrive in batches; each is submitted to the local
 * pool as it came (its function translated to this process's address); finished records go back
 * in batches with their outcome, the worker's pid and, for a failure, where it ran.
 *
 * One thread makes every transport call; it polls the transport and the local records for a
 * while after the last activity, then sleeps in short steps (link.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "log/log.h"
#include "mproc/log.h"
#include "platform/spin.h"
#include "pool/future.h"
#include "pool/local/local.h"
#include "pool/remote/remote.h"
#include "pool/task.h"
#include "process/process.h"

typedef struct {
    mproc_future *f;
    uint32_t idx, tag; /* rank 0's record */
    uint32_t kind;
} inflight;

typedef struct lpool lpool;
struct lpool {
    uint32_t id;
    mproc_pool *lp;
    inflight *fl;
    size_t nfl, cap;
    int workers;    /* the local pool's */
    bool full_scan; /* a cancel may have ended a record behind queued ones: look at all */
    bool closing, terminating;
    lpool *next;
};

static struct {
    mproc__link link;
    mproc__modtab mods; /* this process's modules */
    uintptr_t *rbase;   /* rank 0's module i: its base here, 0 when unusable */
    char **rwhy;        /* why not */
    uint32_t nr, rcap;
    lpool *pools;
    char host[64];
    mproc__wbuf out;
    uint32_t out_pool;
} S;

/* ---- logging: WARNING and above of this rank and its workers go to rank 0's log ---- */

/* Records of every process of this rank's family (the rank, the forkserver helper, the pool
 * workers) wait here, in the arena, until the serving loop sends them. Full: a record is kept
 * locally instead (this rank's own console). */
#define LOG_SLOTS 64
#define LOG_MSG_MAX 2048
typedef struct {
    _Atomic uint32_t seq; /* position + 1 once written */
    int32_t level;
    wire_log w;
    char msg[LOG_MSG_MAX];
} log_slot;
typedef struct {
    _Atomic uint32_t claim;
    uint32_t read; /* the serving loop only */
    log_slot slot[LOG_SLOTS];
} log_ring;
static log_ring *logs;

static bool forward_log(int level, const char *process, pid_t pid, const char *file, int line,
                        const char *func, const char *msg, size_t len)
{
    log_ring *lr = logs;
    if (!lr) return false;
    uint32_t pos = atomic_load(&lr->claim);
    do {
        /* read is the loop's; a stale value only makes this look fuller than it is */
        if (pos - __atomic_load_n(&lr->read, __ATOMIC_ACQUIRE) >= LOG_SLOTS) return false;
    } while (!atomic_compare_exchange_weak(&lr->claim, &pos, pos + 1));
    log_slot *s = &lr->slot[pos % LOG_SLOTS];
    s->level = level;
    s->w.pid = (int32_t)pid;
    s->w.line = line;
    snprintf(s->w.process, sizeof s->w.process, "%s",
             strcmp(process, "MainProcess") == 0 ? "rank" : process);
    if (strcmp(process, "MainProcess") == 0)
        snprintf(s->w.process, sizeof s->w.process, "rank%d", S.link.rank);
    snprintf(s->w.file, sizeof s->w.file, "%s", file);
    snprintf(s->w.func, sizeof s->w.func, "%s", func);
    if (len > LOG_MSG_MAX) len = LOG_MSG_MAX;
    memcpy(s->msg, msg, len);
    s->w.len = (uint32_t)len;
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    return true;
}

static bool send_logs(void)
{
    log_ring *lr = logs;
    bool did = false;
    while (lr) {
        log_slot *s = &lr->slot[lr->read % LOG_SLOTS];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != lr->read + 1) break;
        mproc__wbuf w = {0};
        mproc__wbuf_start(&w, WIRE_LOG, 0);
        mproc__wbuf_hdr(&w)->n = (uint32_t)s->level;
        size_t at = w.len;
        if (mproc__wbuf_add(&w, sizeof s->w + s->w.len)) {
            memcpy(w.b + at, &s->w, sizeof s->w);
            memcpy(w.b + at + sizeof s->w, s->msg, s->w.len);
            mproc__link_send_wbuf(&S.link, 0, &w);
        }
        free(w.b);
        __atomic_store_n(&lr->read, lr->read + 1, __ATOMIC_RELEASE);
        did = true;
    }
    return did;
}

/* ---- addresses ---- */

static void add_remote_module(uint32_t i, const wire_mod *wm, const char *path)
{
    if (i >= S.rcap) {
        uint32_t cap = S.rcap ? S.rcap * 2 : 64;
        while (cap <= i)
            cap *= 2;
        uintptr_t *b = realloc(S.rbase, cap * sizeof *b);
        if (b) S.rbase = b;
        char **w = realloc(S.rwhy, cap * sizeof *w);
        if (w) S.rwhy = w;
        if (!b || !w) return;
        for (uint32_t k = S.rcap; k < cap; k++) {
            S.rbase[k] = 0;
            S.rwhy[k] = NULL;
        }
        S.rcap = cap;
    }
    mproc__module m;
    memset(&m, 0, sizeof m);
    m.main = wm->main;
    m.id_len = wm->id_len < MPROC__MOD_ID_MAX ? wm->id_len : MPROC__MOD_ID_MAX;
    memcpy(m.id, wm->id, m.id_len);
    snprintf(m.path, sizeof m.path, "%s", path);
    char why[768];
    const mproc__module *l = mproc__modtab_match(&S.mods, &m, why, sizeof why);
    S.rbase[i] = l ? l->base : 0;
    free(S.rwhy[i]);
    S.rwhy[i] = l ? NULL : strdup(why);
    if (i >= S.nr) S.nr = i + 1;
}

/* rank 0's (module, offset) here; NULL with why when it cannot be. */
static void *resolve(const wire_ref *r, char *why, size_t cap)
{
    if (r->mod == MPROC__MOD_NONE) {
        snprintf(why, cap, "the address is in no module");
        return NULL;
    }
    if (r->mod >= S.nr || !S.rbase[r->mod]) {
        snprintf(why, cap, "cannot name the function here: %s",
                 r->mod < S.nr && S.rwhy[r->mod] ? S.rwhy[r->mod] : "unknown module");
        return NULL;
    }
    return (void *)(S.rbase[r->mod] + (uintptr_t)r->off);
}

/* ---- results ---- */

static void flush_out(void)
{
    if (S.out.len > sizeof(wire_hdr)) mproc__link_send_wbuf(&S.link, 0, &S.out);
    S.out.len = 0;
}

static wire_result *add_result(uint32_t pool, size_t res_len, size_t msg_len)
{
    size_t need = sizeof(wire_result) + WIRE_PAD(res_len) + WIRE_PAD(msg_len);
    if (S.out.len && (S.out_pool != pool || S.out.len + need > MPROC__WIRE_BATCH)) flush_out();
    if (!S.out.len) {
        mproc__wbuf_start(&S.out, WIRE_RESULTS, pool);
        S.out_pool = pool;
    }
    size_t at = S.out.len;
    if (!mproc__wbuf_add(&S.out, need)) return NULL;
    mproc__wbuf_hdr(&S.out)->n++;
    return (wire_result *)(S.out.b + at);
}

static void result_error(uint32_t pool, const wire_task *t, int code, const char *msg)
{
    size_t ml = strlen(msg);
    wire_result *r = add_result(pool, 0, ml);
    if (!r) return;
    *r = (wire_result){t->idx,
                       t->tag,
                       MPROC__SLOT_DONE_TASK_ERROR,
                       code,
                       0,
                       -1,
                       (int32_t)getpid(),
                       0,
                       (uint32_t)ml,
                       0,
                       0};
    memcpy(r + 1, msg, ml);
}

/* A finished local record back to rank 0 (lp->mu held). */
static void result_of(lpool *pl, const inflight *e)
{
    mproc_pool *p = pl->lp;
    mproc__slot *s = mproc__slot_at(p->slot_chunks, e->f->idx);
    uint32_t kind = MPROC__SLOT_KIND(atomic_load(&s->state));
    const void *res = NULL;
    size_t rl = 0;
    char msg[MPROC_ERROR_MSG_MAX + 160];
    size_t ml = 0;
    int code = mproc__slot_code(s);
    if (kind == MPROC__SLOT_DONE_OK) {
        rl = s->res_len;
        res = rl <= MPROC__SLOT_INLINE ? (const void *)s->inline_buf : s->res_ext;
    } else if (kind == MPROC__SLOT_DONE_TASK_ERROR) {
        if (s->err_msg) ml = (size_t)snprintf(msg, sizeof msg, "%s", s->err_msg);
    } else {
        ml = (size_t)snprintf(msg, sizeof msg, "%s [rank %d on %s]",
                              s->sup_msg ? s->sup_msg : mproc_strerror(code), S.link.rank, S.host);
    }
    if (ml >= sizeof msg) ml = sizeof msg - 1;
    uint64_t progress = 0;
    if (e->kind == TASK_MAP) memcpy(&progress, s->inline_buf, sizeof progress);
    wire_result *r = add_result(pl->id, rl, ml);
    if (!r) return;
    *r = (wire_result){e->idx,
                       e->tag,
                       kind,
                       code,
                       kind == MPROC__SLOT_DONE_OUTSIDE_ERROR ? s->sup_sig : 0,
                       kind == MPROC__SLOT_DONE_OUTSIDE_ERROR ? s->sup_status : -1,
                       s->pid,
                       (uint32_t)rl,
                       (uint32_t)ml,
                       0,
                       progress};
    unsigned char *d = (unsigned char *)(r + 1);
    if (rl) memcpy(d, res, rl);
    if (ml) memcpy(d + WIRE_PAD(rl), msg, ml);
}

/* Release a finished record as mproc_future_free would (lp->mu held). */
static void release_locked(mproc_pool *p, mproc_future *f)
{
    if (f->flags & MPROC__FUTURE_QUARANTINE)
        f->flags |= MPROC__FUTURE_ORPHAN;
    else
        mproc__pool_release_locked(p, f);
}

/* Send back the records that are done. fl is in submission order, which is the local queue's:
 * past the first (workers + 1) records not done, every record is still queued (at most
 * `workers` run at once), so the scan stops there instead of looking at the whole window (up
 * to thousands of records, every round) - unless a cancel may have ended a queued one. */
static bool collect(lpool *pl)
{
    if (!pl->nfl) return false;
    mproc_pool *p = pl->lp;
    bool did = false, full = pl->full_scan || pl->terminating;
    size_t k = 0, i = 0, pending = 0, limit = (size_t)pl->workers + 1;
    pl->full_scan = false;
    pthread_mutex_lock(&p->mu);
    for (; i < pl->nfl; i++) {
        inflight *e = &pl->fl[i];
        if (!mproc__slot_done(mproc__slot_at(p->slot_chunks, e->f->idx))) {
            pl->fl[k++] = *e;
            if (++pending >= limit && !full) {
                i++;
                break;
            }
            continue;
        }
        if (!pl->terminating) result_of(pl, e);
        release_locked(p, e->f);
        did = true;
    }
    if (i < pl->nfl && k < i) memmove(&pl->fl[k], &pl->fl[i], (pl->nfl - i) * sizeof *pl->fl);
    pl->nfl = k + (pl->nfl - i);
    pthread_mutex_unlock(&p->mu);
    return did;
}

/* ---- the map chunk, run by a local worker ---- */

/* Argument: wire_map (fn.off and arg.off already this process's addresses), the copied arg,
 * the items. Result: the items' results. */
static int remote_map_chunk(mproc_task *t)
{
    size_t alen;
    const unsigned char *a = mproc_task_arg(t, &alen);
    wire_map m;
    if (alen < sizeof m) return -EINVAL;
    memcpy(&m, a, sizeof m);
    mproc_map_fn fn = (mproc_map_fn)(uintptr_t)m.fn.off;
    void *arg = m.arg_size ? (void *)(a + sizeof m) : (void *)(uintptr_t)m.arg.off;
    const unsigned char *in = a + sizeof m + WIRE_PAD(m.arg_size);
    if (sizeof m + WIRE_PAD(m.arg_size) + m.count * m.in_size > alen) return -EINVAL;
    size_t out_bytes = m.count * m.out_size;
    unsigned char *out = malloc(out_bytes ? out_bytes : 1);
    if (!out) return -ENOMEM;
    int code = mproc__map_run_items(t, fn, (const char *)in, m.in_size, (char *)out, m.out_size,
                                    m.first, m.count, arg);
    if (!code) code = mproc_task_return(t, out, m.count * m.out_size);
    free(out);
    return code;
}

/* ---- messages from rank 0 ---- */

static lpool *find(uint32_t id)
{
    for (lpool *pl = S.pools; pl; pl = pl->next)
        if (pl->id == id) return pl;
    return NULL;
}

static void pool_new(uint32_t id, const unsigned char *b, size_t len)
{
    wire_pool_ack ack = {0, 0, ""};
    wire_pool_new pn;
    char why[600] = "";
    if (len < sizeof(wire_hdr) + sizeof pn) {
        ack.code = MPROC_EPROTO;
    } else {
        memcpy(&pn, b + sizeof(wire_hdr), sizeof pn);
        const unsigned char *initarg = b + sizeof(wire_hdr) + sizeof pn;
        char name[64];
        snprintf(name, sizeof name, "%.40s-r%d", pn.name, S.link.rank);
        mproc_pool_opts o = {.workers = pn.workers,
                             .name = name,
                             .max_tasks_per_child = pn.max_tasks,
                             .max_memory_per_child = pn.max_rss,
                             .task_timeout = pn.task_timeout,
                             .max_restarts = pn.max_restarts,
                             .restart_window = pn.restart_window,
                             .backend = "local",
                             .start_method = pn.start_method};
        if (pn.initializer.mod != MPROC__MOD_NONE || pn.initializer.off) {
            o.initializer = (int (*)(void *))resolve(&pn.initializer, why, sizeof why);
            if (!o.initializer) ack.code = MPROC_EPROTO;
        }
        if (pn.initarg_len) {
            if (sizeof(wire_hdr) + sizeof pn + pn.initarg_len > len) ack.code = MPROC_EPROTO;
            o.initarg = (void *)initarg;
            o.initarg_size = pn.initarg_len;
        } else if (pn.initarg.mod != MPROC__MOD_NONE) {
            o.initarg = resolve(&pn.initarg, why, sizeof why);
            if (!o.initarg) ack.code = MPROC_EPROTO;
        } else if (pn.initarg.off) {
            ack.code = -EINVAL;
            snprintf(why, sizeof why,
                     "initarg points at memory only rank 0 has: give "
                     "initarg_size so its bytes travel");
        }
        lpool *pl = calloc(1, sizeof *pl);
        if (!pl) ack.code = -ENOMEM;
        if (ack.code == 0) {
            ack.code = mproc_pool_new(&pl->lp, &o);
            if (ack.code < 0)
                snprintf(why, sizeof why, "cannot start its workers: %s", mproc_strerror(ack.code));
        }
        if (ack.code == 0) {
            pl->id = id;
            pl->next = S.pools;
            S.pools = pl;
            ack.workers = mproc_pool_size(pl->lp);
            pl->workers = ack.workers;
            /* Advice on task sizes is rank 0's to give, for the whole pool. */
            pl->lp->advised_overhead = pl->lp->advised_parallel = true;
            /* This loop polls beside the workers, always: see the function. */
            mproc__local_yield_at_once(pl->lp);
        } else {
            free(pl);
        }
    }
    snprintf(ack.msg, sizeof ack.msg, "%s", why);
    mproc__wbuf w = {0};
    mproc__wbuf_start(&w, WIRE_POOL_ACK, id);
    void *a = mproc__wbuf_add(&w, sizeof ack);
    if (a) memcpy(a, &ack, sizeof ack);
    mproc__link_send_wbuf(&S.link, 0, &w);
}

static void tasks(lpool *pl, uint32_t pool, unsigned char *b, size_t len, uint32_t n)
{
    size_t at = sizeof(wire_hdr);
    mproc_pool *p = pl ? pl->lp : NULL;
    if (p) pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < n && at + sizeof(wire_task) <= len; i++) {
        wire_task *t = (wire_task *)(b + at);
        unsigned char *arg = (unsigned char *)(t + 1);
        at += sizeof *t + WIRE_PAD(t->arg_len);
        if (at > len) break;
        if (!p) {
            result_error(pool, t, MPROC_EBROKEN, "the pool did not start on this rank");
            continue;
        }
        char why[800];
        mproc_task_fn fn;
        if (t->kind == TASK_MAP) {
            wire_map m;
            memcpy(&m, arg, sizeof m);
            void *ifn = resolve(&m.fn, why, sizeof why);
            void *iarg = m.arg.mod == MPROC__MOD_NONE ? NULL : resolve(&m.arg, why, sizeof why);
            if (!ifn || (m.arg.mod != MPROC__MOD_NONE && !iarg)) {
                result_error(pool, t, MPROC_EPROTO, why);
                continue;
            }
            m.fn.off = (uint64_t)(uintptr_t)ifn;
            m.arg.off = (uint64_t)(uintptr_t)iarg;
            memcpy(arg, &m, sizeof m);
            fn = remote_map_chunk;
        } else {
            void *f = resolve(&t->fn, why, sizeof why);
            if (!f) {
                result_error(pool, t, MPROC_EPROTO, why);
                continue;
            }
            if (t->kind == TASK_IMAP) {
                memcpy(arg, &f, sizeof f);
                fn = mproc__imap_chunk_fn;
            } else {
                fn = (mproc_task_fn)f;
            }
        }
        mproc_submit_opts so = {0};
        if (t->timeout_ns) so.timeout = (double)t->timeout_ns / 1e9;
        if (t->soft_ms) so.soft_timeout = t->soft_ms / 1e3;
        if (pl->nfl == pl->cap) {
            size_t cap = pl->cap ? pl->cap * 2 : 256;
            inflight *nf = realloc(pl->fl, cap * sizeof *nf);
            if (!nf) {
                result_error(pool, t, -ENOMEM, "out of memory on the worker rank");
                continue;
            }
            pl->fl = nf;
            pl->cap = cap;
        }
        mproc_future *f;
        int r = mproc__pool_check_open_locked(p);
        if (r == 0) r = mproc__pool_submit_locked(p, fn, arg, t->arg_len, &so, NULL, &f);
        if (r < 0) {
            snprintf(why, sizeof why, "cannot queue the task on rank %d: %s", S.link.rank,
                     mproc_strerror(r));
            result_error(pool, t, r, why);
            continue;
        }
        pl->fl[pl->nfl++] = (inflight){f, t->idx, t->tag, t->kind};
    }
    if (p) pthread_mutex_unlock(&p->mu);
}

static void cancels(lpool *pl, const unsigned char *b, size_t len, uint32_t n)
{
    if (!pl) return;
    for (uint32_t i = 0; i < n && sizeof(wire_hdr) + (i + 1) * sizeof(wire_cancel) <= len; i++) {
        const wire_cancel *c = (const wire_cancel *)(b + sizeof(wire_hdr)) + i;
        for (size_t k = 0; k < pl->nfl; k++)
            if (pl->fl[k].idx == c->idx && pl->fl[k].tag == (c->tag & 0x7fffffffu) &&
                mproc_future_cancel(pl->fl[k].f) == 0)
                pl->full_scan = true;
    }
}

static void pool_end(lpool **pp)
{
    lpool *pl = *pp;
    if (pl->terminating) mproc_pool_terminate(pl->lp);
    mproc_pool_close(pl->lp);
    mproc_pool_join(pl->lp, MPROC_FOREVER);
    collect(pl);
    flush_out();
    pthread_mutex_lock(&pl->lp->mu);
    for (size_t i = 0; i < pl->nfl; i++)
        release_locked(pl->lp, pl->fl[i].f);
    pthread_mutex_unlock(&pl->lp->mu);
    mproc_pool_free(pl->lp);
    mproc__link_send_hdr(&S.link, 0, WIRE_POOL_DONE, pl->id, 0);
    *pp = pl->next;
    free(pl->fl);
    free(pl);
}

/* Pools closed or terminated whose work is over: stop their workers and say so. */
static bool end_pools(void)
{
    bool did = false;
    for (lpool **pp = &S.pools; *pp;) {
        lpool *pl = *pp;
        if (pl->terminating || (pl->closing && pl->nfl == 0)) {
            pool_end(pp);
            did = true;
        } else {
            pp = &pl->next;
        }
    }
    return did;
}

static bool external; /* mproc_mpi_serve: return to the program at the end */

static void stop_serving(void)
{
    for (lpool *pl = S.pools; pl; pl = pl->next)
        pl->terminating = true;
    end_pools();
    send_logs();
    mproc__link_flush(&S.link, 2000000000);
    if (!S.link.dead) S.link.t->finalize();
    S.link.dead = true;
}

__attribute__((noreturn)) static void leave(int code)
{
    stop_serving();
    exit(code);
}

static bool on_message(unsigned char *b, size_t len)
{
    wire_hdr h;
    memcpy(&h, b, sizeof h);
    switch (h.type) {
    case WIRE_MODULE:
        if (len >= sizeof h + sizeof(wire_mod)) {
            const wire_mod *wm = (const wire_mod *)(b + sizeof h);
            if (sizeof h + sizeof *wm + wm->path_len <= len && wm->path_len)
                add_remote_module(h.n, wm, (const char *)(wm + 1));
        }
        break;
    case WIRE_POOL_NEW:
        pool_new(h.pool, b, len);
        break;
    case WIRE_TASKS:
        tasks(find(h.pool), h.pool, b, len, h.n);
        break;
    case WIRE_CANCEL:
        cancels(find(h.pool), b, len, h.n);
        break;
    case WIRE_POOL_CLOSE: {
        lpool *pl = find(h.pool);
        if (pl)
            pl->closing = true;
        else
            mproc__link_send_hdr(&S.link, 0, WIRE_POOL_DONE, h.pool, 0);
        break;
    }
    case WIRE_POOL_TERM: {
        lpool *pl = find(h.pool);
        if (pl)
            pl->terminating = true;
        else
            mproc__link_send_hdr(&S.link, 0, WIRE_POOL_DONE, h.pool, 0);
        break;
    }
    case WIRE_SHUTDOWN:
        return false;
    default:
        break;
    }
    return true;
}

static int hello(void)
{
    mproc__modtab_scan(&S.mods);
    mproc__idle idle = {0};
    wire_hello_ack ack;
    memset(&ack, 0, sizeof ack);
    snprintf(ack.host, sizeof ack.host, "%s", S.host);
    ack.cpus = mproc_cpu_count();
    for (;;) {
        int src;
        void *buf;
        size_t len;
        int g = mproc__link_recv(&S.link, &src, &buf, &len);
        if (g < 0) return g;
        if (g == 1) {
            unsigned char *b = buf;
            wire_hdr h;
            memcpy(&h, b, sizeof h);
            if (h.type == WIRE_HELLO) {
                size_t at = sizeof h;
                for (uint32_t i = 0; i < h.n && at + sizeof(wire_mod) <= len; i++) {
                    const wire_mod *wm = (const wire_mod *)(b + at);
                    at += sizeof *wm + WIRE_PAD(wm->path_len);
                    if (at > len || !wm->path_len) break;
                    add_remote_module(i, wm, (const char *)(wm + 1));
                    /* The program itself must be the same build: refuse to serve otherwise. */
                    if (wm->main && !S.rbase[i] && ack.code == 0) {
                        ack.code = MPROC_EPROTO;
                        snprintf(ack.msg, sizeof ack.msg,
                                 "%s; start every rank with the same executable", S.rwhy[i]);
                    }
                }
                free(buf);
                mproc__wbuf w = {0};
                mproc__wbuf_start(&w, WIRE_HELLO_ACK, 0);
                void *a = mproc__wbuf_add(&w, sizeof ack);
                if (a) memcpy(a, &ack, sizeof ack);
                mproc__link_send_wbuf(&S.link, 0, &w);
                return ack.code;
            }
            free(buf);
        }
        mproc__link_progress(&S.link);
        int64_t ns = mproc__idle_step(&idle, g == 1, S.link.nsends > 0);
        if (ns) nanosleep(&(struct timespec){0, ns}, NULL);
    }
}

/* Returns 0 when the service ends (mproc_mpi_serve), or ends the process (mproc_init's). */
static int serve(const mproc__transport *t, const mproc__launcher *l)
{
    gethostname(S.host, sizeof S.host - 1);
    /* Every local pool of this rank starts its workers from the forkserver helper, forked now,
     * before the transport exists. */
    setenv("MPROC_START", "forkserver", 1);
    setenv("MPROC_POOL_BACKEND", "local", 1);
    /* Before the helper is forked: its children inherit the hook and the ring. */
    void *ring = NULL;
    if (mproc__arena_alloc(&ring, sizeof(log_ring)) == 0) {
        memset(ring, 0, sizeof(log_ring));
        logs = ring;
        mproc__log_forward = forward_log;
    }
    mproc__forkserver_prestart();
    /* Ctrl-C goes to rank 0, which decides (the launcher forwards it to every rank). */
    if (!external) signal(SIGINT, SIG_IGN);
    S.link.t = t;
    char err[512] = "";
    int r = t->init(&S.link.rank, &S.link.size, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "mproc: rank %d cannot start MPI: %s\n", l->rank, err);
        if (external) return r;
        exit(1);
    }
    r = hello();
    if (r < 0) {
        /* Rank 0 reports it and ends the job. */
        mproc__link_flush(&S.link, 2000000000);
        for (;;)
            pause();
    }
    mproc__idle idle = {0};
    for (;;) {
        bool did = mproc__link_progress(&S.link);
        for (int k = 0; k < 64; k++) {
            int src;
            void *buf;
            size_t len;
            int g = mproc__link_recv(&S.link, &src, &buf, &len);
            if (g < 0 && !external) leave(1);
            if (g < 0) {
                stop_serving();
                return -EIO;
            }
            if (g != 1) break;
            did = true;
            bool go = on_message(buf, len);
            free(buf);
            if (!go && !external) {
                flush_out();
                leave(0);
            }
            if (!go) {
                flush_out();
                stop_serving();
                return 0;
            }
        }
        for (lpool *pl = S.pools; pl; pl = pl->next)
            did |= collect(pl);
        flush_out();
        did |= send_logs();
        did |= end_pools();
        int64_t ns = mproc__idle_step(&idle, did, S.link.nsends > 0);
        if (ns) nanosleep(&(struct timespec){0, ns}, NULL);
    }
}

void mproc__remote_serve(const mproc__transport *t, const mproc__launcher *l)
{
    serve(t, l);
    exit(0);
}

int mproc__remote_serve_comm(const mproc__transport *t, const mproc__launcher *l)
{
    /* The program's settings come back when the service ends. */
    char *start = getenv("MPROC_START") ? strdup(getenv("MPROC_START")) : NULL;
    char *backend = getenv("MPROC_POOL_BACKEND") ? strdup(getenv("MPROC_POOL_BACKEND")) : NULL;
    external = true;
    int r = serve(t, l);
    mproc__log_forward = NULL;
    if (start)
        setenv("MPROC_START", start, 1);
    else
        unsetenv("MPROC_START");
    if (backend)
        setenv("MPROC_POOL_BACKEND", backend, 1);
    else
        unsetenv("MPROC_POOL_BACKEND");
    free(start);
    free(backend);
    return r;
}
