/* A task as its worker sees it (worker-local, on the worker's stack). */
#ifndef MPROC_POOL_TASK_H
#define MPROC_POOL_TASK_H

#include <string.h>

#include "pool/pool.h"

#define MPROC__PAD8(n) (((n) + 7) & ~(size_t)7)

/* Where the results of a chunked imap's items go while its task runs them one by one: the
 * chunk's result records, built in place (imap.c); an item's bytes go at `at`. */
typedef struct {
    unsigned char *buf; /* malloc'd */
    size_t at;          /* where the current item's bytes start (8-aligned) */
    size_t len;         /* the current item's bytes */
    size_t cap;
} mproc__collect;

/* Make the collector hold at least need bytes, doubling. */
int mproc__collect_grow(mproc__collect *c, size_t need);
static inline int mproc__collect_reserve(mproc__collect *c, size_t need)
{
    return need <= c->cap ? 0 : mproc__collect_grow(c, need);
}

/* Copy n bytes to dst and zero up to the next multiple of 8 (dst 8-aligned, with that room).
 * Items of a chunk are typically a few bytes: fixed-size moves the compiler inlines instead of a
 * memcpy and a memset call each. */
static inline void mproc__copy_pad8(unsigned char *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    if (n == 0) return;
    memset(dst + MPROC__PAD8(n) - 8, 0, 8);
    if (n >= 16) {
        memcpy(dst, s, n);
    } else if (n >= 8) {
        memcpy(dst, s, 8);
        memcpy(dst + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, s, 4);
        memcpy(dst + n - 4, s + n - 4, 4);
    } else {
        dst[0] = s[0];
        dst[n / 2] = s[n / 2];
        dst[n - 1] = s[n - 1];
    }
}

struct mproc_task {
    mproc__slot *s;
    mproc__collect *collect; /* set for an item of a chunk: results go there, not to the slot */
    const void *arg;
    size_t arg_len;
    int64_t soft_deadline; /* absolute ns, 0: none */
    int code;              /* set by mproc_task_fail */
    bool failed;
    _Alignas(16) unsigned char argbuf[MPROC__SLOT_INLINE]; /* the inline argument, copied out of the
                                          slot so the result can take its place */
};

/* mproc_task_cancelled, inline for the per-item check of a chunk. */
static inline bool mproc__task_cancelled(const mproc_task *t)
{
    if (atomic_load_explicit(&t->s->flags, memory_order_relaxed) & MPROC__SLOT_CANCEL) return true;
    return t->soft_deadline && mproc__now_ns() >= t->soft_deadline;
}

#endif
