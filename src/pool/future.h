/* Futures (future.c): the parts the backend calls. */
#ifndef MPROC_POOL_FUTURE_H
#define MPROC_POOL_FUTURE_H

#include "pool/pool.h"

/* Supervisor side: run done-processing for watched futures now done (mu held on entry; may drop
 * it to run callbacks). */
void mproc__future_scan_watch(mproc_pool *p);

#endif
