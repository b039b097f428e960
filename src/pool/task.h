/* A task as its worker sees it (worker-local, on the worker's stack). */
#ifndef MPROC_POOL_TASK_H
#define MPROC_POOL_TASK_H

#include "pool/pool.h"

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

/* The task the calling thread runs (a worker's run loop sets it; a map chunk points it at its
 * items' own task while they run); NULL outside a task. */
extern MPROC_TLS mproc_task *mproc__task_current;

#endif
