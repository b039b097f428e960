/* Task records (slots.h): allocation, queueing, failure from outside, waiting, release; map
 * staging blocks; the pool's memory. Calls nothing above it but the backend, through its table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "platform/interrupt.h"
#include "platform/spin.h"
#include "pool/backend.h"
#include "pool/pointers.h"

/* Of MPROC__SLOT_WAIT_SPIN_NS (slots.h), spin on the CPU this long (spin.h). Not the queue's 2 µs:
 * with 2 µs the caller and the worker that spins for the next task sometimes settled on one CPU of
 * a 2-CPU machine and handed it back and forth, 10-12 µs per apply instead of 0.4 µs, in 2 runs of
 * 8; with 10 µs, 0 of 16. */
#define WAIT_HARD_SPIN_NS 10000

_Atomic uint32_t mproc__completion_gen;

void mproc__completion_bump(void)
{
    atomic_fetch_add(&mproc__completion_gen, 1);
    mproc__futex_wake(&mproc__completion_gen, INT32_MAX);
}

pid_t mproc__pool_pid;

void mproc__pool_forget_pid(void)
{
    mproc__pool_pid = 0;
}

/* A chunk of MPROC__SLOT_CHUNK records: an arena block (the records 64-aligned inside it, so each
 * is exactly two cache lines) and the matching futures, both faulted in at once here rather than
 * page by page on the submit path. */
static int grow_locked(mproc_pool *p)
{
    if (p->nchunks == MPROC__SLOT_MAX_CHUNKS) return -ENOMEM;
    size_t bytes = sizeof(mproc__slot) * MPROC__SLOT_CHUNK;
    void *raw;
    int r = mproc__arena_alloc(&raw, bytes + 64);
    if (r < 0) return r;
    mproc__slot *sc = (mproc__slot *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    mproc_future *fc = calloc(MPROC__SLOT_CHUNK, sizeof *fc);
    if (!fc) {
        mproc__arena_free(raw);
        return -ENOMEM;
    }
    mproc__prefault(sc, bytes);
    mproc__prefault(fc, MPROC__SLOT_CHUNK * sizeof *fc);
    uint32_t c = p->nchunks;
    p->future_chunks[c] = fc;
    p->slot_blocks[c] = raw;
    /* Published before any index in it is queued (the queue's release store orders it). */
    p->slot_chunks[c] = sc;
    p->nchunks = c + 1;
    for (uint32_t i = MPROC__SLOT_CHUNK; i-- > 0;) {
        fc[i].magic = MPROC__FUTURE_MAGIC;
        fc[i].idx = (c << MPROC__SLOT_CHUNK_SHIFT) | i;
        fc[i].pool = p;
        fc[i].efd = -1;
        fc[i].next_free = p->free_head;
        p->free_head = fc[i].idx;
    }
    return 0;
}

void mproc__pool_take_freed_locked(mproc_pool *p)
{
    if (!atomic_load_explicit(&p->freed_list, memory_order_relaxed)) return;
    uint32_t i = atomic_exchange_explicit(&p->freed_list, 0, memory_order_acquire);
    while (i) {
        mproc_future *f = mproc__future_at(p, i - 1);
        i = f->next_free;
        f->magic = MPROC__FUTURE_MAGIC;
        mproc__pool_release_locked(p, f);
    }
}

static int alloc_locked(mproc_pool *p, mproc_future **out)
{
    if (p->free_head == MPROC__SLOT_NONE) mproc__pool_take_freed_locked(p);
    if (p->free_head == MPROC__SLOT_NONE) {
        int r = grow_locked(p);
        if (r < 0) return r;
    }
    mproc_future *f = mproc__future_at(p, p->free_head);
    p->free_head = f->next_free;
    f->flags = MPROC__FUTURE_LIVE;
    f->callbacks = NULL;
    f->stage = NULL;
    f->watch_next = f->watch_prev = NULL;
    f->was_watched = false;
    p->nlive++;
    *out = f;
    return 0;
}

static int slot_fill(mproc__slot *s, mproc_task_fn fn, const void *arg, size_t len,
                     const mproc_submit_opts *o)
{
    if (len > UINT32_MAX) return -EMSGSIZE;
    s->fn = fn;
    s->arg_len = (uint32_t)len;
    if (len <= MPROC__SLOT_INLINE) {
        mproc__copy_pad8(s->inline_buf, arg, len); /* a small argument: no memcpy call */
    } else {
        int r = mproc__arena_alloc(&s->arg_ext, len);
        if (r < 0) return r;
        memcpy(s->arg_ext, arg, len);
    }
    atomic_store_explicit(&s->flags, 0, memory_order_relaxed);
    s->timeout_ns = 0;
    s->soft_timeout_ms = 0;
    if (o) {
        /* Checked by the caller; INT64_MAX (a huge limit): none, not the pool's either. */
        int64_t hard = 0, soft = 0;
        if (o->timeout > 0) mproc__timeout_ns(o->timeout, &hard);
        if (o->soft_timeout > 0) mproc__timeout_ns(o->soft_timeout, &soft);
        s->timeout_ns = hard;
        if (soft && soft != INT64_MAX) {
            int64_t ms = soft / 1000000;
            s->soft_timeout_ms = ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int32_t)ms;
        }
    }
    s->pid = 0;
    s->sup_status = -1;
    atomic_store_explicit(&s->state, MPROC__SLOT_QUEUED, memory_order_release);
    return 0;
}

void mproc__pool_release_locked(mproc_pool *p, mproc_future *f)
{
    mproc__slot *s = mproc__slot_at(p->slot_chunks, f->idx);
    if (s->arg_ext) mproc__arena_free(s->arg_ext);
    if (s->res_ext) mproc__arena_free(s->res_ext);
    if (s->err_msg) mproc__arena_free(s->err_msg);
    free(s->sup_msg);
    s->arg_ext = s->res_ext = NULL;
    s->err_msg = s->sup_msg = NULL;
    s->sup_code = s->sup_sig = 0;
    s->err_code = 0;
    atomic_store_explicit(&s->state, MPROC__SLOT_FREE, memory_order_relaxed);
    if (f->efd >= 0) close(f->efd);
    f->efd = -1;
    for (mproc__cb *c = f->callbacks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    f->callbacks = NULL;
    if (f->stage) mproc__stage_unref(p, f->stage);
    f->stage = NULL;
    f->flags = 0;
    f->next_free = p->free_head;
    p->free_head = f->idx;
    p->nlive--;
}

bool mproc__slot_fail(mproc_pool *p, uint32_t idx, uint32_t expect, int code, int sig, int status,
                      pid_t pid, const char *fmt, ...)
{
    mproc__slot *s = mproc__slot_at(p->slot_chunks, idx);
    uint32_t st = atomic_load(&s->state);
    if ((st & ~MPROC__SLOT_WAITER) != expect) return false;
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
        if ((st & ~MPROC__SLOT_WAITER) != expect) {
            free(s->sup_msg);
            s->sup_msg = NULL;
            return false;
        }
        if (atomic_compare_exchange_weak(&s->state, &st, MPROC__SLOT_DONE_OUTSIDE_ERROR)) break;
    }
    if (st & MPROC__SLOT_WAITER) mproc__futex_wake(&s->state, INT32_MAX);
    /* Statistics (stats.h): the workers count what they complete, we count this. */
    if (code == MPROC_ECANCELLED)
        p->counts.cancelled++;
    else
        p->counts.failed++;
    if (MPROC__SLOT_KIND(expect) == MPROC__SLOT_QUEUED) p->counts.unstarted++;
    mproc_future *f = mproc__future_at(p, idx);
    if (f->flags & MPROC__FUTURE_WATCHED) p->backend->notify(p);
    return true;
}

struct fail_arg {
    int code;
    const char *msg;
};

static void fail_one(mproc_pool *p, uint32_t idx, void *arg)
{
    struct fail_arg *a = arg;
    mproc__slot_fail(p, idx, MPROC__SLOT_QUEUED, a->code, 0, -1, 0, "%s", a->msg);
}

void mproc__pool_fail_queued(mproc_pool *p, int code, const char *msg)
{
    struct fail_arg a = {code, msg};
    p->backend->for_queued(p, fail_one, &a);
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

/* Queue records: the transport may be full (2^20 queued), then wait for room. */
static int queue_locked(mproc_pool *p, mproc_future **fs, uint32_t n)
{
    uint32_t idx[64];
    for (uint32_t i = 0; i < n;) {
        uint32_t k = n - i < 64 ? n - i : 64;
        for (uint32_t j = 0; j < k; j++)
            idx[j] = fs[i + j]->idx;
        int r = p->backend->send(p, idx, k);
        if (r == -EAGAIN) {
            pthread_mutex_unlock(&p->mu);
            nanosleep(&(struct timespec){0, 200000}, NULL);
            pthread_mutex_lock(&p->mu);
            r = mproc__pool_check_open_locked(p);
            if (r < 0) return r;
            continue;
        }
        if (r < 0) return r;
        i += k;
    }
    return 0;
}

int mproc__pool_submit_locked(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                              const mproc_submit_opts *o, mproc__stage *stage, mproc_future **out)
{
    mproc_future *f;
    int r = alloc_locked(p, &f);
    if (r < 0) return r;
    r = slot_fill(mproc__slot_at(p->slot_chunks, f->idx), fn, arg, len, o);
    if (r == 0 && stage) {
        atomic_fetch_add(&stage->refs, 1);
        f->stage = stage;
    }
    if (r == 0) r = queue_locked(p, &f, 1);
    if (r < 0) {
        mproc__pool_release_locked(p, f);
        return r;
    }
    p->counts.submitted++;
    *out = f;
    return 0;
}

/* ---- waiting ---- */

int mproc__slot_spin(mproc__slot *s, int64_t deadline)
{
    int64_t now = mproc__now_ns();
    if (deadline <= now) return mproc__slot_done(s) ? 0 : -ETIMEDOUT;
    mproc__spin sp;
    mproc__spin_start(&sp, now, WAIT_HARD_SPIN_NS, MPROC__SLOT_WAIT_SPIN_NS);
    for (unsigned i = 1;; i++) {
        if (mproc__slot_done(s)) return 0;
        if (sp.yielding || (i & 63) == 0) now = mproc__now_ns();
        if (now >= deadline || !mproc__spin_pause(&sp, now)) return -ETIMEDOUT;
    }
}

int mproc__slot_sleep(mproc__slot *s, int64_t deadline)
{
    for (;;) {
        uint32_t st = atomic_load(&s->state);
        if (MPROC__SLOT_IS_DONE(MPROC__SLOT_KIND(st))) return 0;
        if (!(st & MPROC__SLOT_WAITER)) {
            if (!atomic_compare_exchange_weak(&s->state, &st, st | MPROC__SLOT_WAITER)) continue;
            st |= MPROC__SLOT_WAITER;
        }
        int r = mproc__sleep(&s->state, st, mproc__intr_sleep_deadline(deadline));
        if (r == -EINTR) return mproc__slot_done(s) ? 0 : -EINTR;
        if (r == -ETIMEDOUT && mproc__remaining_ns(deadline) <= 0)
            return mproc__slot_done(s) ? 0 : -ETIMEDOUT;
    }
}

int mproc__slot_wait_slow(mproc__slot *s, int64_t deadline)
{
    /* mproc__slot_wait looked already: the record was not done. */
    int r = mproc__slot_spin(s, deadline);
    if (r == 0 || (deadline != INT64_MAX && deadline <= mproc__now_ns())) return r;
    return mproc__slot_sleep(s, deadline);
}

/* ---- map staging blocks ---- */

#define STAGE_CACHE_MAX ((size_t)512 << 20)

void mproc__stage_unref(mproc_pool *p, mproc__stage *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1) return;
    if (st->size <= STAGE_CACHE_MAX && (!p->stage_cache || p->stage_cache->size < st->size)) {
        mproc__stage *old = p->stage_cache;
        p->stage_cache = st;
        st = old;
        if (!st) return;
    }
    mproc__arena_free(st->mem);
    free(st);
}

int mproc__stage_get(mproc_pool *p, size_t size, mproc__stage **out)
{
    mproc__stage *st = p->stage_cache;
    if (st && st->size >= size) {
        p->stage_cache = NULL;
    } else {
        st = malloc(sizeof *st);
        if (!st) return -ENOMEM;
        int r = mproc__arena_alloc(&st->mem, size);
        if (r < 0) {
            free(st);
            return r;
        }
        st->size = size;
    }
    atomic_store(&st->refs, 1);
    *out = st;
    return 0;
}

/* Free the pool's memory: the workers are gone and no future refers to it any more. */
void mproc__pool_destroy(mproc_pool *p)
{
    for (uint32_t c = 0; c < p->nchunks; c++) {
        mproc__arena_free(p->slot_blocks[c]);
        free(p->future_chunks[c]);
    }
    p->backend->destroy(p);
    if (p->stage_cache) {
        mproc__arena_free(p->stage_cache->mem);
        free(p->stage_cache);
    }
    mproc__arena_free(p->initarg_copy);
    mproc__ptr_snapshot_free(p->ptrs);
    free(p->stats_base);
    free(p->cpu_sets);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    p->magic = 0;
    free(p);
}
