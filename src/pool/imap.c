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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/future.h"
#include "pool/pool.h"
#include "pool/task.h"

#define IMAP_MAGIC 0x696d6170U
#define PAD8(n) (((n) + 7) & ~(size_t)7)

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
    size_t first;     /* input index of its first item */
    uint32_t n, next; /* its items, and the next one to hand out */
    size_t off;       /* chunks: where the next item's record starts in the result */
    bool opened;      /* the result was looked at */
    int err;          /* the whole task failed with this */
    const unsigned char *res;
    size_t res_len;
} entry;

struct mproc_imap {
    uint32_t magic;
    mproc_pool *p;
    mproc_task_fn fn;
    mproc_imap_input_fn input;
    void *iarg;
    bool unordered;
    size_t window, chunksize;
    entry *ent;         /* ordered: a ring from head; unordered: [0, count) */
    mproc_future **fsw; /* unordered: the futures to wait on */
    size_t head, count;
    size_t next_index;
    bool input_done, err_reported;
    int input_err;
    mproc_future *held;
    unsigned char *pack; /* a chunk being packed */
    size_t pack_cap;
    mproc_error err;
};

/* ---- in the worker ---- */

/* Make *buf hold at least need bytes, doubling. */
static int reserve(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    unsigned char *b = realloc(*buf, c);
    if (!b) return -ENOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

/* Add n bytes at *len, zero-padded to 8 so the next record stays aligned. */
static int append(unsigned char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
    size_t need = *len + PAD8(n);
    int r = reserve(buf, cap, need);
    if (r < 0) return r;
    if (n) memcpy(*buf + *len, data, n);
    memset(*buf + *len + n, 0, PAD8(n) - n);
    *len = need;
    return 0;
}

static int imap_chunk(mproc_task *t)
{
    size_t alen;
    const unsigned char *a = mproc_task_arg(t, &alen);
    chunk_hdr h;
    if (alen < sizeof h) return -EINVAL;
    memcpy(&h, a, sizeof h);
    size_t off = sizeof h + (size_t)h.n * sizeof(uint64_t);
    if (off > alen) return -EINVAL;
    unsigned char *out = NULL;
    size_t len = 0, cap = 0;
    res_hdr rh = {h.n, (int32_t)getpid()};
    mproc__collect c = {0};
    int r = append(&out, &len, &cap, &rh, sizeof rh);
    for (uint32_t i = 0; r == 0 && i < h.n; i++) {
        uint64_t ilen;
        memcpy(&ilen, a + sizeof h + i * sizeof(uint64_t), sizeof ilen);
        if (ilen > alen - off) {
            r = -EINVAL;
            break;
        }
        if (mproc_task_cancelled(t)) {
            r = MPROC_ECANCELLED;
            break;
        }
        /* The item's own task: the chunk's record and time limit, no inline argument copy. */
        mproc_task sub;
        sub.s = t->s;
        sub.soft_deadline = t->soft_deadline;
        sub.arg = a + off;
        sub.arg_len = (size_t)ilen;
        sub.collect = &c;
        sub.failed = false;
        sub.code = 0;
        c.len = 0;
        int fr = h.fn(&sub);
        int code = sub.failed ? sub.code : fr > 0 ? MPROC_ETASKFAILED : fr;
        if (code && !sub.failed) c.len = 0; /* a plain error return has no message */
        res_item it = {code, (uint32_t)c.len};
        r = append(&out, &len, &cap, &it, sizeof it);
        if (r == 0) r = append(&out, &len, &cap, c.buf, c.len);
        off += PAD8((size_t)ilen);
    }
    free(c.buf);
    if (r == 0) r = mproc_task_return(t, out, len);
    free(out);
    return r;
}

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

static int pack_add(mproc_imap *it, size_t *len, const void *data, size_t n)
{
    return append(&it->pack, len, &it->pack_cap, data, n);
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
    while (r > 0 && n < it->chunksize) {
        const void *data = NULL;
        size_t dlen = 0;
        r = it->input(&data, &dlen, it->iarg);
        if (r <= 0) break;
        r = pack_add(it, &len, data, dlen);
        if (r < 0) break;
        r = 1;
        uint64_t l = dlen;
        memcpy(it->pack + sizeof(chunk_hdr) + n * sizeof(uint64_t), &l, sizeof l);
        n++;
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

/* Look at a finished task's result once. */
static void open_entry(mproc_imap *it, entry *e)
{
    const void *data;
    size_t len;
    e->opened = true;
    e->err = mproc_future_result(e->f, &data, &len);
    if (e->err) return;
    e->res = data;
    e->res_len = len;
    if (it->chunksize > 1) {
        res_hdr h;
        if (len < sizeof h) {
            e->err = -EPROTO;
            return;
        }
        memcpy(&h, data, sizeof h);
        if (h.n != e->n) e->err = -EPROTO;
        e->off = sizeof h;
    }
}

/* Hand out the entry's next item. */
static int take_item(mproc_imap *it, entry *e, const void **data, size_t *len)
{
    if (e->err) {
        mproc_future_error(e->f, &it->err);
        return e->err;
    }
    if (it->chunksize == 1) {
        *data = e->res;
        if (len) *len = e->res_len;
        return 0;
    }
    res_item ri;
    if (e->res_len - e->off < sizeof ri) return -EPROTO;
    memcpy(&ri, e->res + e->off, sizeof ri);
    const unsigned char *bytes = e->res + e->off + sizeof ri;
    if (ri.len > e->res_len - e->off - sizeof ri) return -EPROTO;
    e->off += sizeof ri + PAD8((size_t)ri.len);
    if (ri.code == 0) {
        *data = bytes;
        if (len) *len = ri.len;
        return 0;
    }
    res_hdr h;
    memcpy(&h, e->res, sizeof h);
    memset(&it->err, 0, sizeof it->err);
    it->err.code = ri.code;
    it->err.worker = h.pid;
    it->err.exit_status = -1;
    size_t m = ri.len < sizeof it->err.message ? ri.len : sizeof it->err.message - 1;
    memcpy(it->err.message, bytes, m);
    it->err.message[m] = '\0';
    return ri.code;
}

int mproc_imap_next(mproc_imap *it, const void **data, size_t *len, size_t *index, double timeout)
{
    if (!it || it->magic != IMAP_MAGIC || !data || mproc__timeout_check(timeout)) return -EINVAL;
    *data = NULL;
    if (len) *len = 0;
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
        if (!it->ent[k].opened) {
            int r = mproc_future_wait(it->ent[k].f, timeout);
            if (r < 0) return r;
        }
    } else {
        for (;;) {
            for (k = 0; k < it->count; k++)
                if (it->ent[k].opened || mproc_future_done(it->ent[k].f)) break;
            if (k < it->count) break;
            for (size_t i = 0; i < it->count; i++)
                it->fsw[i] = it->ent[i].f;
            int r = mproc_futures_wait(it->fsw, it->count, MPROC_FIRST_COMPLETED, timeout);
            if (r < 0) return r;
        }
    }
    entry *e = &it->ent[k];
    if (!e->opened) open_entry(it, e);
    if (index) *index = e->first + e->next;
    int r = take_item(it, e, data, len);
    if (++e->next == e->n || r == -EPROTO) {
        /* Its last item: the result stays readable until the next call. */
        it->held = e->f;
        if (it->unordered)
            *e = it->ent[it->count - 1];
        else
            it->head = (it->head + 1) % it->window;
        it->count--;
        fill(it);
    }
    return r;
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
