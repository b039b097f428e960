/* Futures (future.c): the parts the backend calls. */
#ifndef MPROC_POOL_FUTURE_H
#define MPROC_POOL_FUTURE_H

#include "pool/pool.h"

/* Supervisor side: run done-processing for watched futures now done (mu held on entry; may drop
 * it to run callbacks). */
void mproc__future_scan_watch(mproc_pool *p);
/* One step of a wait for record s of pool p, signals blocked (mproc__intr_sleep/_wait): the
 * backend's wait (which may help its transport along) or mproc__slot_sleep. */
typedef struct {
    mproc_pool *p;
    mproc__slot *s;
    int64_t state; /* the backend's wait's, 0 at the start */
} mproc__wait_arg;
int mproc__wait_step(void *wait_arg, int64_t until);
/* An error record's rank and host from where the done future's worker ran (out->worker set). */
void mproc__future_origin(mproc_future *f, mproc_error *out);

#endif
