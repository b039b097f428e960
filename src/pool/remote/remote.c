/* Rank 0 of the remote ("mpi") backend: the pools' task records stay here, in the arena, as for
 * the local backend; rounds of progress (comm_round, under R.mu: the only code that calls the
 * transport) ship queued records to the worker ranks in batches and write their results back
 * into the records, completing them exactly as a local worker would (same states, same
 * wake-ups), so futures, map, imap and callbacks work unchanged. One comm thread per process
 * runs them, and so does a caller waiting for a future while results keep coming
 * (remote_wait); callbacks stay the comm thread's.
 *
 * A record sent to rank r goes QUEUED -> RUNNING(r); a tag per record (its dispatch number)
 * tells a late result of a failed record (terminate) from the result of its next use. Each rank
 * gets at most `window` records at a time, enough that its workers never wait for the network.
 * Hard time limits, crashes and replacement of workers are the worker ranks' local pools' job
 * (serve.c): they come back as ordinary results.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "log/log.h"
#include "mproc/log.h"
#include "platform/interrupt.h"
#include "platform/spin.h"
#include "pool/future.h"
#include "pool/remote/remote.h"
#include "process/signals.h"

enum { PH_STARTING, PH_OPEN, PH_DONE };

/* What rank 0 keeps of a record beside it: its dispatch number (TAG_MASK bits; TAG_CANCEL once its
 * cancel request went out, which its result still matches) and the rank it went to (-1: none
 * yet, for the error record's rank and host). */
#define TAG_MASK 0x7fffffffu
#define TAG_CANCEL 0x80000000u
typedef struct {
    uint32_t tag;
    int32_t rank;
} rrec;

typedef struct rpool rpool;
struct rpool {
    mproc_pool *p;
    uint32_t id;
    rpool *next;
    mproc__slot *chunks[MPROC__SLOT_MAX_CHUNKS]; /* p->slot_chunks */
    /* p->mu: records queued by send, not yet dispatched (a ring) */
    uint32_t *pend;
    uint64_t ph, pt, pcap;
    int phase;
    bool new_sent, close_req, close_sent, term_req, term_sent, finished;
    int term_code;
    int acks, dones;
    int code;
    char msg[512];
    _Atomic bool scan_req;
    /* comm thread */
    int nr;
    int *workers, *inflight, *window;
    /* The window adapts (unless MPROC_MPI_WINDOW sets it): from base up while a rank drains its
     * window in under 2 ms (tiny tasks: more in flight hides the round trip), back down when it
     * takes over 50 ms (long tasks: fewer queued on one rank while another may run out). */
    int *base;
    int64_t *rate_since;
    uint64_t *rate_done;
    bool fixed_window;
    mproc__wbuf *out;
    rrec *recs[MPROC__SLOT_MAX_CHUNKS];
    uint32_t next_tag;
    mproc__stat_line *lines;
    void *lines_block;
    int64_t next_cancel_scan;
};

static struct {
    mproc__link link;
    mproc__modtab mods;
    uint32_t mods_sent;
    pthread_t thr;
    pid_t pid;
    pthread_mutex_t mu; /* ready, stop; and the list of pools */
    pthread_cond_t cv;
    _Atomic uint32_t wake;
    _Atomic bool sleeping; /* the comm thread is in (or about to enter) its futex wait */
    _Atomic int drivers;   /* callers running rounds while they wait (remote_wait) */
    bool ready, failed, stop, stopped;
    rpool *pools;
    uint32_t next_id;
    char (*hosts)[64];
    mproc__launcher l;
    rpool *serve_rp; /* mproc_mpi_serve's pool: freeing it ends the service */
} R = {.mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP, .cv = PTHREAD_COND_INITIALIZER};

static rpool *RP(mproc_pool *p)
{
    return p->backend_state;
}

static bool in_comm(void)
{
    return R.ready && pthread_equal(pthread_self(), R.thr);
}

bool mproc__remote_rank0_active(void)
{
    return R.ready && !R.stop && R.pid == mproc__pid();
}

/* A submit calls this for every task: the system call only when the comm thread sleeps (it sets
 * sleeping before it checks wake in its futex wait, we bump wake before we read sleeping). */
static void wake_comm(void)
{
    atomic_fetch_add(&R.wake, 1);
    if (atomic_load(&R.sleeping)) mproc__futex_wake(&R.wake, 1);
}

/* A caller running rank 0's round while it waits (remote_wait): done-callbacks are not its to
 * run (they run in the comm thread, the pool's supervisor), nor a nested round. */
static _Thread_local bool driving;

/* Done-processing of watched futures asked for (rp->scan_req): the comm thread runs it (p->mu
 * held); a driving caller leaves it to the comm thread and wakes it. */
static void scan_pending(rpool *rp)
{
    if (!atomic_load(&rp->scan_req)) return;
    if (!in_comm()) {
        wake_comm();
        return;
    }
    atomic_store(&rp->scan_req, false);
    mproc__future_scan_watch(rp->p);
}

/* ---- addresses ---- */

static void announce_modules(void)
{
    for (; R.mods_sent < R.mods.n; R.mods_sent++) {
        const mproc__module *m = &R.mods.mod[R.mods_sent];
        for (int r = 1; r < R.link.size; r++) {
            mproc__wbuf w = {0};
            mproc__wbuf_start(&w, WIRE_MODULE, 0);
            size_t pl = strlen(m->path) + 1;
            wire_mod *wm = mproc__wbuf_add(&w, sizeof *wm);
            char *path = mproc__wbuf_add(&w, pl);
            if (!wm || !path) continue;
            wm = (wire_mod *)(w.b + sizeof(wire_hdr));
            *wm = (wire_mod){m->main, m->id_len, (uint32_t)pl, 0, {0}};
            memcpy(wm->id, m->id, m->id_len);
            memcpy(w.b + sizeof(wire_hdr) + sizeof *wm, m->path, pl);
            mproc__wbuf_hdr(&w)->n = R.mods_sent;
            mproc__link_send_wbuf(&R.link, r, &w);
        }
    }
}

void mproc__wire_put_ref(mproc__modtab *t, const void *addr, wire_ref *out)
{
    uint32_t mod;
    uint64_t off;
    if (!mproc__modtab_ref(t, addr, &mod, &off)) {
        *out = (wire_ref){MPROC__MOD_NONE, 0, (uint64_t)(uintptr_t)addr};
        return;
    }
    *out = (wire_ref){mod, 0, off};
    if (t == &R.mods && R.mods.n > R.mods_sent) announce_modules();
}

/* ---- dispatch ---- */

static rrec *rec_of(rpool *rp, uint32_t idx)
{
    uint32_t c = idx >> MPROC__SLOT_CHUNK_SHIFT;
    if (!rp->recs[c]) {
        rp->recs[c] = calloc(MPROC__SLOT_CHUNK, sizeof(rrec));
        if (!rp->recs[c]) return NULL;
    }
    return &rp->recs[c][idx & (MPROC__SLOT_CHUNK - 1)];
}

static uint32_t *tag_of(rpool *rp, uint32_t idx)
{
    rrec *e = rec_of(rp, idx);
    return e ? &e->tag : NULL;
}

static void flush_rank(rpool *rp, int r)
{
    mproc__wbuf *w = &rp->out[r];
    if (w->len <= sizeof(wire_hdr)) return;
    mproc__link_send_wbuf(&R.link, r, w);
}

static int pick_rank(rpool *rp)
{
    int best = -1, room = 0;
    for (int r = 1; r < rp->nr; r++) {
        int free_ = rp->window[r] - rp->inflight[r];
        if (free_ > room) {
            room = free_;
            best = r;
        }
    }
    return best;
}

/* One record into rank r's batch (p->mu held; the record is RUNNING(r) already). */
static int pack(rpool *rp, int r, uint32_t idx, mproc__slot *s, uint32_t tag)
{
    mproc__map_view v;
    bool map = mproc__map_chunk_view(s, &v);
    bool imap = !map && s->fn == mproc__imap_chunk_fn;
    const unsigned char *arg = s->arg_len <= MPROC__SLOT_INLINE ? s->inline_buf : s->arg_ext;
    size_t alen = map ? sizeof(wire_map) + WIRE_PAD(v.arg_size) + v.count * v.in_size : s->arg_len;
    if (alen > INT32_MAX - 4096) return -EMSGSIZE;
    mproc__wbuf *w = &rp->out[r];
    size_t need = sizeof(wire_task) + WIRE_PAD(alen);
    if (w->len > sizeof(wire_hdr) && w->len + need > MPROC__WIRE_BATCH) flush_rank(rp, r);
    if (w->len == 0) mproc__wbuf_start(w, WIRE_TASKS, rp->id);
    wire_ref fn;
    if (map) {
        fn = (wire_ref){MPROC__MOD_NONE, 0, 0};
    } else {
        mproc_task_fn f = s->fn;
        if (imap) memcpy(&f, arg, sizeof f);
        mproc__wire_put_ref(&R.mods, (const void *)f, &fn);
        if (fn.mod == MPROC__MOD_NONE) return -EFAULT;
    }
    wire_map wm;
    if (map) {
        memset(&wm, 0, sizeof wm);
        mproc__wire_put_ref(&R.mods, (const void *)v.fn, &wm.fn);
        if (wm.fn.mod == MPROC__MOD_NONE) return -EFAULT;
        if (v.arg_size)
            wm.arg = (wire_ref){MPROC__MOD_NONE, 0, 0};
        else
            mproc__wire_put_ref(&R.mods, v.arg, &wm.arg);
        if (!v.arg_size && v.arg && wm.arg.mod == MPROC__MOD_NONE) return -EFAULT;
        wm.in_size = v.in_size;
        wm.out_size = v.out_size;
        wm.count = v.count;
        wm.first = v.first;
        wm.arg_size = v.arg_size;
    }
    size_t at = w->len;
    if (!mproc__wbuf_add(w, need)) return -ENOMEM;
    wire_task *t = (wire_task *)(w->b + at);
    *t = (wire_task){idx,
                     tag,
                     fn,
                     (uint32_t)alen,
                     map    ? TASK_MAP
                     : imap ? TASK_IMAP
                            : TASK_PLAIN,
                     s->timeout_ns,
                     s->soft_timeout_ms,
                     0};
    unsigned char *dst = (unsigned char *)(t + 1);
    if (map) {
        memcpy(dst, &wm, sizeof wm);
        if (v.arg_size) memcpy(dst + sizeof wm, v.arg, v.arg_size);
        memcpy(dst + sizeof wm + WIRE_PAD(v.arg_size), v.in, v.count * v.in_size);
    } else if (alen) {
        memcpy(dst, arg, alen);
    }
    mproc__wbuf_hdr(w)->n++;
    return 0;
}

static bool dispatch(rpool *rp)
{
    mproc_pool *p = rp->p;
    bool did = false;
    while (rp->ph < rp->pt) {
        int r = pick_rank(rp);
        if (r < 0) break;
        uint32_t idx = rp->pend[rp->ph++ & (rp->pcap - 1)];
        did = true;
        mproc__slot *s = mproc__slot_at(p->slot_chunks, idx);
        uint32_t st = atomic_load(&s->state);
        rrec *rec = rec_of(rp, idx);
        if (!rec) {
            mproc__slot_fail(p, idx, MPROC__SLOT_QUEUED, -ENOMEM, 0, -1, 0, "out of memory");
            continue;
        }
        bool mine = false;
        while (MPROC__SLOT_KIND(st) == MPROC__SLOT_QUEUED && !mine)
            mine = atomic_compare_exchange_weak(
                &s->state, &st, (st & MPROC__SLOT_WAITER) | MPROC__SLOT_RUNNING_BY(r));
        if (!mine) continue; /* cancelled meanwhile */
        rec->tag = ++rp->next_tag & TAG_MASK;
        int e = pack(rp, r, idx, s, rec->tag);
        if (e < 0) {
            mproc__slot_fail(p, idx, MPROC__SLOT_RUNNING_BY(r), e == -EFAULT ? MPROC_EPROTO : e, 0,
                             -1, 0, "%s",
                             e == -EFAULT ? "the task's function (or map arg) is not in any "
                                            "loaded module: it cannot be named on another rank"
                                          : "cannot send the task");
            continue;
        }
        rec->rank = r;
        rp->inflight[r]++;
        mproc__stat_add(&rp->lines[r - 1].started, 1);
    }
    for (int r = 1; r < rp->nr; r++)
        flush_rank(rp, r);
    return did;
}

/* ---- results ---- */

static void complete(rpool *rp, int r, const wire_result *res, const unsigned char *data,
                     const char *msg)
{
    mproc_pool *p = rp->p;
    mproc__slot *s = mproc__slot_at(p->slot_chunks, res->idx);
    uint32_t expect = MPROC__SLOT_RUNNING_BY(r);
    uint32_t *tag = tag_of(rp, res->idx);
    if (!tag || (*tag & TAG_MASK) != res->tag) return;
    uint32_t st = atomic_load(&s->state);
    if ((st & ~MPROC__SLOT_WAITER) != expect) return; /* failed here meanwhile (terminate) */
    rp->inflight[r]--;
    mproc__stat_line *line = &rp->lines[r - 1];
    if (res->kind == MPROC__SLOT_DONE_OUTSIDE_ERROR) {
        mproc__map_view v;
        if (mproc__map_chunk_view(s, &v)) mproc__map_chunk_set_progress(s, res->progress);
        mproc__slot_fail(p, res->idx, expect, res->code, res->sig, res->status, res->pid, "%.*s",
                         (int)res->msg_len, msg);
        if (res->code == MPROC_EBROKEN) {
            pthread_mutex_unlock(&p->mu);
            mproc__pool_break(p, msg);
            pthread_mutex_lock(&p->mu);
        }
        return;
    }
    mproc__map_view v;
    bool map = mproc__map_chunk_view(s, &v);
    if (res->kind == MPROC__SLOT_DONE_OK) {
        if (map) {
            if (res->res_len == v.count * v.out_size) memcpy(v.out, data, res->res_len);
        } else if (res->res_len <= MPROC__SLOT_INLINE) {
            if (s->res_ext) mproc__arena_free(s->res_ext);
            s->res_ext = NULL;
            memcpy(s->inline_buf, data, res->res_len);
        } else {
            void *b = NULL;
            if (mproc__arena_alloc(&b, res->res_len) < 0) {
                mproc__slot_fail(p, res->idx, expect, -ENOMEM, 0, -1, res->pid,
                                 "no memory for the result");
                return;
            }
            memcpy(b, data, res->res_len);
            s->res_ext = b;
        }
        s->res_len = map ? 0 : res->res_len;
        mproc__stat_add(&line->ok, 1);
    } else {
        if (map) mproc__map_chunk_set_progress(s, res->progress);
        s->err_code = res->code;
        if (res->msg_len) {
            char *m = NULL;
            if (mproc__arena_alloc((void **)&m, res->msg_len + 1) == 0) {
                memcpy(m, msg, res->msg_len);
                m[res->msg_len] = '\0';
                s->err_msg = m;
            }
        }
        mproc__stat_add(res->code == MPROC_ECANCELLED ? &line->cancelled : &line->failed, 1);
    }
    s->pid = res->pid;
    while (!atomic_compare_exchange_weak(&s->state, &st, res->kind)) {
    }
    if (st & MPROC__SLOT_WAITER) mproc__wake(&s->state, INT32_MAX);
    if (atomic_load(&s->flags) & MPROC__SLOT_NOTIFY) atomic_store(&rp->scan_req, true);
}

#define WINDOW_MAX 8192

static void adapt_window(rpool *rp, int r, uint32_t n)
{
    if (rp->fixed_window) return;
    int64_t now = mproc__now_ns();
    rp->rate_done[r] += n;
    int64_t dt = now - rp->rate_since[r];
    if (dt < 1000000) return;
    double drain =
        rp->rate_done[r] ? (double)rp->window[r] * (double)dt / (double)rp->rate_done[r] : 1e18;
    if (drain < 2e6 && rp->window[r] < WINDOW_MAX && rp->inflight[r] * 2 >= rp->window[r])
        rp->window[r] *= 2;
    else if (drain > 5e7 && rp->window[r] > rp->base[r])
        rp->window[r] = rp->window[r] / 2 > rp->base[r] ? rp->window[r] / 2 : rp->base[r];
    rp->rate_since[r] = now;
    rp->rate_done[r] = 0;
}

static void on_results(rpool *rp, int r, const unsigned char *b, size_t len, uint32_t n)
{
    mproc_pool *p = rp->p;
    adapt_window(rp, r, n);
    size_t at = sizeof(wire_hdr);
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < n && at + sizeof(wire_result) <= len; i++) {
        const wire_result *res = (const wire_result *)(b + at);
        at += sizeof *res;
        size_t rl = WIRE_PAD(res->res_len), ml = WIRE_PAD(res->msg_len);
        if (at + rl + ml > len) break;
        complete(rp, r, res, b + at, (const char *)b + at + rl);
        at += rl + ml;
    }
    scan_pending(rp);
    pthread_mutex_unlock(&p->mu);
}

/* ---- control ---- */

static void send_all(rpool *rp, uint32_t type)
{
    for (int r = 1; r < rp->nr; r++)
        mproc__link_send_hdr(&R.link, r, type, rp->id, 0);
}

static void send_pool_new(rpool *rp)
{
    mproc_pool *p = rp->p;
    const mproc_pool_opts *o = &p->opts;
    for (int r = 1; r < rp->nr; r++) {
        mproc__wbuf w = {0};
        mproc__wbuf_start(&w, WIRE_POOL_NEW, rp->id);
        wire_pool_new pn;
        memset(&pn, 0, sizeof pn);
        pn.workers = o->workers;
        const char *env = getenv("MPROC_MPI_WORKERS");
        if (env && atoi(env) > 0) pn.workers = atoi(env);
        pn.max_tasks = o->max_tasks_per_child;
        pn.max_rss = o->max_memory_per_child;
        pn.task_timeout = o->task_timeout;
        pn.restart_window = o->restart_window;
        pn.max_restarts = o->max_restarts;
        pn.initarg_len = (uint32_t)o->initarg_size;
        mproc__wire_put_ref(&R.mods, (const void *)o->initializer, &pn.initializer);
        if (!o->initarg_size) mproc__wire_put_ref(&R.mods, o->initarg, &pn.initarg);
        snprintf(pn.name, sizeof pn.name, "%s", p->name);
        snprintf(pn.start_method, sizeof pn.start_method, "%s",
                 p->method == 2 ? "thread" : "forkserver");
        void *a = mproc__wbuf_add(&w, sizeof pn);
        if (a) memcpy(a, &pn, sizeof pn);
        if (o->initarg_size) {
            void *ia = mproc__wbuf_add(&w, o->initarg_size);
            if (ia) memcpy(ia, o->initarg, o->initarg_size);
        }
        mproc__link_send_wbuf(&R.link, r, &w);
    }
}

/* Fail every record running on a worker rank (terminate, or the pool failed to start). */
static void fail_running(rpool *rp, int code, const char *msg)
{
    mproc_pool *p = rp->p;
    for (uint32_t c = 0; c < p->nchunks; c++) {
        for (uint32_t i = 0; i < MPROC__SLOT_CHUNK; i++) {
            uint32_t idx = c << MPROC__SLOT_CHUNK_SHIFT | i;
            uint32_t st = atomic_load(&p->slot_chunks[c][i].state) & ~MPROC__SLOT_WAITER;
            if (MPROC__SLOT_KIND(st) != MPROC__SLOT_RUNNING) continue;
            int r = (int)MPROC__SLOT_OWNER(st);
            if (mproc__slot_fail(p, idx, st, code, 0, -1, 0, "%s", msg) && r > 0 && r < rp->nr)
                rp->inflight[r]--;
        }
    }
}

/* Forward cooperative cancels (mproc_future_cancel of a running task) now and then. */
static void forward_cancels(rpool *rp)
{
    mproc_pool *p = rp->p;
    int64_t now = mproc__now_ns();
    if (now < rp->next_cancel_scan) return;
    rp->next_cancel_scan = now + 20000000;
    bool any = false;
    for (int r = 1; r < rp->nr; r++)
        any |= rp->inflight[r] > 0;
    if (!any) return;
    mproc__wbuf *w = calloc((size_t)rp->nr, sizeof *w);
    if (!w) return;
    for (uint32_t c = 0; c < p->nchunks; c++) {
        for (uint32_t i = 0; i < MPROC__SLOT_CHUNK; i++) {
            mproc__slot *s = &p->slot_chunks[c][i];
            uint32_t st = atomic_load(&s->state);
            if (MPROC__SLOT_KIND(st) != MPROC__SLOT_RUNNING ||
                !(atomic_load(&s->flags) & MPROC__SLOT_CANCEL))
                continue;
            uint32_t idx = c << MPROC__SLOT_CHUNK_SHIFT | i;
            uint32_t *tag = tag_of(rp, idx);
            int r = (int)MPROC__SLOT_OWNER(st);
            if (!tag || (*tag & TAG_CANCEL) || r <= 0 || r >= rp->nr) continue;
            if (!w[r].len) mproc__wbuf_start(&w[r], WIRE_CANCEL, rp->id);
            wire_cancel *wc = mproc__wbuf_add(&w[r], sizeof *wc);
            if (!wc) continue;
            *wc = (wire_cancel){idx, *tag};
            mproc__wbuf_hdr(&w[r])->n++;
            *tag |= TAG_CANCEL; /* sent once */
        }
    }
    for (int r = 1; r < rp->nr; r++) {
        if (w[r].len) mproc__link_send_wbuf(&R.link, r, &w[r]);
        free(w[r].b);
    }
    free(w);
}

static void finish(rpool *rp)
{
    rp->phase = PH_DONE;
    rp->finished = true;
    atomic_store(&rp->scan_req, true);
    scan_pending(rp);
    pthread_cond_broadcast(&rp->p->cv);
}

static bool pool_round(rpool *rp)
{
    mproc_pool *p = rp->p;
    bool did = false;
    pthread_mutex_lock(&p->mu);
    if (R.link.dead && !rp->finished) {
        mproc__pool_fail_queued(p, MPROC_EBROKEN, "the MPI job is ending");
        fail_running(rp, MPROC_EBROKEN, "the MPI job is ending");
        finish(rp);
    }
    if (rp->finished) {
        pthread_mutex_unlock(&p->mu);
        return false;
    }
    if (!rp->new_sent) {
        send_pool_new(rp);
        rp->new_sent = did = true;
    }
    if (rp->term_req && !rp->term_sent) {
        fail_running(rp, rp->term_code,
                     rp->term_code == MPROC_EBROKEN ? p->broken_msg
                     : rp->code < 0                 ? rp->msg
                                                    : "pool terminated");
        rp->term_sent = did = true;
        if (rp->acks == rp->nr - 1) send_all(rp, WIRE_POOL_TERM);
    }
    if (rp->phase == PH_OPEN && !rp->term_req) {
        did |= dispatch(rp);
        forward_cancels(rp);
        if (rp->close_req && !rp->close_sent && rp->ph == rp->pt) {
            send_all(rp, WIRE_POOL_CLOSE);
            rp->close_sent = did = true;
        }
    }
    scan_pending(rp);
    pthread_mutex_unlock(&p->mu);
    return did;
}

static rpool *find_pool(uint32_t id)
{
    for (rpool *rp = R.pools; rp; rp = rp->next)
        if (rp->id == id) return rp;
    return NULL;
}

static void on_message(int src, unsigned char *b, size_t len)
{
    wire_hdr h;
    memcpy(&h, b, sizeof h);
    if (h.type == WIRE_LOG) {
        if (len < sizeof h + sizeof(wire_log) || src <= 0 || src >= R.link.size) return;
        const wire_log *lg = (const wire_log *)(b + sizeof h);
        if (sizeof h + sizeof *lg + lg->len > len) return;
        char name[160];
        snprintf(name, sizeof name, "%.64s@%s", lg->process, R.hosts[src]);
        mproc__log_write_as((int)h.n, name, lg->pid, lg->file, lg->line, lg->func,
                            (const char *)(lg + 1), lg->len);
        return;
    }
    rpool *rp = find_pool(h.pool);
    if (!rp || src <= 0 || src >= R.link.size) return;
    mproc_pool *p = rp->p;
    switch (h.type) {
    case WIRE_RESULTS:
        on_results(rp, src, b, len, h.n);
        break;
    case WIRE_POOL_ACK: {
        if (len < sizeof h + sizeof(wire_pool_ack)) break;
        const wire_pool_ack *a = (const wire_pool_ack *)(b + sizeof h);
        pthread_mutex_lock(&p->mu);
        rp->workers[src] = a->code < 0 ? 0 : a->workers;
        const char *wenv = getenv("MPROC_MPI_WINDOW");
        rp->fixed_window = wenv && atoi(wenv) > 0;
        int win = rp->fixed_window ? atoi(wenv) : 8 * rp->workers[src];
        rp->window[src] = rp->base[src] = rp->workers[src] ? (win < 64 ? 64 : win) : 0;
        rp->rate_since[src] = mproc__now_ns();
        if (a->code < 0 && rp->code == 0) {
            rp->code = a->code;
            snprintf(rp->msg, sizeof rp->msg, "rank %d (%s): %s", src, R.hosts[src], a->msg);
        }
        if (++rp->acks == rp->nr - 1) {
            if (rp->code < 0) {
                rp->term_req = true;
                rp->term_code = rp->code;
            } else {
                rp->phase = PH_OPEN;
            }
            if (rp->term_req && rp->term_sent) send_all(rp, WIRE_POOL_TERM);
            pthread_cond_broadcast(&p->cv);
        }
        pthread_mutex_unlock(&p->mu);
        break;
    }
    case WIRE_POOL_DONE:
        pthread_mutex_lock(&p->mu);
        if (++rp->dones == rp->nr - 1) {
            /* Anything still RUNNING now was lost with its rank's pool. */
            fail_running(rp, MPROC_EWORKERLOST, "its rank's pool ended before the task did");
            finish(rp);
        }
        pthread_mutex_unlock(&p->mu);
        break;
    default:
        break;
    }
}

/* ---- the comm thread ---- */

static int handshake(char *err, size_t cap)
{
    mproc__modtab_scan(&R.mods);
    R.mods_sent = R.mods.n;
    for (int r = 1; r < R.link.size; r++) {
        mproc__wbuf w = {0};
        mproc__wbuf_start(&w, WIRE_HELLO, 0);
        for (uint32_t i = 0; i < R.mods.n; i++) {
            const mproc__module *m = &R.mods.mod[i];
            size_t pl = strlen(m->path) + 1, at = w.len;
            if (!mproc__wbuf_add(&w, sizeof(wire_mod) + WIRE_PAD(pl))) return -ENOMEM;
            wire_mod *wm = (wire_mod *)(w.b + at);
            *wm = (wire_mod){m->main, m->id_len, (uint32_t)pl, 0, {0}};
            memcpy(wm->id, m->id, m->id_len);
            memcpy(wm + 1, m->path, pl);
        }
        mproc__wbuf_hdr(&w)->n = R.mods.n;
        int e = mproc__link_send_wbuf(&R.link, r, &w);
        if (e < 0) return e;
    }
    int acks = 0, code = 0;
    mproc__idle idle = {0};
    while (acks < R.link.size - 1) {
        mproc__link_progress(&R.link);
        int src;
        void *b;
        size_t len;
        int g = mproc__link_recv(&R.link, &src, &b, &len);
        if (g < 0) return g;
        if (g == 1) {
            wire_hdr h;
            memcpy(&h, b, sizeof h);
            if (h.type == WIRE_HELLO_ACK && len >= sizeof h + sizeof(wire_hello_ack) && src > 0 &&
                src < R.link.size) {
                const wire_hello_ack *a = (const wire_hello_ack *)((char *)b + sizeof h);
                snprintf(R.hosts[src], sizeof R.hosts[src], "%s", a->host);
                if (a->code < 0 && code == 0) {
                    code = a->code;
                    snprintf(err, cap, "rank %d (host %s): %s", src, a->host, a->msg);
                }
                acks++;
            }
            free(b);
        }
        int64_t ns = mproc__idle_step(&idle, g == 1, R.link.nsends > 0);
        if (ns) nanosleep(&(struct timespec){0, ns}, NULL);
    }
    return code;
}

/* One round of rank 0's progress, R.mu held: finish sends, take messages, dispatch every pool's
 * queued records. The comm thread runs it, and so does a caller waiting for a future meanwhile
 * (remote_wait), so every transport call is made under R.mu (MPI_THREAD_SERIALIZED). */
static bool comm_round(void)
{
    /* Sends first: an apply's task is queued when its caller's first round begins, and the
     * probes below cost more than the rest of the round (two MPI_Iprobe, mpi.c). */
    bool did = false;
    for (rpool *rp = R.pools; rp; rp = rp->next)
        did |= pool_round(rp);
    did |= mproc__link_progress(&R.link);
    for (int k = 0; k < 256; k++) {
        int src;
        void *b;
        size_t len;
        int g = mproc__link_recv(&R.link, &src, &b, &len);
        if (g < 0) R.link.dead = true;
        if (g != 1) break;
        on_message(src, b, len);
        free(b);
        did = true;
    }
    for (rpool *rp = R.pools; rp; rp = rp->next)
        did |= pool_round(rp);
    return did;
}

static void *comm_main(void *arg)
{
    (void)arg;
    char err[640] = "";
    int rank = 0, size = 0;
    int r = R.link.t->init(&rank, &size, err, sizeof err);
    if (r == 0 && (rank != 0 || size != R.l.size)) {
        snprintf(err, sizeof err, "the MPI runtime says rank %d of %d, the launcher %d of %d", rank,
                 size, R.l.rank, R.l.size);
        r = -EPROTO;
    }
    R.link.rank = rank;
    R.link.size = size;
    R.hosts = calloc((size_t)(size > 0 ? size : 1), sizeof *R.hosts);
    if (r == 0 && !R.hosts) r = -ENOMEM;
    if (r == 0) gethostname(R.hosts[0], sizeof R.hosts[0] - 1);
    if (r == 0) r = handshake(err, sizeof err);
    if (r < 0) {
        /* Ranks that run another program (or cannot start) must not run tasks: end the job. */
        MPROC_CRITICAL("the MPI pool cannot start: %s", err[0] ? err : mproc_strerror(r));
        if (size > 1) R.link.t->abort(1);
        _exit(1);
    }
    pthread_mutex_lock(&R.mu);
    R.ready = true;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);

    mproc__idle idle = {0};
    for (;;) {
        uint32_t seen = atomic_load(&R.wake);
        pthread_mutex_lock(&R.mu);
        bool did = comm_round();
        bool stop = R.stop, sending = R.link.nsends > 0;
        pthread_mutex_unlock(&R.mu);
        if (stop) break;
        int64_t ns = mproc__idle_step(&idle, did, sending);
        /* A caller that waits runs the rounds meanwhile: polling beside it only takes the CPU
         * from it and from the ranks (it wakes us when it stops). */
        if (!did && atomic_load(&R.drivers) > 0) ns = MPROC__LINK_SLEEP_NS;
        if (!ns) continue;
        atomic_store(&R.sleeping, true);
        mproc__futex_wait(&R.wake, seen, mproc__now_ns() + ns);
        atomic_store(&R.sleeping, false);
        /* Woken (a submit, a caller that stops driving): poll again, not a longer sleep. */
        if (atomic_load(&R.wake) != seen) idle.last_active = 0;
    }
    for (int k = 1; k < R.link.size; k++)
        mproc__link_send_hdr(&R.link, k, WIRE_SHUTDOWN, 0, 0);
    mproc__link_flush(&R.link, 2000000000);
    R.link.dead = true;
    R.link.t->finalize();
    return NULL;
}

/* At exit: stop the pools still running, tell the ranks to leave, end the transport (a rank 0
 * that ends without finalizing makes the launcher fail the job). */
static void rank0_exit(void)
{
    if (!R.ready || R.stopped || R.pid != mproc__pid()) return;
    pthread_mutex_lock(&R.mu);
    for (rpool *rp = R.pools; rp; rp = rp->next) {
        mproc_pool *p = rp->p;
        pthread_mutex_lock(&p->mu);
        if (!rp->finished) {
            p->state = MPROC__POOL_TERMINATED;
            mproc__pool_fail_queued(p, MPROC_ECANCELLED, "pool terminated (exit)");
            rp->term_req = true;
            rp->term_code = MPROC_ECANCELLED;
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&R.mu);
    wake_comm();
    int64_t end = mproc__now_ns() + 5000000000LL;
    for (;;) {
        bool all = true;
        pthread_mutex_lock(&R.mu);
        for (rpool *rp = R.pools; rp; rp = rp->next)
            all &= rp->finished;
        pthread_mutex_unlock(&R.mu);
        if (all || mproc__now_ns() > end) break;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    mproc__remote_rank0_stop();
}

void mproc__remote_rank0_stop(void)
{
    if (!R.ready || R.stopped || R.pid != mproc__pid() || in_comm()) return;
    pthread_mutex_lock(&R.mu);
    R.stop = true;
    pthread_mutex_unlock(&R.mu);
    wake_comm();
    pthread_join(R.thr, NULL);
    R.stopped = true;
}

void mproc__remote_serve_pool(mproc_pool *p)
{
    R.serve_rp = RP(p);
}

int mproc__remote_rank0_start(const mproc__transport *t, const mproc__launcher *l)
{
    R.link.t = t;
    R.l = *l;
    R.pid = getpid();
    int r = mproc__service_thread_create(&R.thr, comm_main, NULL);
    if (r < 0) {
        MPROC_ERROR("cannot start the MPI pool's thread: %s", mproc_strerror(r));
        return r;
    }
    pthread_mutex_lock(&R.mu);
    while (!R.ready)
        pthread_cond_wait(&R.cv, &R.mu);
    pthread_mutex_unlock(&R.mu);
    atexit(rank0_exit);
    return 0;
}

/* ---- the backend ---- */

static void remote_destroy(mproc_pool *p);

static int remote_start(mproc_pool *p)
{
    if (!mproc__remote_rank0_active()) return -ENOTSUP;
    if (in_comm()) return -EDEADLK;
    rpool *rp = calloc(1, sizeof *rp);
    if (!rp) return -ENOMEM;
    rp->p = p;
    rp->nr = R.link.size;
    rp->pcap = 1024;
    rp->pend = malloc(rp->pcap * sizeof *rp->pend);
    rp->workers = calloc((size_t)rp->nr, sizeof(int));
    rp->inflight = calloc((size_t)rp->nr, sizeof(int));
    rp->window = calloc((size_t)rp->nr, sizeof(int));
    rp->base = calloc((size_t)rp->nr, sizeof(int));
    rp->rate_since = calloc((size_t)rp->nr, sizeof(int64_t));
    rp->rate_done = calloc((size_t)rp->nr, sizeof(uint64_t));
    rp->out = calloc((size_t)rp->nr, sizeof *rp->out);
    void *lb = NULL;
    if (mproc__arena_alloc(&lb, (size_t)rp->nr * sizeof(mproc__stat_line) + 64) == 0) {
        memset(lb, 0, (size_t)rp->nr * sizeof(mproc__stat_line) + 64);
        rp->lines_block = lb;
        rp->lines = (mproc__stat_line *)(((uintptr_t)lb + 63) & ~(uintptr_t)63);
    }
    p->backend_state = rp;
    p->slot_chunks = rp->chunks;
    if (!rp->pend || !rp->workers || !rp->inflight || !rp->window || !rp->base || !rp->rate_since ||
        !rp->rate_done || !rp->out || !rp->lines) {
        remote_destroy(p);
        return -ENOMEM;
    }
    pthread_mutex_lock(&R.mu);
    rp->id = ++R.next_id;
    rp->next = R.pools;
    R.pools = rp;
    pthread_mutex_unlock(&R.mu);
    wake_comm();
    pthread_mutex_lock(&p->mu);
    while (rp->phase == PH_STARTING && !rp->finished)
        pthread_cond_wait(&p->cv, &p->mu);
    while (rp->code < 0 && !rp->finished)
        pthread_cond_wait(&p->cv, &p->mu);
    int code = rp->code;
    int total = 0;
    for (int r = 1; r < rp->nr; r++)
        total += rp->workers[r];
    pthread_mutex_unlock(&p->mu);
    if (code < 0) {
        MPROC_ERROR("MPI pool: %s", rp->msg);
        remote_destroy(p);
        return code;
    }
    p->nworkers = total > MPROC_POOL_MAX_WORKERS ? MPROC_POOL_MAX_WORKERS : total;
    return 0;
}

static int remote_send(mproc_pool *p, const uint32_t *idx, uint32_t n)
{
    rpool *rp = RP(p);
    if (rp->pt - rp->ph + n > rp->pcap) {
        uint64_t cap = rp->pcap * 2;
        while (rp->pt - rp->ph + n > cap)
            cap *= 2;
        if (cap > (1u << 26)) return -EAGAIN;
        uint32_t *np = malloc(cap * sizeof *np);
        if (!np) return -ENOMEM;
        uint64_t k = 0;
        for (uint64_t h = rp->ph; h < rp->pt; h++)
            np[k++] = rp->pend[h & (rp->pcap - 1)];
        free(rp->pend);
        rp->pend = np;
        rp->pcap = cap;
        rp->ph = 0;
        rp->pt = k;
    }
    for (uint32_t j = 0; j < n; j++) {
        rrec *e = rec_of(rp, idx[j]);
        if (!e) return -ENOMEM;
        e->rank = -1;
    }
    for (uint32_t j = 0; j < n; j++)
        rp->pend[(rp->pt + j) & (rp->pcap - 1)] = idx[j];
    rp->pt += n;
    /* apply waits at once, and its wait runs the round itself: a wake would only bring the comm
     * thread onto a CPU beside it (on 2 vCPUs that doubled the round trip). */
    if (!mproc__pool_wait_follows) wake_comm();
    return 0;
}

static void remote_close(mproc_pool *p)
{
    pthread_mutex_lock(&p->mu);
    RP(p)->close_req = true;
    pthread_mutex_unlock(&p->mu);
    wake_comm();
}

static void remote_terminate(mproc_pool *p, int code)
{
    rpool *rp = RP(p);
    pthread_mutex_lock(&p->mu);
    mproc__pool_fail_queued(p, code, code == MPROC_EBROKEN ? p->broken_msg : "pool terminated");
    if (!rp->term_req) {
        rp->term_req = true;
        rp->term_code = code;
    }
    wake_comm();
    while (!in_comm() && !rp->finished && !R.link.dead)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static int finished_step(void *arg, int64_t until)
{
    mproc_pool *p = arg;
    rpool *rp = RP(p);
    while (!rp->finished) {
        if (until == INT64_MAX) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else {
            struct timespec ts = mproc__abs_timespec(until);
            if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT && !rp->finished)
                return -ETIMEDOUT;
        }
    }
    return 0;
}

/* A caller waiting for record s of p (mproc_future_get/wait; signals blocked, a step of at most
 * `until`): while results keep coming it runs rank 0's rounds itself, so a round trip costs no
 * hand-over between threads (a futex wake and a trip through the scheduler, each time, with 3
 * ranks on 2 vCPUs); MPROC__LINK_POLL_NS after the last activity it hands over to the comm thread
 * (woken to poll) and sleeps on the record like any waiter. *active: when this wait last saw
 * activity (0: it starts; -1: handed over). */
static int remote_wait(mproc_pool *p, mproc__slot *s, int64_t until, int64_t *active)
{
    (void)p;
    bool counted = false;
    mproc__yielder y = {0};
    for (;;) {
        int64_t now = mproc__now_ns();
        if (mproc__slot_done(s) || now >= until) {
            if (counted) atomic_fetch_sub(&R.drivers, 1);
            return mproc__slot_done(s) ? 0 : -ETIMEDOUT;
        }
        if (*active == 0) *active = now;
        if (*active < 0 || driving || in_comm() || !mproc__remote_rank0_active() ||
            now - *active > MPROC__LINK_POLL_NS) {
            if (counted) atomic_fetch_sub(&R.drivers, 1);
            if (*active >= 0) wake_comm();
            *active = -1;
            return mproc__slot_sleep(s, until);
        }
        if (!counted) atomic_fetch_add(&R.drivers, 1);
        counted = true;
        bool did = false;
        if (pthread_mutex_trylock(&R.mu) == 0) {
            driving = true;
            did = !R.stop && comm_round();
            driving = false;
            pthread_mutex_unlock(&R.mu);
        }
        if (did)
            *active = now;
        else
            mproc__yield_look(&y, mproc__now_ns());
    }
}

static int remote_join(mproc_pool *p, int64_t deadline, bool intr)
{
    if (in_comm()) return -EDEADLK;
    pthread_mutex_lock(&p->mu);
    int r = intr ? mproc__intr_sleep(finished_step, p, deadline) : finished_step(p, deadline);
    if (r == 0) mproc__future_scan_watch(p);
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void remote_notify(mproc_pool *p)
{
    atomic_store(&RP(p)->scan_req, true);
    wake_comm();
}

static void remote_for_queued(mproc_pool *p, void (*fn)(mproc_pool *, uint32_t, void *), void *arg)
{
    rpool *rp = RP(p);
    for (uint64_t h = rp->ph; h < rp->pt; h++)
        fn(p, rp->pend[h & (rp->pcap - 1)], arg);
}

static int remote_worker_pids(mproc_pool *p, pid_t *pids, int cap)
{
    (void)p;
    (void)pids;
    (void)cap;
    return 0; /* they live on other ranks */
}

static bool remote_seat_stats(mproc_pool *p, uint32_t i, mproc__stat_line **line, pid_t *pid)
{
    rpool *rp = RP(p);
    if ((int)i >= rp->nr - 1) return false;
    *line = &rp->lines[i];
    *pid = 0;
    return true;
}

static int remote_resize(mproc_pool *p, int n)
{
    (void)p;
    (void)n;
    return -ENOTSUP;
}

/* The record is done: the comm thread wrote its rank before it completed it. */
static int remote_origin(mproc_pool *p, uint32_t idx, char *host, size_t cap)
{
    rpool *rp = RP(p);
    const rrec *e = rp ? rp->recs[idx >> MPROC__SLOT_CHUNK_SHIFT] : NULL;
    int rank = e ? e[idx & (MPROC__SLOT_CHUNK - 1)].rank : -1;
    if (rank <= 0 || rank >= R.link.size) return -1;
    snprintf(host, cap, "%s", R.hosts[rank]);
    return R.link.t->mpi_rank(rank);
}

static void remote_destroy(mproc_pool *p)
{
    rpool *rp = RP(p);
    if (!rp) return;
    pthread_mutex_lock(&R.mu);
    for (rpool **pp = &R.pools; *pp; pp = &(*pp)->next) {
        if (*pp == rp) {
            *pp = rp->next;
            break;
        }
    }
    bool serve_end = R.serve_rp == rp;
    if (serve_end) R.serve_rp = NULL;
    pthread_mutex_unlock(&R.mu);
    if (serve_end) mproc__remote_rank0_stop();
    for (uint32_t c = 0; c < MPROC__SLOT_MAX_CHUNKS; c++)
        free(rp->recs[c]);
    for (int r = 0; rp->out && r < rp->nr; r++)
        free(rp->out[r].b);
    free(rp->out);
    free(rp->pend);
    free(rp->workers);
    free(rp->inflight);
    free(rp->window);
    free(rp->base);
    free(rp->rate_since);
    free(rp->rate_done);
    mproc__arena_free(rp->lines_block);
    free(rp);
    p->backend_state = NULL;
}

const mproc__pool_backend mproc__pool_remote_backend = {
    .name = "mpi",
    /* Each chunk crosses to its rank and back, and a rank runs its chunks one after the other:
     * smaller ones overlap sending, running and returning (10 M ints: 78-118 M items/s with 16,
     * 46-64 M with map.c's 4, 2 workers, 3 ranks on 2 vCPUs). */
    .map_chunks_per_worker = 16,
    .start = remote_start,
    .send = remote_send,
    .close = remote_close,
    .join = remote_join,
    .terminate = remote_terminate,
    .notify = remote_notify,
    .for_queued = remote_for_queued,
    .worker_pids = remote_worker_pids,
    .seat_stats = remote_seat_stats,
    .resize = remote_resize,
    .origin = remote_origin,
    .wait = remote_wait,
    .destroy = remote_destroy,
};
