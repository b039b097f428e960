/* imap / imap_unordered: a lazy iterator over variable-size items with a bounded window.
 *
 * Inputs are pulled from the caller's generator only to keep `window` tasks in flight, in the
 * caller's thread during mproc_imap_next, so an endless generator works and memory stays
 * bounded. Results are handed out without a copy: the pointer is into the task record, which is
 * kept until the next call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

#define IMAP_MAGIC 0x696d6170U

struct mproc_imap {
    uint32_t magic;
    mproc_pool *p;
    mproc_task_fn fn;
    mproc_imap_input_fn input;
    void *iarg;
    bool unordered;
    size_t window;
    mproc_future **fs; /* ordered: a ring from head; unordered: [0, count) */
    size_t *pos;
    size_t head, count;
    size_t next_index;
    bool input_done, err_reported;
    int input_err;
    mproc_future *held;
    mproc_error err;
};

int mproc_imap_new(mproc_imap **out, mproc_pool *p, mproc_task_fn fn, mproc_imap_input_fn input,
                   void *input_arg, const mproc_imap_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!p || p->magic != POOL_MAGIC || p->freed || !fn || !input) return -EINVAL;
    mproc_imap *it = calloc(1, sizeof *it);
    if (!it) return -ENOMEM;
    it->magic = IMAP_MAGIC;
    it->p = p;
    it->fn = fn;
    it->input = input;
    it->iarg = input_arg;
    it->unordered = opts && opts->unordered;
    it->window = opts && opts->window ? opts->window : (size_t)p->nworkers * 4 + 4;
    it->fs = calloc(it->window, sizeof *it->fs);
    it->pos = calloc(it->window, sizeof *it->pos);
    if (!it->fs || !it->pos) {
        mproc_imap_free(it);
        return -ENOMEM;
    }
    *out = it;
    return 0;
}

static void fill(mproc_imap *it)
{
    while (it->count < it->window && !it->input_done) {
        const void *data = NULL;
        size_t len = 0;
        int r = it->input(&data, &len, it->iarg);
        if (r <= 0) {
            it->input_done = true;
            it->input_err = r;
            break;
        }
        mproc_future *f;
        r = mproc_pool_submit(it->p, it->fn, data, len, &f);
        if (r < 0) {
            it->input_done = true;
            it->input_err = r;
            break;
        }
        size_t k = it->unordered ? it->count : (it->head + it->count) % it->window;
        it->fs[k] = f;
        it->pos[k] = it->next_index++;
        it->count++;
    }
}

int mproc_imap_next(mproc_imap *it, const void **data, size_t *len, size_t *index, double timeout)
{
    if (!it || it->magic != IMAP_MAGIC || !data) return -EINVAL;
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
        return MPROC_ECLOSED;
    }
    size_t k;
    if (!it->unordered) {
        k = it->head;
        int r = mproc_future_wait(it->fs[k], timeout);
        if (r < 0) return r;
    } else {
        for (;;) {
            for (k = 0; k < it->count; k++)
                if (mproc_future_done(it->fs[k])) break;
            if (k < it->count) break;
            int r = mproc_futures_wait(it->fs, it->count, MPROC_FIRST_COMPLETED, timeout);
            if (r < 0) return r;
        }
    }
    mproc_future *f = it->fs[k];
    if (index) *index = it->pos[k];
    if (it->unordered) {
        it->fs[k] = it->fs[it->count - 1];
        it->pos[k] = it->pos[it->count - 1];
    } else {
        it->head = (it->head + 1) % it->window;
    }
    it->count--;
    int r = mproc_future_result(f, data, len);
    if (r == 0) {
        it->held = f;
    } else {
        mproc_future_error(f, &it->err);
        mproc_future_free(f);
    }
    fill(it);
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
    for (size_t i = 0; i < it->count; i++) {
        size_t k = it->unordered ? i : (it->head + i) % it->window;
        mproc_future_free(it->fs[k]);
    }
    free(it->fs);
    free(it->pos);
    it->magic = 0;
    free(it);
}
