/* A task as its worker sees it (worker-local, on the worker's stack). */
#ifndef MPROC_POOL_TASK_H
#define MPROC_POOL_TASK_H

#include "pool/pool.h"

/* Where the results of a chunked imap's items go while its task runs them one by one. */
typedef struct {
    void *buf; /* malloc'd */
    size_t len, cap;
    int code; /* the item's mproc_task_fail code, 0 */
} mproc__collect;

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

/* The task the calling thread runs (a worker's run loop sets it; a map chunk points it at its
 * items' own task while they run); NULL outside a task. */
extern MPROC_TLS mproc_task *mproc__task_current;

#endif
