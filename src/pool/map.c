/* map: fixed-size items in chunks, results in input order.
 *
 * Items that are not already in the arena are staged through one arena block per map (inputs
 * copied in chunk by chunk while workers compute the earlier chunks, results copied out as
 * chunks finish). The block is refcounted by its chunk tasks, so an interrupted map can return
 * at once while chunks still run; the last one used is kept by the pool so that the next map of
 * a similar size does not fault its pages in again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "platform/interrupt.h"
#include "pool/advice.h"
#include "pool/backend.h"
#include "pool/future.h"
#include "pool/pointers.h"
#include "pool/task.h"

#define CHUNKS_PER_WORKER 4
/* Chunks of at least this many bytes of input or output have their pages mapped at once. */
#define PREFAULT_MIN (64 * 1024)

typedef struct {
    mproc_map_fn fn;
    void *arg;
    const char *in;
    char *out;
    size_t in_size, out_size;
    size_t arg_size; /* > 0: arg is the staged copy (for a remote backend: backend.h) */
} map_desc;

/* `first` first: until the chunk writes its progress over the argument (map_chunk), the first
 * 8 bytes of the record's inline buffer already name its first item. */
typedef struct {
    size_t first, count;
    const map_desc *d;
} chunk_arg;
_Static_assert(sizeof(chunk_arg) <= MPROC__SLOT_INLINE, "chunk descriptor travels inline");

/* The item a chunk is at, kept in its record where the argument was (the worker copied it out
 * before it ran the chunk): if the worker dies, the caller still reads which item it died in.
 * The record's first line is the chunk's own; the caller reads it only after the chunk is done. */
static inline void set_progress(mproc__slot *s, size_t i)
{
    uint64_t v = i;
    memcpy(s->inline_buf, &v, sizeof v);
}

static inline size_t get_progress(const mproc__slot *s)
{
    uint64_t v;
    memcpy(&v, s->inline_buf, sizeof v);
    return (size_t)v;
}

static int map_chunk(mproc_task *t)
{
    const chunk_arg *a = mproc_task_arg(t, NULL);
    const map_desc *d = a->d;
    const char *in = d->in + a->first * d->in_size;
    char *out = d->out + a->first * d->out_size;
    mproc_map_fn fn = d->fn;
    void *arg = d->arg;
    size_t is = d->in_size, os = d->out_size, first = a->first, count = a->count;
    /* The arrays are shared memory: each worker process maps their pages for itself, one fault
     * per 4 KiB page the first time it touches it, and which chunks a worker gets changes from
     * map to map. One madvise per array maps the chunk's pages at once (about a third of the
     * system time of the faults; docs/performance.md). */
    if (count * is >= PREFAULT_MIN) mproc__prefault_for(in, count * is, MPROC__MADV_POPULATE_READ);
    if (count * os >= PREFAULT_MIN) mproc__prefault(out, count * os);
    return mproc__map_run_items(t, fn, in, is, out, os, first, count, arg);
}

int mproc__map_run_items(mproc_task *t, mproc_map_fn fn, const char *in, size_t is, char *out,
                         size_t os, size_t first, size_t count, void *arg)
{
    /* The items' own task (mproc_task_current): its mproc_task_fail writes to a collector, so
     * the chunk's failure can name the item. */
    mproc__collect c = {0};
    mproc__slot *s = t->s;
    mproc_task item = {.s = s, .collect = &c, .soft_deadline = t->soft_deadline};
    mproc__task_current = &item;
    int code = 0, r = 0;
    for (size_t i = 0; i < count; i++) {
        set_progress(s, first + i);
        r = fn(in + i * is, out + i * os, arg);
        if (r != 0 || item.failed) {
            code = item.failed ? item.code : r < 0 ? r : MPROC_ETASKFAILED;
            break;
        }
        if ((i & 63) == 63 && mproc_task_cancelled(t)) {
            code = MPROC_ECANCELLED;
            break;
        }
    }
    mproc__task_current = t;
    if (code && item.failed && c.len)
        mproc_task_fail(t, code, "%.*s", (int)c.len, (const char *)c.buf);
    else if (code && item.failed)
        mproc_task_fail(t, code, "the item failed (%s)", mproc_strerror(code));
    else if (code && code != MPROC_ECANCELLED)
        mproc_task_fail(t, code, "the item function returned %d", r);
    free(c.buf);
    return code;
}

bool mproc__map_chunk_view(const mproc__slot *s, mproc__map_view *v)
{
    if (s->fn != map_chunk) return false;
    chunk_arg a;
    memcpy(&a, s->inline_buf, sizeof a);
    const map_desc *d = a.d;
    *v = (mproc__map_view){d->fn,
                           d->arg,
                           d->arg_size,
                           d->in + a.first * d->in_size,
                           d->out + a.first * d->out_size,
                           d->in_size,
                           d->out_size,
                           a.count,
                           a.first};
    return true;
}

void mproc__map_chunk_set_progress(mproc__slot *s, size_t item)
{
    set_progress(s, item);
}

/* Wait for a chunk; -EINTR as soon as a signal is pending for the caller (platform/interrupt.h:
 * while chunks are copied in or out a handler would interrupt nothing, so signals stay blocked). */
static int wait_slot(void *s, int64_t step)
{
    return mproc__slot_wait(s, step);
}

static size_t auto_chunksize(const mproc_pool *p, size_t n)
{
    int per =
        p->backend->map_chunks_per_worker ? p->backend->map_chunks_per_worker : CHUNKS_PER_WORKER;
    size_t chunks = (size_t)p->nworkers * (size_t)per;
    size_t cs = (n + chunks - 1) / chunks;
    return cs ? cs : 1;
}

/* Stop what is left of a map: queued chunks are cancelled, running ones asked to stop. */
static void abandon(mproc_future **fs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        mproc_future_cancel(fs[i]);
}

/* One map call: its chunks, their staging block and their futures. */
typedef struct {
    mproc_pool *p;
    const char *in;
    char *out;
    size_t in_size, out_size, n;
    size_t cs, nchunks, queued;
    bool direct; /* both buffers are in the arena: the workers use them in place, no staging */
    size_t in_off, out_off;
    size_t arg_off, arg_size; /* opts.arg copied into the staging block when arg_size > 0 */
    mproc__stage *st;
    char *base; /* st->mem: the map_desc, the copied arg, the staged inputs, the staged outputs */
    mproc_future **fs;
    mproc_error *err;     /* opts.error */
    size_t *failed_index; /* opts.failed_index */
    bool err_filled;
    /* opts.progress */
    void (*progress)(size_t done, size_t total, void *arg);
    void *progress_arg;
    int64_t progress_every, progress_next; /* ns */
    size_t progress_shown;
} map_call;

static void chunk_span(const map_call *m, size_t c, size_t *first, size_t *count)
{
    *first = c * m->cs;
    *count = m->n - *first < m->cs ? m->n - *first : m->cs;
}

/* Lay out the staging block and write the map's descriptor at its start. */
static int stage_in(map_call *m, mproc_map_fn fn, void *arg)
{
    size_t in_bytes = m->n * m->in_size, out_bytes = m->n * m->out_size;
    m->direct = (!in_bytes || mproc__arena_contains(m->in, in_bytes)) &&
                (!out_bytes || mproc__arena_contains(m->out, out_bytes));
    m->arg_off = 64;
    m->in_off = m->arg_off + ((m->arg_size + 63) & ~(size_t)63);
    m->out_off = m->in_off + (m->direct ? 0 : (in_bytes + 63) & ~(size_t)63);
    size_t total = m->out_off + (m->direct ? 0 : out_bytes);
    m->fs = malloc(m->nchunks * sizeof *m->fs);
    if (!m->fs) return -ENOMEM;
    pthread_mutex_lock(&m->p->mu);
    int r = mproc__stage_get(m->p, total, &m->st);
    pthread_mutex_unlock(&m->p->mu);
    if (r < 0) {
        free(m->fs);
        return r;
    }
    m->base = m->st->mem;
    map_desc *d = (map_desc *)m->base;
    d->fn = fn;
    d->arg = arg;
    if (m->arg_size) {
        memcpy(m->base + m->arg_off, arg, m->arg_size);
        d->arg = m->base + m->arg_off;
    }
    d->arg_size = m->arg_size;
    d->in = m->direct ? m->in : m->base + m->in_off;
    d->out = m->direct ? m->out : m->base + m->out_off;
    d->in_size = m->in_size;
    d->out_size = m->out_size;
    return 0;
}

/* Copy chunk c's inputs in and queue it: workers compute the earlier chunks meanwhile. */
static int queue_chunk(map_call *m, size_t c)
{
    mproc_pool *p = m->p;
    size_t first, count;
    chunk_span(m, c, &first, &count);
    if (!m->direct && m->in_size)
        memcpy(m->base + m->in_off + first * m->in_size, m->in + first * m->in_size,
               count * m->in_size);
    chunk_arg a = {first, count, (const map_desc *)m->base};
    pthread_mutex_lock(&p->mu);
    int r = mproc__pool_state_check_locked(p);
    if (r == 0) r = mproc__pool_submit_locked(p, map_chunk, &a, sizeof a, NULL, m->st, &m->fs[c]);
    if (r == 0) m->queued++;
    pthread_mutex_unlock(&p->mu);
    return r;
}

static int dispatch(map_call *m)
{
    int r = 0;
    for (size_t c = 0; c < m->nchunks && r == 0; c++)
        r = queue_chunk(m, c);
    if (r < 0) abandon(m->fs, 0, m->queued);
    return r;
}

/* The failure of chunk c, for opts.error and opts.failed_index: the item it failed in (the
 * chunk's first if it never ran), with the record's error prefixed by that item. */
static void report_chunk(map_call *m, size_t c)
{
    if (!m->err && !m->failed_index) return;
    size_t first, count;
    chunk_span(m, c, &first, &count);
    mproc__slot *s = mproc__slot_at(m->p->slot_chunks, m->fs[c]->idx);
    size_t k = get_progress(s); /* first, while the record still holds the argument */
    bool known = s->pid != 0 && k >= first && k < first + count;
    if (!known) k = first;
    if (m->failed_index) *m->failed_index = k;
    if (!m->err) return;
    m->err_filled = true;
    if (mproc_future_error(m->fs[c], m->err) != 0) return;
    char pre[96];
    int n = known || count == 1
                ? snprintf(pre, sizeof pre, "map item %zu: ", k)
                : snprintf(pre, sizeof pre, "map items %zu-%zu: ", first, first + count - 1);
    size_t len = strlen(m->err->message), cap = sizeof m->err->message;
    if ((size_t)n + len >= cap) len = cap - 1 - (size_t)n;
    memmove(m->err->message + n, m->err->message, len);
    memcpy(m->err->message, pre, (size_t)n);
    m->err->message[(size_t)n + len] = '\0';
}

/* Items done: the chunks before `from` (collected in order), and those after that have ended
 * successfully. */
static size_t items_done(const map_call *m, size_t from)
{
    size_t done = from * m->cs;
    for (size_t c = from; c < m->queued; c++) {
        mproc__slot *s = mproc__slot_at(m->p->slot_chunks, m->fs[c]->idx);
        if (mproc__slot_done(s) && mproc__slot_code(s) == 0) {
            size_t first, count;
            chunk_span(m, c, &first, &count);
            done += count;
        }
    }
    return done < m->n ? done : m->n;
}

/* opts.progress while collecting from chunk c: when its interval has passed and the count
 * moved (or at the end, always once). */
static void show_progress(map_call *m, size_t c, bool end, bool all)
{
    if (!m->progress) return;
    int64_t now = mproc__now_ns();
    if (!end && now < m->progress_next) return;
    size_t done = all ? m->n : items_done(m, c);
    if (done < m->progress_shown)
        done = m->progress_shown; /* a chunk failed after it was counted */
    if (!end && done == m->progress_shown) return;
    m->progress_shown = done;
    m->progress_next = now > INT64_MAX - m->progress_every ? INT64_MAX : now + m->progress_every;
    m->progress(done, m->n, m->progress_arg);
}

/* Wait for chunk c's record: in steps of the progress interval when there is one. */
static int wait_chunk(map_call *m, const mproc__intr *intr, size_t c)
{
    mproc__slot *s = mproc__slot_at(m->p->slot_chunks, m->fs[c]->idx);
    /* A backend that helps its transport along while a caller waits does so here too. */
    mproc__wait_arg w = {m->p, s, 0};
    bool helped = m->p->backend->wait != NULL;
    for (;;) {
        int r =
            mproc__intr_wait(intr, helped ? mproc__wait_step : wait_slot, helped ? (void *)&w : s,
                             m->progress ? m->progress_next : INT64_MAX);
        if (r != -ETIMEDOUT || !m->progress) return r;
        show_progress(m, c, false, false);
    }
}

/* Wait for the queued chunks in order and copy their results out; the map's outcome, given the
 * outcome of dispatching it. */
static int collect(map_call *m, const mproc__intr *intr, int first_err)
{
    for (size_t c = 0; c < m->queued; c++) {
        mproc__slot *s = mproc__slot_at(m->p->slot_chunks, m->fs[c]->idx);
        int r = wait_chunk(m, intr, c);
        show_progress(m, c, false, false);
        if (r == -EINTR) {
            abandon(m->fs, c, m->queued);
            return -EINTR;
        }
        int code = mproc__slot_code(s);
        if (code != 0 && first_err == 0) {
            first_err = code;
            report_chunk(m, c);
            abandon(m->fs, c + 1, m->queued);
            /* Chunks still running write only to the staging block, which they keep alive:
             * no need to wait for them. With arena buffers they write to `out`: wait. */
            if (!m->direct) break;
        }
        if (code == 0 && first_err == 0 && !m->direct && m->out_size) {
            size_t first, count;
            chunk_span(m, c, &first, &count);
            memcpy(m->out + first * m->out_size, m->base + m->out_off + first * m->out_size,
                   count * m->out_size);
        }
    }
    return first_err;
}

/* opts.error for a failure no item is to blame for (arguments, state, -EINTR, memory). */
static int report_plain(map_call *m, int code, const char *msg)
{
    if (code == 0 || !m->err || m->err_filled) return code;
    m->err_filled = true;
    m->err->code = code;
    snprintf(m->err->message, sizeof m->err->message, "map: %s", msg ? msg : mproc_strerror(code));
    return code;
}

static int map_run(map_call *m, mproc_map_fn fn, const mproc_map_opts *opts)
{
    mproc_pool *p = m->p;
    size_t n = m->n;
    if (!mproc__pool_valid(p) || !fn) return -EINVAL;
    if (n && ((m->in_size && !m->in) || (m->out_size && !m->out))) return -EINVAL;
    if (n && (m->in_size > SIZE_MAX / n || m->out_size > SIZE_MAX / n)) return -EINVAL;
    void *arg = opts ? opts->arg : NULL;
    m->arg_size = opts ? opts->arg_size : 0;
    if (opts && opts->progress) {
        int64_t every = 0;
        if (opts->progress_interval < 0 || mproc__timeout_check(opts->progress_interval))
            return -EINVAL;
        if (opts->progress_interval > 0) mproc__timeout_ns(opts->progress_interval, &every);
        m->progress = opts->progress;
        m->progress_arg = opts->progress_arg;
        m->progress_every = every ? every : 100000000;
    }
    if (m->arg_size && (!arg || m->arg_size > SIZE_MAX / 4)) return -EINVAL;
    if (arg && !m->arg_size && p->ptrs) {
        char msg[MPROC_ERROR_MSG_MAX];
        pid_t w = 0;
        if (p->backend->worker_pids(p, &w, 1) < 1) w = 0;
        int r = mproc__ptr_check(p->ptrs, w, arg, "map_opts.arg", msg, sizeof msg);
        if (r < 0) return report_plain(m, r, msg);
    }
    pthread_mutex_lock(&p->mu);
    int r = mproc__pool_state_check_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (r < 0 || n == 0) return r;

    m->cs = opts && opts->chunksize ? opts->chunksize : auto_chunksize(p, n);
    m->nchunks = (n + m->cs - 1) / m->cs;
    r = stage_in(m, fn, arg);
    if (r < 0) return r;
    mproc__map_watch watch;
    mproc__map_watch_begin(p, &watch);
    mproc__intr intr;
    mproc__intr_block(&intr);
    int64_t t0 = mproc__now_ns();
    m->progress_next = t0 > INT64_MAX - m->progress_every ? INT64_MAX : t0 + m->progress_every;
    r = collect(m, &intr, dispatch(m));
    show_progress(m, 0, true, r == 0);
    for (size_t c = 0; c < m->queued; c++)
        mproc_future_free(m->fs[c]);
    free(m->fs);
    /* A signal that came meanwhile is delivered now, its handler running before we return. */
    mproc__intr_restore(&intr);
    pthread_mutex_lock(&p->mu);
    mproc__stage_unref(p, m->st);
    pthread_mutex_unlock(&p->mu);
    mproc__map_watch_end(p, &watch, m->queued, r);
    mproc__advise_overhead(p);
    return r;
}

int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, const void *in, size_t in_size, void *out,
                   size_t out_size, size_t n, const mproc_map_opts *opts)
{
    map_call m = {.p = p, .in = in, .out = out, .in_size = in_size, .out_size = out_size, .n = n};
    m.err = opts ? opts->error : NULL;
    m.failed_index = opts ? opts->failed_index : NULL;
    if (m.err) {
        memset(m.err, 0, sizeof *m.err);
        m.err->exit_status = -1;
        m.err->rank = -1;
    }
    if (m.failed_index) *m.failed_index = SIZE_MAX;
    return report_plain(&m, map_run(&m, fn, opts), NULL);
}
