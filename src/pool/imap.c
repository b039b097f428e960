/* imap / imap_unordered: a lazy iterator over variable-size items with a bounded window.
 *
 * Inputs are pulled from the caller's generator only to keep `window` tasks in flight, in the
 * caller's thread during mproc_imap_next, so an endless generator works and memory stays
 * bounded. Results are handed out without a copy: the pointer is into the task record, which is
 * kept until the next call.
 *
 * With a chunksize above 1, up to that many items travel in one task (as Python's imap chunksize
 * does): the caller packs their bytes, a worker runs the item function on each in turn with its
 * results collected (mproc_task_return and mproc_task_fail write to the collector, task.c), and
 * the packed results come back in one record. One task's overhead is then shared by the chunk.
 *
 * Chunk argument: chunk_hdr, n lengths (uint64), then the items, each padded to 8 bytes.
 * Chunk result: res_hdr, then per item a res_item (code 0: len result bytes; else: len bytes of
 * the mproc_task_fail message), each padded to 8 bytes.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/backend.h"
#include "pool/future.h"
#include "pool/pool.h"
#include "pool/task.h"

#define IMAP_MAGIC 0x696d6170U
#define PAD8 MPROC__PAD8

typedef struct {
    mproc_task_fn fn;
    uint32_t n;
    uint32_t pad;
} chunk_hdr;

typedef struct {
    uint32_t n;
    int32_t pid;
} res_hdr;

typedef struct {
    int32_t code;
    uint32_t len;
} res_item;

/* A task in flight: one item, or a chunk of n. */
typedef struct {
    mproc_future *f;
    size_t first; /* input index of its first item */
    uint32_t n;
} entry;

struct mproc_imap {
    /* The open task: its result is being handed out, by the inline path of mproc_imap_next
     * while it holds a chunk's records (ok_left), one record per call and no other work. */
    const unsigned char *cur, *end; /* chunks: the next item's record; the result's end */
    size_t ok_left;                 /* chunk records not handed out yet */
    size_t err_left;                /* the whole task failed: its items still to report */
    size_t cur_index;               /* the input index of the next item */
    int cur_err;                    /* what the whole task failed with */
    int32_t cur_pid;                /* the worker that ran the open chunk */
    mproc_future *held;             /* the open task, freed when the next one is opened */

    uint32_t magic;
    mproc_pool *p;
    mproc_task_fn fn;
    mproc_imap_input_fn input;
    void *iarg;
    bool unordered;
    size_t window, chunksize;
    entry *ent;         /* tasks in flight; ordered: a ring from head; unordered: [0, count) */
    mproc_future **fsw; /* unordered: the futures to wait on */
    size_t head, count;
    size_t next_index;
    bool input_done, err_reported;
    int input_err;
    unsigned char *pack; /* a chunk being packed */
    size_t pack_cap;
    mproc_error err;
};

/* Make *buf hold at least need bytes, doubling. */
static int reserve(unsigned char **buf, size_t *cap, size_t need)
{
    mproc__collect c = {.buf = *buf, .cap = *cap};
    int r = mproc__collect_reserve(&c, need);
    *buf = c.buf;
    *cap = c.cap;
    return r;
}

/* ---- in the worker ---- */

/* Runs the chunk's items one after the other; each item's result (or failure message) is
 * written by mproc_task_return/mproc_task_fail straight into its record (task.c). */
static int imap_chunk(mproc_task *t)
{
    size_t alen;
    const unsigned char *a = mproc_task_arg(t, &alen);
    chunk_hdr h;
    if (alen < sizeof h) return -EINVAL;
    memcpy(&h, a, sizeof h);
    size_t off = sizeof h + (size_t)h.n * sizeof(uint64_t);
    if (off > alen) return -EINVAL;
    mproc__collect c = {0};
    size_t pos = sizeof(res_hdr); /* the next item's record */
    int r = mproc__collect_reserve(&c, pos + sizeof(res_item));
    if (r == 0) memcpy(c.buf, &(res_hdr){h.n, (int32_t)getpid()}, sizeof(res_hdr));
    /* The item's own task (also mproc_task_current's while it runs): the chunk's record and
     * time limit, no inline argument copy. */
    mproc_task sub;
    sub.s = t->s;
    sub.soft_deadline = t->soft_deadline;
    sub.collect = &c;
    mproc__task_current = &sub;
    for (uint32_t i = 0; r == 0 && i < h.n; i++) {
        uint64_t ilen;
        memcpy(&ilen, a + sizeof h + i * sizeof(uint64_t), sizeof ilen);
        if (ilen > alen - off) {
            r = -EINVAL;
            break;
        }
        if (mproc__task_cancelled(t)) {
            r = MPROC_ECANCELLED;
            break;
        }
        sub.arg = a + off;
        sub.arg_len = (size_t)ilen;
        sub.failed = false;
        sub.code = 0;
        c.at = pos + sizeof(res_item);
        c.len = 0;
        int fr = h.fn(&sub);
        int code = sub.failed ? sub.code : fr > 0 ? MPROC_ETASKFAILED : fr;
        if (code && !sub.failed) c.len = 0; /* a plain error return has no message */
        memcpy(c.buf + pos, &(res_item){code, (uint32_t)c.len}, sizeof(res_item));
        pos = c.at + PAD8(c.len);
        r = mproc__collect_reserve(&c, pos + sizeof(res_item));
        off += PAD8((size_t)ilen);
    }
    mproc__task_current = t;
    if (r == 0) r = mproc_task_return(t, c.buf, pos);
    free(c.buf);
    return r;
}

const mproc_task_fn mproc__imap_chunk_fn = imap_chunk;

/* ---- in the caller ---- */

int mproc_imap_new(mproc_imap **out, mproc_pool *p, mproc_task_fn fn, mproc_imap_input_fn input,
                   void *input_arg, const mproc_imap_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!mproc__pool_valid(p) || !fn || !input) return -EINVAL;
    if (opts && opts->chunksize > UINT32_MAX) return -EINVAL;
    mproc_imap *it = calloc(1, sizeof *it);
    if (!it) return -ENOMEM;
    it->magic = IMAP_MAGIC;
    it->p = p;
    it->fn = fn;
    it->input = input;
    it->iarg = input_arg;
    it->unordered = opts && opts->unordered;
    it->window = opts && opts->window ? opts->window : (size_t)p->nworkers * 4 + 4;
    it->chunksize = opts && opts->chunksize > 1 ? opts->chunksize : 1;
    it->ent = calloc(it->window, sizeof *it->ent);
    it->fsw = calloc(it->window, sizeof *it->fsw);
    if (!it->ent || !it->fsw) {
        mproc_imap_free(it);
        return -ENOMEM;
    }
    *out = it;
    return 0;
}

/* Pull up to chunksize items and pack them (room is kept for every length entry, and the items
 * are moved up over the unused ones at the end). Returns 1 while the input may have more, 0 at
 * its end, or an error; *count items were packed either way. */
static int pack_chunk(mproc_imap *it, uint32_t *count, size_t *plen)
{
    size_t head = sizeof(chunk_hdr) + it->chunksize * sizeof(uint64_t);
    *count = 0;
    *plen = 0;
    int r = reserve(&it->pack, &it->pack_cap, head); /* the head is written below */
    if (r < 0) return r;
    size_t len = head;
    uint32_t n = 0;
    r = 1;
    while (n < it->chunksize) {
        const void *data = NULL;
        size_t dlen = 0;
        r = it->input(&data, &dlen, it->iarg);
        if (r <= 0) break;
        size_t need = len + PAD8(dlen);
        if (need > it->pack_cap && (r = reserve(&it->pack, &it->pack_cap, need)) < 0) break;
        mproc__copy_pad8(it->pack + len, data, dlen);
        len = need;
        uint64_t l = dlen;
        memcpy(it->pack + sizeof(chunk_hdr) + n * sizeof(uint64_t), &l, sizeof l);
        n++;
        r = 1;
    }
    if (n == 0) return r;
    size_t used = sizeof(chunk_hdr) + n * sizeof(uint64_t);
    memmove(it->pack + used, it->pack + head, len - head);
    chunk_hdr h = {it->fn, n, 0};
    memcpy(it->pack, &h, sizeof h);
    *count = n;
    *plen = len - (head - used);
    return r;
}

/* Keep `window` tasks in flight: one submit per task, i.e. per chunk. */
static void fill(mproc_imap *it)
{
    while (it->count < it->window && !it->input_done) {
        mproc_future *f;
        uint32_t n = 1;
        int r;
        if (it->chunksize == 1) {
            const void *data = NULL;
            size_t len = 0;
            r = it->input(&data, &len, it->iarg);
            if (r <= 0) {
                it->input_done = true;
                it->input_err = r;
                break;
            }
            r = mproc_pool_submit(it->p, it->fn, data, len, &f);
        } else {
            size_t len = 0;
            r = pack_chunk(it, &n, &len);
            if (r <= 0) {
                it->input_done = true;
                it->input_err = r;
            }
            if (n == 0) break;
            r = mproc_pool_submit(it->p, imap_chunk, it->pack, len, &f);
        }
        if (r < 0) {
            it->input_done = true;
            it->input_err = r;
            break;
        }
        size_t k = it->unordered ? it->count : (it->head + it->count) % it->window;
        it->ent[k] = (entry){.f = f, .first = it->next_index, .n = n};
        it->next_index += n;
        it->count++;
    }
}

/* A record that does not parse: the rest of its task is dropped. */
static int item_bad(mproc_imap *it, const void **data, size_t *len, size_t *index)
{
    *data = NULL;
    if (len) *len = 0;
    if (index) *index = it->cur_index;
    it->ok_left = 0;
    return -EPROTO;
}

/* An item that failed by itself: its error record from the message the worker kept. */
static int item_failed(mproc_imap *it, const res_item *ri, const unsigned char *msg,
                       const void **data, size_t *len)
{
    *data = NULL;
    if (len) *len = 0;
    memset(&it->err, 0, sizeof it->err);
    it->err.code = ri->code;
    it->err.worker = it->cur_pid;
    it->err.exit_status = -1;
    mproc__future_origin(it->held, &it->err);
    size_t m = ri->len < sizeof it->err.message ? ri->len : sizeof it->err.message - 1;
    memcpy(it->err.message, msg, m);
    it->err.message[m] = '\0';
    return ri->code;
}

/* Hand out the open chunk's next record if it is a result (ok_left > 0): true with the item set.
 * Inline: with the checks a record needs, this is all a call costs for every item of a chunk
 * but its first. */
static inline bool take_ok(mproc_imap *it, const void **data, size_t *len, size_t *index)
{
    const unsigned char *c = it->cur;
    size_t rem = (size_t)(it->end - c);
    res_item ri;
    if (rem < sizeof ri) return false;
    memcpy(&ri, c, sizeof ri);
    size_t step = sizeof ri + PAD8((size_t)ri.len); /* records are padded: within rem */
    if (ri.code != 0 || step > rem) return false;
    it->cur = c + step;
    it->ok_left--;
    *data = c + sizeof ri;
    if (len) *len = ri.len;
    if (index) *index = it->cur_index;
    it->cur_index++;
    return true;
}

/* The open chunk's next record when take_ok did not take it: a failed item, or a record that
 * does not parse (the rest of the chunk is dropped). */
static int chunk_item(mproc_imap *it, const void **data, size_t *len, size_t *index)
{
    if (take_ok(it, data, len, index)) return 0;
    size_t rem = (size_t)(it->end - it->cur);
    res_item ri;
    if (rem < sizeof ri) return item_bad(it, data, len, index);
    memcpy(&ri, it->cur, sizeof ri);
    if (ri.len > rem - sizeof ri) return item_bad(it, data, len, index);
    const unsigned char *msg = it->cur + sizeof ri;
    size_t step = sizeof ri + PAD8((size_t)ri.len);
    it->cur = step < rem ? it->cur + step : it->end;
    it->ok_left--;
    if (index) *index = it->cur_index;
    it->cur_index++;
    return item_failed(it, &ri, msg, data, len);
}

/* The open task is used up: free it, refill the window, wait for the next task and make it the
 * open one (it still counts in the window: at most window tasks' inputs are read ahead), hand
 * out its first item; 1 if the whole task failed. */
static int open_next(mproc_imap *it, const void **data, size_t *len, size_t *index, double timeout)
{
    if (it->held) {
        mproc_future_free(it->held);
        it->held = NULL;
    }
    fill(it);
    if (it->count == 0) {
        if (it->input_err < 0 && !it->err_reported) {
            it->err_reported = true;
            return it->input_err;
        }
        return MPROC_EEND;
    }
    size_t k;
    if (!it->unordered) {
        k = it->head;
        int r = mproc_future_wait(it->ent[k].f, timeout);
        if (r < 0) return r;
    } else {
        for (;;) {
            for (k = 0; k < it->count; k++)
                if (mproc_future_done(it->ent[k].f)) break;
            if (k < it->count) break;
            for (size_t i = 0; i < it->count; i++)
                it->fsw[i] = it->ent[i].f;
            int r = mproc_futures_wait(it->fsw, it->count, MPROC_FIRST_COMPLETED, timeout);
            if (r < 0) return r;
        }
    }
    entry e = it->ent[k];
    if (it->unordered)
        it->ent[k] = it->ent[it->count - 1];
    else
        it->head = (it->head + 1) % it->window;
    it->count--;
    it->held = e.f;
    it->cur_index = e.first;

    const void *res;
    size_t rlen;
    int err = mproc_future_result(e.f, &res, &rlen);
    if (err) {
        it->cur_err = err;
        it->err_left = e.n;
        return 1; /* its items are reported by next_slow */
    }
    if (it->chunksize == 1) {
        *data = res;
        if (len) *len = rlen;
        if (index) *index = it->cur_index;
        it->cur_index++;
        return 0;
    }
    res_hdr h;
    if (rlen < sizeof h || (memcpy(&h, res, sizeof h), h.n != e.n))
        return item_bad(it, data, len, index);
    it->cur_pid = h.pid;
    it->cur = (const unsigned char *)res + sizeof h;
    it->end = (const unsigned char *)res + rlen;
    it->ok_left = e.n;
    return chunk_item(it, data, len, index);
}

/* Everything but a result of the open chunk: a failed item, the items of a task that failed as
 * a whole, the next task. Out of line, so that the inline path saves no registers. */
__attribute__((noinline)) static int next_slow(mproc_imap *it, const void **data, size_t *len,
                                               size_t *index, double timeout)
{
    if (it->ok_left) return chunk_item(it, data, len, index);
    *data = NULL;
    if (len) *len = 0;
    if (!it->err_left) {
        int r = open_next(it, data, len, index, timeout);
        if (r <= 0) return r;
    }
    it->err_left--;
    if (index) *index = it->cur_index;
    it->cur_index++;
    mproc_future_error(it->held, &it->err);
    return it->cur_err;
}

int mproc_imap_next(mproc_imap *it, const void **data, size_t *len, size_t *index, double timeout)
{
    if (!it || it->magic != IMAP_MAGIC || !data || mproc__timeout_check(timeout)) return -EINVAL;
    if (it->ok_left && take_ok(it, data, len, index)) return 0;
    return next_slow(it, data, len, index, timeout);
}

int mproc_imap_next_batch(mproc_imap *it, mproc_imap_item *items, size_t n, double timeout)
{
    if (!items || n == 0) return -EINVAL;
    int r = mproc_imap_next(it, &items[0].data, &items[0].len, &items[0].index, timeout);
    if (r != 0) return r;
    size_t got = 1;
    if (n > INT_MAX) n = INT_MAX;
    /* The rest from the same chunk, up to (not including) an item that failed or is malformed:
     * it is the next call's to report, so every error still comes with its own mproc_imap_error. */
    while (got < n && it->ok_left &&
           take_ok(it, &items[got].data, &items[got].len, &items[got].index))
        got++;
    return (int)got;
}

int mproc_imap_error(mproc_imap *it, mproc_error *out)
{
    if (!it || it->magic != IMAP_MAGIC || !out) return -EINVAL;
    *out = it->err;
    return 0;
}

void mproc_imap_free(mproc_imap *it)
{
    if (!it || it->magic != IMAP_MAGIC) return;
    if (it->held) mproc_future_free(it->held);
    for (size_t i = 0; it->ent && i < it->count; i++) {
        size_t k = it->unordered ? i : (it->head + i) % it->window;
        mproc_future_free(it->ent[k].f);
    }
    free(it->ent);
    free(it->fsw);
    free(it->pack);
    it->magic = 0;
    free(it);
}
