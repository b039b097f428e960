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
static void abandon(mproc_pool *p, mproc_future **fs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        mproc_future_cancel(fs[i]);
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

    size_t cs = opts && opts->chunksize ? opts->chunksize : auto_chunksize(n, p->nworkers);
    size_t nchunks = (n + cs - 1) / cs;
    size_t in_bytes = n * in_size, out_bytes = n * out_size;
    bool direct = (!in_bytes || mproc__arena_contains(in, in_bytes)) &&
                  (!out_bytes || mproc__arena_contains(out, out_bytes));
    size_t in_off = 64, out_off = in_off + (direct ? 0 : (in_bytes + 63) & ~(size_t)63);
    size_t total = out_off + (direct ? 0 : out_bytes);
    mproc_future **fs = malloc(nchunks * sizeof *fs);
    if (!fs) return -ENOMEM;
    mproc__stage *st;
    pthread_mutex_lock(&p->mu);
    r = mproc__stage_get(p, total, &st);
    pthread_mutex_unlock(&p->mu);
    if (r < 0) {
        free(fs);
        return r;
    }
    char *base = st->mem;
    map_desc *d = (map_desc *)base;
    d->fn = fn;
    d->arg = opts ? opts->arg : NULL;
    d->in = direct ? in : base + in_off;
    d->out = direct ? out : base + out_off;
    d->in_size = in_size;
    d->out_size = out_size;

    mproc__intr intr;
    mproc__intr_block(&intr);
    size_t queued = 0;
    for (size_t c = 0; c < nchunks && r == 0; c++) {
        size_t first = c * cs, count = n - first < cs ? n - first : cs;
        if (!direct && in_size)
            memcpy(base + in_off + first * in_size, (const char *)in + first * in_size,
                   count * in_size);
        chunk_arg a = {d, first, count};
        pthread_mutex_lock(&p->mu);
        r = mproc__pool_state_check_locked(p);
        if (r == 0) r = mproc__pool_alloc_locked(p, &fs[c]);
        if (r == 0) {
            mproc_future *f = fs[c];
            mproc__slot_fill(mproc__slot_at(p->slot_chunks, f->idx), map_chunk, &a, sizeof a, NULL);
            atomic_fetch_add(&st->refs, 1);
            f->stage = st;
            r = mproc__pool_queue_locked(p, &f, 1);
            if (r < 0)
                mproc__pool_release_locked(p, f);
            else
                queued++;
        }
        pthread_mutex_unlock(&p->mu);
    }
    int first_err = r;
    if (r < 0) abandon(p, fs, 0, queued);
    for (size_t c = 0; c < queued; c++) {
        mproc__slot *s = mproc__slot_at(p->slot_chunks, fs[c]->idx);
        r = mproc__intr_wait(&intr, wait_slot, s, INT64_MAX);
        if (r == -EINTR) {
            abandon(p, fs, c, queued);
            first_err = -EINTR;
            break;
        }
        int code = mproc__slot_code(s);
        if (code != 0 && first_err == 0) {
            first_err = code;
            abandon(p, fs, c + 1, queued);
            /* Chunks still running write only to the staging block, which they keep alive:
             * no need to wait for them. With arena buffers they write to `out`: wait. */
            if (!direct) break;
        }
        if (code == 0 && first_err == 0 && !direct && out_size) {
            size_t first = c * cs, count = n - first < cs ? n - first : cs;
            memcpy((char *)out + first * out_size, base + out_off + first * out_size,
                   count * out_size);
        }
    }
    for (size_t c = 0; c < queued; c++)
        mproc_future_free(fs[c]);
    free(fs);
    /* A signal that came meanwhile is delivered now, its handler running before we return. */
    mproc__intr_restore(&intr);
    pthread_mutex_lock(&p->mu);
    mproc__stage_unref(p, st);
    pthread_mutex_unlock(&p->mu);
    return first_err;
}
