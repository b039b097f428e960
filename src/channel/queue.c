/* mproc_queue: put, get, close, join. The layout and the slot state machine are described in
 * channel/queue.h; what happens when a process dies holding a slot is in queue_recover.c.
 *
 * A put claims the slot at the tail with one CAS on the slot's own word (recording its thread id),
 * moves the tail on, charges the byte budget, copies the message in (inline, or into an arena block
 * it hands over by reference) and publishes the slot. A get mirrors it at the head. Whoever finds
 * a position already claimed moves the shared index on for the claimer, so a claimer that died
 * before doing it stalls no one. Waiters spin briefly, then yield the CPU between looks, then sleep
 * on a futex; the side that makes progress issues a wake only when a waiter is registered, so the
 * fast path makes no syscall. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "platform/fence.h"
#include "platform/interrupt.h"
#include "platform/platform.h"
#include "channel/queue.h"
#include "sync/proxy.h"

#define SPIN_NS 100000    /* look this long before sleeping (how: spin.h) */
#define HARD_SPIN_NS 2000 /* of which spin on the CPU this long: peers elsewhere answer sooner */
#define DEFER_NS 10000    /* a put that found the ring full waits this long at most for ROOM */
#define ROOM_SHIFT 4      /* ... for a sixteenth of the ring to be free, in rings ... */
#define ROOM_MIN 8        /* ... of 128 slots or more */
#define PUT_AHEAD 16      /* a put prefetches the slot of the put this many positions later */
#define STALL_NS ((int64_t)MPROC_QUEUE_STALL_MS * 1000000)
#define UNFENCED_NS 1000000 /* without a heavy fence a wake-up can be missed: look this often */
#define UNBOUNDED_BYTES UINT64_MAX

/* Results of one attempt, besides 0 and negative codes. */
enum { Q_WAIT = 1, Q_RETRY = 2 };

/* Filled by an attempt that must wait because a slot owned by someone blocks it. */
typedef struct {
    q_slot *blocker;
    uint64_t blocker_w;
    bool again; /* set by q_run once the call waits: the attempt is a poll */
    bool defer; /* a put that waits for room: take a slot only once the consumers got ahead */
} q_block;

typedef int (*q_try_fn)(mproc_queue *q, void *ctx, q_block *b);

static int valid(const mproc_queue *q)
{
    /* Queues are cache-line aligned, which also rejects most garbage before any load. */
    return q && ((uintptr_t)q & (MPROC__QUEUE_CACHE_LINE - 1)) == 0 &&
           mproc__arena_contains(q, sizeof *q) &&
           atomic_load_explicit(&q->magic, memory_order_relaxed) == MPROC__QUEUE_MAGIC;
}

/* Try, spin, then sleep, until the attempt gives a result or the timeout passes. While a slot with
 * an owner blocks the attempt and does not change for STALL_NS, its owner's liveness is checked.
 * Once the wait has spun for HARD_SPIN_NS, asynchronous signals stay blocked (*blocked set, st the
 * caller's mask) and a pending one the program handles ends the wait with -EINTR
 * (platform/interrupt.h): a handler that ran while the call yielded or just before it slept would
 * otherwise interrupt nothing. */
static int q_wait(mproc_queue *q, q_try_fn attempt, void *ctx, double timeout, bool get,
                  mproc__intr *st, bool *blocked)
{
    _Atomic uint32_t *ev = get ? &q->not_empty : &q->not_full;
    int64_t deadline = 0, spin_end = 0, defer_end = 0, stall_since = 0, swept = 0;
    q_slot *stall_slot = NULL;
    uint64_t stall_w = 0;
    unsigned polls = 0;
    mproc__spin sp = {0};
    bool deferring = false;
    for (bool again = false;; again = true) {
        q_block b = {.again = again, .defer = deferring};
        int r = attempt(q, ctx, &b);
        if (r == Q_RETRY) continue;
        if (r != Q_WAIT) return r;
        if (timeout == 0) return -EAGAIN;
        /* Read the clock on every 32nd poll only: it costs more than a look at the queue. */
        if (deadline && !sp.yielding && (++polls & 31)) {
            mproc__cpu_relax();
            continue;
        }
        int64_t now = mproc__now_ns();
        if (!deadline) {
            deadline = mproc__deadline(timeout);
            spin_end = now + SPIN_NS;
            defer_end = now + DEFER_NS;
            mproc__spin_start(&sp, now, HARD_SPIN_NS, SPIN_NS);
        }
        /* Past the hard spin only: a hand-over between active peers (well inside it) then costs
         * no system call. */
        if (!*blocked && now >= sp.hard_end) {
            mproc__intr_block(st);
            *blocked = true;
        }
        if (!b.blocker) {
            stall_slot = NULL;
            /* A put may wait for room that a dead owner's slot holds anywhere in the ring. */
            if (!get && now - spin_end >= STALL_NS && now - swept >= STALL_NS) {
                swept = now;
                mproc__queue_sweep(q);
            }
        } else if (b.blocker != stall_slot || b.blocker_w != stall_w) {
            stall_slot = b.blocker;
            stall_w = b.blocker_w;
            stall_since = now;
        } else if (now - stall_since >= STALL_NS) {
            if (mproc__queue_recover(q, stall_slot, stall_w)) {
                stall_slot = NULL;
                continue;
            }
            stall_since = now; /* alive, just slow: look again later */
        }
        if (now >= deadline) return -ETIMEDOUT;
        deferring = !get && now < defer_end;
        if (mproc__spin_pause(&sp, now)) continue;
        if (mproc__intr_pending(st)) return -EINTR;
        /* Announce the sleep, then look once more: whoever makes progress after our look sees
         * the flag and wakes us. */
        uint32_t e = atomic_load(ev);
        if (!(e & MPROC__QUEUE_SLEEPING) &&
            !atomic_compare_exchange_strong(ev, &e, e | MPROC__QUEUE_SLEEPING))
            continue;
        e |= MPROC__QUEUE_SLEEPING;
        bool fenced = mproc__fence_heavy();
        b = (q_block){.again = true};
        r = attempt(q, ctx, &b);
        if (r == Q_WAIT) {
            /* Bounded, for a pending signal (the shortest), a stalled owner or a dead waker. */
            int64_t until = now + (!fenced ? UNFENCED_NS : MPROC__INTR_POLL_NS);
            mproc__sleep(ev, e, until < deadline ? until : deadline);
        }
        if (r != Q_WAIT && r != Q_RETRY) return r;
    }
}

static int q_run(mproc_queue *q, q_try_fn attempt, void *ctx, double timeout, bool get)
{
    mproc__intr st;
    bool blocked = false;
    int r = q_wait(q, attempt, ctx, timeout, get, &st, &blocked);
    if (blocked) mproc__intr_restore(&st);
    return r;
}

/* ---- put ---- */

typedef struct {
    const void *data;
    uint64_t len;
} put_ctx;

static uint64_t used_bytes(uint64_t in, uint64_t out)
{
    /* A recoverer in doubt refunds, so out may run ahead of in: that reads as empty. */
    return (int64_t)(in - out) < 0 ? 0 : in - out;
}

/* Whether len more bytes fit; with charge, take them (CAS, so the bound is never exceeded). */
static bool bytes_fit(mproc_queue *q, uint64_t len, bool charge)
{
    uint64_t in = atomic_load(&q->bytes_in);
    for (;;) {
        uint64_t out = atomic_load_explicit(&q->out_cache, memory_order_relaxed);
        if (used_bytes(in, out) + len > q->max_bytes) {
            out = atomic_load(&q->bytes_out);
            atomic_store_explicit(&q->out_cache, out, memory_order_relaxed);
            if (used_bytes(in, out) + len > q->max_bytes) return false;
        }
        if (!charge) return true;
        if (atomic_compare_exchange_weak(&q->bytes_in, &in, in + len)) return true;
    }
}

bool mproc__queue_charge(mproc_queue *q, uint64_t len)
{
    return bytes_fit(q, len, true);
}

/* Publish a claimed slot as "no message": its consumer drops it. */
static void publish_skip(mproc_queue *q, q_slot *s, uint64_t pos)
{
    atomic_store_explicit(&s->flags, MPROC__QUEUE_FLAG_SKIP, memory_order_relaxed);
    atomic_store(&s->word, w_make(pos, MPROC__QUEUE_SLOT_FULL, 0));
    mproc__queue_wake(&q->not_empty);
}

/* The claimer of position pos moves a shared index (head or tail) past it. The slot words are
 * what decide who owns a position; the index only says where to look first, so a plain store
 * will do where a CAS would cost a locked instruction per message. It can move the index back by
 * a position or two if others moved it on meanwhile: whoever reads it then finds those positions
 * claimed and moves it on again (the "claimed already" paths below). */
static inline void hint_advance(_Atomic uint64_t *index, uint64_t pos)
{
    if ((int64_t)(pos + 1 - atomic_load_explicit(index, memory_order_relaxed)) > 0)
        atomic_store_explicit(index, pos + 1, memory_order_relaxed);
}

/* Fetch both lines of a slot for writing before the first look at it. Its word is read, then
 * CASed, and the message fills the second line: without this each of the three is a separate
 * transfer from the other side's core, one after the other. Not while polling, where it would pull
 * the line away from the process filling or emptying it. */
static inline void slot_prefetch(const q_block *b, const q_slot *s)
{
    if (b->again) return;
    mproc__prefetch_write(s);
    mproc__prefetch_write(s->data);
}

/* Whether a put that found the ring full should wait a little longer: a producer that takes each
 * slot as soon as a consumer frees it polls the very slot header the consumer is writing, pulling
 * the line away from it, and a consumer that cannot keep up is slowed down further. Waiting until
 * a sixteenth of the ring is free (for DEFER_NS at most: consumers may have stopped) lets the
 * consumers run ahead undisturbed, and the producer then fills slots they left long ago. */
static bool room_pending(const mproc_queue *q, uint64_t pos)
{
    if (!q->room) return false;
    const q_slot *ahead = &q->slots[(pos + q->room) & q->mask];
    return w_diff(atomic_load_explicit(&ahead->word, memory_order_relaxed), pos + q->room) < 0;
}

/* Fetch, for writing, the slot this producer will fill PUT_AHEAD puts from now. Its lines were
 * last written by the consumer that freed them, on another core: fetched only when the put comes,
 * they are a wait on every message, while fetched now they arrive in the shadow of the puts in
 * between. Only in rings large enough to wait for room (room_pending), where that slot is free by
 * the time the producer gets to it and the prefetch takes nothing from a consumer still reading. */
static inline void prefetch_ahead(const mproc_queue *q, uint64_t pos)
{
    if (!q->room) return;
    const q_slot *s = &q->slots[(pos + PUT_AHEAD) & q->mask];
    mproc__prefetch_write(s);
    mproc__prefetch_write(s->data);
}

/* Claim the slot of the next free position, or say why not (Q_WAIT, with the blocker if any). */
static int claim_put(mproc_queue *q, uint64_t *posp, q_slot **sp, q_block *b)
{
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint32_t me = mproc__queue_self_tid();
    for (;;) {
        if (q->max_items <= q->mask) { /* a bound below the ring's power of two */
            uint64_t h = atomic_load_explicit(&q->head_cache, memory_order_relaxed);
            if ((int64_t)(pos - h) >= (int64_t)q->max_items) {
                h = atomic_load(&q->head);
                atomic_store_explicit(&q->head_cache, h, memory_order_relaxed);
                if ((int64_t)(pos - h) >= (int64_t)q->max_items) return Q_WAIT;
            }
        }
        q_slot *s = &q->slots[pos & q->mask];
        slot_prefetch(b, s);
        uint64_t w = atomic_load(&s->word);
        int64_t d = w_diff(w, pos);
        if (d == 0 && w_state(w) == MPROC__QUEUE_SLOT_FREE) {
            if (b->defer && room_pending(q, pos)) return Q_WAIT;
            if (atomic_compare_exchange_weak(&s->word, &w,
                                             w_make(pos, MPROC__QUEUE_SLOT_WRITING, me))) {
                hint_advance(&q->tail, pos);
                prefetch_ahead(q, pos);
                *posp = pos;
                *sp = s;
                return 0;
            }
            continue;
        }
        if (d < 0) { /* the previous lap's message is still there: full */
            unsigned st = w_state(w);
            if (st == MPROC__QUEUE_SLOT_WRITING || st == MPROC__QUEUE_SLOT_READING) {
                b->blocker = s;
                b->blocker_w = w;
            }
            return Q_WAIT;
        }
        /* Claimed already: move the tail on for its claimer, who may have died before doing so. */
        uint64_t p = pos;
        pos = atomic_compare_exchange_strong(&q->tail, &p, pos + 1) ? pos + 1 : p;
    }
}

/* An unbounded queue's put that found the ring full, or the overflow list in use. */
static int put_overflow(mproc_queue *q, const put_ctx *pc)
{
    int r = mproc__queue_ovf_put(q, pc->data, pc->len);
    if (r == -EAGAIN) return Q_WAIT;
    if (r < 0) return r;
    mproc__fence_light();
    mproc__queue_wake(&q->not_empty);
    return 0;
}

static int try_put(mproc_queue *q, void *c, q_block *b)
{
    const put_ctx *pc = c;
    uint64_t len = pc->len;
    if (atomic_load_explicit(&q->closed, memory_order_relaxed)) return MPROC_ECLOSED;
    /* While the list holds messages, later ones follow them there: each producer's order. */
    if (q->unbounded && atomic_load_explicit(&q->ovf_count, memory_order_relaxed))
        return put_overflow(q, pc);
    bool bounded = len >= q->charge_from;
    if (bounded && !bytes_fit(q, len, false)) return Q_WAIT;
    uint64_t pos;
    q_slot *s;
    int r = claim_put(q, &pos, &s, b);
    if (r == Q_WAIT && q->unbounded) return put_overflow(q, pc);
    if (r) return r;
    /* A get that saw the queue closed and empty must not miss a message claimed after its look. */
    if (atomic_load(&q->closed)) {
        publish_skip(q, s, pos);
        return MPROC_ECLOSED;
    }
    atomic_store_explicit(&s->len, len, memory_order_relaxed);
    uint32_t flags = 0;
    if (bounded) {
        /* Flag first: a recoverer in doubt refunds rather than leaks the budget. */
        flags = MPROC__QUEUE_FLAG_CHARGED;
        atomic_store_explicit(&s->flags, flags, memory_order_relaxed);
        if (!bytes_fit(q, len, true)) { /* another producer took the room meanwhile */
            publish_skip(q, s, pos);
            return Q_RETRY;
        }
    }
    if (q->joinable) {
        flags |= MPROC__QUEUE_FLAG_COUNTED;
        atomic_store_explicit(&s->flags, flags, memory_order_relaxed);
        atomic_fetch_add(&q->unfinished, 1);
    }
    if (len <= MPROC_QUEUE_INLINE) {
        if (len) memcpy(s->data, pc->data, len);
    } else {
        void *blk;
        r = mproc__queue_block_get(q, len, &blk);
        if (r < 0) {
            mproc__queue_refund(q, len, flags);
            publish_skip(q, s, pos);
            mproc__queue_wake(&q->not_full);
            return r;
        }
        atomic_store_explicit(&s->block, (uint64_t)(uintptr_t)blk, memory_order_relaxed);
        memcpy(blk, pc->data, len);
    }
    atomic_store_explicit(&s->word, w_make(pos, MPROC__QUEUE_SLOT_FULL, 0), memory_order_release);
    mproc__fence_light();
    mproc__queue_wake(&q->not_empty);
    return 0;
}

int mproc_queue_put(mproc_queue *q, const void *data, size_t len, double timeout)
{
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_put, q, data, len, timeout);
    if ((!data && len) || mproc__timeout_check(timeout)) return -EINVAL;
    if (len > q->max_bytes) return -EMSGSIZE;
    put_ctx pc = {.data = data, .len = len};
    /* The first attempt outside q_run, where the compiler can inline it: most calls end here. */
    q_block b = {0};
    int r = try_put(q, &pc, &b);
    if (r != Q_WAIT && r != Q_RETRY) return r;
    return q_run(q, try_put, &pc, timeout, false);
}

/* ---- get ---- */

typedef struct {
    void *buf;
    size_t cap;
    size_t len;
    bool alloc; /* grow buf with malloc instead of failing with -EMSGSIZE */
} get_ctx;

/* Copy out the message of a slot we own, then free the slot. Returns 1 for a skip marker. */
static int take(mproc_queue *q, q_slot *s, uint64_t pos, get_ctx *gc)
{
    uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
    uint64_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
    if (!(f & MPROC__QUEUE_FLAG_SKIP)) {
        void *src = (void *)(uintptr_t)atomic_load_explicit(&s->block, memory_order_relaxed);
        if (len) memcpy(gc->buf, src ? src : s->data, len);
        gc->len = len;
    }
    /* Only now off the slot: a recoverer frees a block that a reader dying mid-copy left. */
    if (atomic_load_explicit(&s->block, memory_order_relaxed)) {
        void *blk = (void *)(uintptr_t)atomic_exchange(&s->block, 0);
        if (blk) mproc__queue_block_put(q, blk);
    }
    if (f & MPROC__QUEUE_FLAG_CHARGED) atomic_fetch_add(&q->bytes_out, len);
    /* An unfinished task now belongs to the caller's task_done. */
    atomic_store_explicit(&s->flags, 0, memory_order_relaxed);
    atomic_store_explicit(&s->word, w_make(pos + q->mask + 1, MPROC__QUEUE_SLOT_FREE, 0),
                          memory_order_release);
    mproc__fence_light();
    mproc__queue_wake(&q->not_full);
    return (f & MPROC__QUEUE_FLAG_SKIP) != 0;
}

/* Whether the ring holds a message (or one being written) at the head: the overflow list's
 * messages come after it. */
static bool ring_busy(mproc_queue *q)
{
    uint64_t pos = atomic_load(&q->head);
    for (;;) {
        uint64_t w = atomic_load(&q->slots[pos & q->mask].word);
        int64_t d = w_diff(w, pos);
        unsigned st = w_state(w);
        if (d < 0 || (d == 0 && st == MPROC__QUEUE_SLOT_FREE)) return false;
        if (d == 0 && (st == MPROC__QUEUE_SLOT_FULL || st == MPROC__QUEUE_SLOT_WRITING))
            return true;
        pos++; /* taken already */
    }
}

/* An unbounded queue's get that found the ring empty while the overflow list holds messages. */
static int get_overflow(mproc_queue *q, get_ctx *gc, uint32_t closed)
{
    mproc__queue_ovf_lock(q);
    /* Under the lock, which orders us after the put that filled the list: a message that put saw
     * in the ring (it went to the list because the ring was full) is visible now. */
    if (ring_busy(q)) {
        mproc__queue_ovf_unlock(q);
        return Q_RETRY;
    }
    q_node *n = mproc__queue_ovf_front(q);
    if (!n) {
        mproc__queue_ovf_unlock(q);
        return closed ? MPROC_ECLOSED : Q_WAIT;
    }
    if (n->len > gc->cap) {
        gc->len = n->len;
        mproc__queue_ovf_unlock(q);
        if (!gc->alloc) return -EMSGSIZE;
        free(gc->buf);
        gc->buf = malloc(gc->len);
        gc->cap = gc->buf ? gc->len : 0;
        return gc->buf ? Q_RETRY : -ENOMEM;
    }
    if (n->len) memcpy(gc->buf, n->data, n->len);
    gc->len = n->len;
    bool charged = n->flags & MPROC__QUEUE_FLAG_CHARGED;
    mproc__queue_ovf_pop(q, n);
    mproc__queue_ovf_unlock(q);
    mproc__queue_block_put(q, n);
    if (charged) {
        mproc__fence_light();
        mproc__queue_wake(&q->not_full);
    }
    return 0;
}

static int try_get(mproc_queue *q, void *c, q_block *b)
{
    get_ctx *gc = c;
    /* Read before looking at the head: see try_put. */
    uint32_t closed = atomic_load(&q->closed);
    uint32_t me = mproc__queue_self_tid();
    uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    for (;;) {
        q_slot *s = &q->slots[pos & q->mask];
        slot_prefetch(b, s);
        uint64_t w = atomic_load(&s->word);
        int64_t d = w_diff(w, pos);
        unsigned st = w_state(w);
        if (d == 0 && st == MPROC__QUEUE_SLOT_FULL) {
            uint32_t f = atomic_load_explicit(&s->flags, memory_order_relaxed);
            uint64_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
            if (!(f & MPROC__QUEUE_FLAG_SKIP) && len > gc->cap) {
                if (atomic_load(&s->word) != w) continue; /* gone meanwhile: len may be stale */
                gc->len = len;
                if (!gc->alloc) return -EMSGSIZE;
                free(gc->buf);
                gc->buf = malloc(len);
                gc->cap = gc->buf ? len : 0;
                return gc->buf ? Q_RETRY : -ENOMEM;
            }
            if (!atomic_compare_exchange_weak(&s->word, &w,
                                              w_make(pos, MPROC__QUEUE_SLOT_READING, me)))
                continue;
            hint_advance(&q->head, pos);
            if (!take(q, s, pos, gc)) return 0;
            pos++;
            continue;
        }
        if (d < 0 || (d == 0 && st == MPROC__QUEUE_SLOT_FREE)) {
            if (q->unbounded && atomic_load(&q->ovf_count)) return get_overflow(q, gc, closed);
            return closed ? MPROC_ECLOSED : Q_WAIT;
        }
        if (d == 0 && st == MPROC__QUEUE_SLOT_WRITING) {
            b->blocker = s;
            b->blocker_w = w;
            return Q_WAIT;
        }
        /* Taken already: move the head on for its taker, who may have died before doing so. */
        uint64_t p = pos;
        pos = atomic_compare_exchange_strong(&q->head, &p, pos + 1) ? pos + 1 : p;
    }
}

int mproc_queue_get(mproc_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_get, q, buf, cap, len, timeout);
    if ((!buf && cap) || mproc__timeout_check(timeout)) return -EINVAL;
    get_ctx gc = {.buf = buf, .cap = cap};
    q_block b = {0};
    int r = try_get(q, &gc, &b);
    if (r == Q_WAIT || r == Q_RETRY) r = q_run(q, try_get, &gc, timeout, true);
    if (len && (r == 0 || r == -EMSGSIZE)) *len = gc.len;
    return r;
}

int mproc_queue_get_alloc(mproc_queue *q, void **data, size_t *len, double timeout)
{
    if (data) *data = NULL;
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_get_alloc, q, data, len, timeout);
    if (!data || !len || mproc__timeout_check(timeout)) return -EINVAL;
    get_ctx gc = {.alloc = true};
    int r = q_run(q, try_get, &gc, timeout, true);
    if (r == 0 && !gc.buf) gc.buf = malloc(1); /* a zero-length message still gets a buffer */
    if (r == 0 && !gc.buf) {
        /* The message is consumed already; report it rather than lose it silently. */
        r = -ENOMEM;
    }
    if (r < 0) {
        free(gc.buf);
        return r;
    }
    *data = gc.buf;
    *len = gc.len;
    return 0;
}

/* ---- the rest ---- */

int mproc_queue_new(mproc_queue **out, const mproc_queue_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    size_t items = opts && opts->max_items ? opts->max_items : MPROC_QUEUE_DEFAULT_ITEMS;
    size_t bytes = opts && opts->max_bytes ? opts->max_bytes : MPROC_QUEUE_DEFAULT_BYTES;
    bool unbounded = items == MPROC_QUEUE_UNBOUNDED;
    if (unbounded) items = MPROC_QUEUE_DEFAULT_ITEMS; /* the ring: the fast path's share */
    if (items > MPROC_QUEUE_MAX_ITEMS) return -EINVAL;
    uint64_t n = 1;
    while (n < items)
        n <<= 1;
    void *raw;
    int r = mproc__arena_alloc(&raw,
                               sizeof(mproc_queue) + n * sizeof(q_slot) + MPROC__QUEUE_CACHE_LINE);
    if (r < 0) return r;
    mproc_queue *q = (mproc_queue *)(((uintptr_t)raw + MPROC__QUEUE_CACHE_LINE - 1) &
                                     ~(uintptr_t)(MPROC__QUEUE_CACHE_LINE - 1));
    q->raw = raw;
    q->mask = n - 1;
    q->max_items = items;
    /* A bound past any arena is no bound: skip the accounting altogether. */
    q->max_bytes = bytes >= ((size_t)1 << 62) ? UNBOUNDED_BYTES : bytes;
    /* Messages that fit a slot take no memory beyond the ring. When the bound is at least what
     * the ring's slots can hold, they cannot strain it, so they skip the accounting (two locked
     * instructions per message); a smaller bound counts every message. */
    if (q->max_bytes == UNBOUNDED_BYTES)
        q->charge_from = UINT64_MAX;
    else if ((uint64_t)n * MPROC_QUEUE_INLINE <= q->max_bytes)
        q->charge_from = MPROC_QUEUE_INLINE + 1;
    else
        q->charge_from = 1;
    /* Only in rings big enough, and bounded by their slots: a smaller max_items is checked against
     * the head, and waiting for slots past it would wait for nothing. */
    q->room = n >> ROOM_SHIFT >= ROOM_MIN && items == n ? n >> ROOM_SHIFT : 0;
    /* A put to a full unbounded ring never waits for room: it goes to the overflow list. */
    if (unbounded) q->room = 0;
    q->unbounded = unbounded;
    q->joinable = opts && opts->joinable;
    for (uint64_t i = 0; i < n; i++)
        atomic_init(&q->slots[i].word, w_make(i, MPROC__QUEUE_SLOT_FREE, 0));
    atomic_store(&q->magic, MPROC__QUEUE_MAGIC);
    *out = q;
    return 0;
}

size_t mproc_queue_size(mproc_queue *q)
{
    if (!valid(q)) {
        size_t n = 0;
        return MPROC__PROXY_OR(-EINVAL, queue_size, q, &n) == 0 ? n : 0;
    }
    /* Head first: it only grows, and never passes the tail read after it. */
    uint64_t h = atomic_load(&q->head), t = atomic_load(&q->tail);
    int64_t n = (int64_t)(t - h);
    uint64_t ring = n < 0 ? 0 : (uint64_t)n > q->mask + 1 ? q->mask + 1 : (uint64_t)n;
    return (size_t)(ring + (q->unbounded ? atomic_load(&q->ovf_count) : 0));
}

bool mproc_queue_empty(mproc_queue *q)
{
    return mproc_queue_size(q) == 0;
}

bool mproc_queue_full(mproc_queue *q)
{
    if (!valid(q)) return MPROC__PROXY_OR(-EINVAL, queue_full, q) > 0;
    if (!q->unbounded && mproc_queue_size(q) >= q->max_items) return true;
    if (q->max_bytes == UNBOUNDED_BYTES) return false;
    return used_bytes(atomic_load(&q->bytes_in), atomic_load(&q->bytes_out)) >= q->max_bytes;
}

int mproc_queue_close(mproc_queue *q)
{
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_close, q);
    atomic_store(&q->closed, 1);
    atomic_fetch_add(&q->not_empty, 1);
    atomic_fetch_add(&q->not_full, 1);
    mproc__futex_wake(&q->not_empty, INT_MAX);
    mproc__futex_wake(&q->not_full, INT_MAX);
    return 0;
}

bool mproc_queue_closed(mproc_queue *q)
{
    if (!valid(q)) return MPROC__PROXY_OR(-EINVAL, queue_closed, q) > 0;
    return atomic_load(&q->closed);
}

int mproc_queue_task_done(mproc_queue *q)
{
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_task_done, q);
    if (!q->joinable) return -EINVAL;
    uint32_t u = atomic_load(&q->unfinished);
    do {
        if (u == 0) return -EINVAL; /* more task_done calls than messages put */
    } while (!atomic_compare_exchange_weak(&q->unfinished, &u, u - 1));
    if (u == 1 && atomic_load(&q->join_waiters)) mproc__futex_wake(&q->unfinished, INT_MAX);
    return 0;
}

/* One step of join: 0 once no task is unfinished, else -ETIMEDOUT at the step's end. */
static int join_step(void *arg, int64_t step)
{
    mproc_queue *q = arg;
    if (atomic_load(&q->unfinished) == 0) return 0;
    atomic_fetch_add(&q->join_waiters, 1);
    uint32_t u = atomic_load(&q->unfinished);
    if (u) mproc__futex_wait(&q->unfinished, u, step);
    atomic_fetch_sub(&q->join_waiters, 1);
    return atomic_load(&q->unfinished) == 0 ? 0 : -ETIMEDOUT;
}

int mproc_queue_join(mproc_queue *q, double timeout)
{
    if (!valid(q)) return MPROC__PROXY_OR_EINVAL(queue_join, q, timeout);
    if (!q->joinable || mproc__timeout_check(timeout)) return -EINVAL;
    if (atomic_load(&q->unfinished) == 0) return 0;
    if (timeout == 0) return -ETIMEDOUT;
    return mproc__intr_sleep(join_step, q, mproc__deadline(timeout));
}

void mproc_queue_free(mproc_queue *q)
{
    if (!valid(q)) {
        if (q) MPROC__PROXY_VOID(queue_free, q);
        return;
    }
    uint64_t m = MPROC__QUEUE_MAGIC;
    if (!atomic_compare_exchange_strong(&q->magic, &m, 0)) return;
    for (uint64_t i = 0; i <= q->mask; i++) {
        uint64_t b = atomic_exchange(&q->slots[i].block, 0);
        if (b) mproc__arena_free((void *)(uintptr_t)b);
    }
    mproc__queue_ovf_free(q);
    for (int i = 0; i < MPROC__QUEUE_STASH_ENTRIES; i++) {
        uint64_t b = atomic_exchange(&q->stash[i], 0);
        if (b) mproc__arena_free((void *)(uintptr_t)b);
    }
    mproc__arena_free(q->raw);
}
