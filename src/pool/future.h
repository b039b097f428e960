/* Futures (future.c): the parts the backend calls. */
#ifndef MPROC_POOL_FUTURE_H
#define MPROC_POOL_FUTURE_H

#include "pool/pool.h"

/* Supervisor side: run done-processing for watched futures now done (mu held on entry; may drop
 * it to run callbacks). */
void mproc__future_scan_watch(mproc_pool *p);
/* An error record's rank and host from where the done future's worker ran (out->worker set). */
void mproc__future_origin(mproc_future *f, mproc_error *out);

#endif
