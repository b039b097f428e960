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
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "platform/interrupt.h"
#include "pool/pool.h"

#define CHUNKS_PER_WORKER 4

typedef struct {
    mproc_map_fn fn;
    void *arg;
    const char *in;
    char *out;
    size_t in_size, out_size;
} map_desc;

typedef struct {
    const map_desc *d;
    size_t first, count;
} chunk_arg;
_Static_assert(sizeof(chunk_arg) <= MPROC__SLOT_INLINE, "chunk descriptor travels inline");

static int map_chunk(mproc_task *t)
{
    const chunk_arg *a = mproc_task_arg(t, NULL);
    const map_desc *d = a->d;
    const char *in = d->in + a->first * d->in_size;
    char *out = d->out + a->first * d->out_size;
    mproc_map_fn fn = d->fn;
    void *arg = d->arg;
    size_t is = d->in_size, os = d->out_size;
    for (size_t i = 0; i < a->count; i++) {
        int r = fn(in + i * is, out + i * os, arg);
        if (r != 0)
            return mproc_task_fail(t, r < 0 ? r : MPROC_ETASKFAILED, "map item %zu failed (%d)",
                                   a->first + i, r);
        if ((i & 63) == 63 && mproc_task_cancelled(t)) return MPROC_ECANCELLED;
    }
    return 0;
}

/* Wait for a chunk; -EINTR as soon as a signal is pending for the caller (platform/interrupt.h:
 * while chunks are copied in or out a handler would interrupt nothing, so signals stay blocked). */
static int wait_slot(void *s, int64_t step)
{
    return mproc__slot_wait(s, step);
}

static size_t auto_chunksize(size_t n, int workers)
{
    size_t chunks = (size_t)workers * CHUNKS_PER_WORKER;
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
    mproc__stage *st;
    char *base; /* st->mem: the map_desc, then the staged inputs, then the staged outputs */
    mproc_future **fs;
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
    m->in_off = 64;
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
    chunk_arg a = {(const map_desc *)m->base, first, count};
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

/* Wait for the queued chunks in order and copy their results out; the map's outcome, given the
 * outcome of dispatching it. */
static int collect(map_call *m, const mproc__intr *intr, int first_err)
{
    for (size_t c = 0; c < m->queued; c++) {
        mproc__slot *s = mproc__slot_at(m->p->slot_chunks, m->fs[c]->idx);
        int r = mproc__intr_wait(intr, wait_slot, s, INT64_MAX);
        if (r == -EINTR) {
            abandon(m->fs, c, m->queued);
            return -EINTR;
        }
        int code = mproc__slot_code(s);
        if (code != 0 && first_err == 0) {
            first_err = code;
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

int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, const void *in, size_t in_size, void *out,
                   size_t out_size, size_t n, const mproc_map_opts *opts)
{
    if (!mproc__pool_valid(p) || !fn) return -EINVAL;
    if (n && ((in_size && !in) || (out_size && !out))) return -EINVAL;
    if (n && (in_size > SIZE_MAX / n || out_size > SIZE_MAX / n)) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = mproc__pool_state_check_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (r < 0 || n == 0) return r;

    map_call m = {.p = p, .in = in, .out = out, .in_size = in_size, .out_size = out_size, .n = n};
    m.cs = opts && opts->chunksize ? opts->chunksize : auto_chunksize(n, p->nworkers);
    m.nchunks = (n + m.cs - 1) / m.cs;
    r = stage_in(&m, fn, opts ? opts->arg : NULL);
    if (r < 0) return r;
    mproc__intr intr;
    mproc__intr_block(&intr);
    r = collect(&m, &intr, dispatch(&m));
    for (size_t c = 0; c < m.queued; c++)
        mproc_future_free(m.fs[c]);
    free(m.fs);
    /* A signal that came meanwhile is delivered now, its handler running before we return. */
    mproc__intr_restore(&intr);
    pthread_mutex_lock(&p->mu);
    mproc__stage_unref(p, m.st);
    pthread_mutex_unlock(&p->mu);
    return r;
}
