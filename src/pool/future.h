/* Futures (future.c): the parts the backend calls. */
#ifndef MPROC_POOL_FUTURE_H
#define MPROC_POOL_FUTURE_H

#include "platform/interrupt.h"
#include "pool/pool.h"

/* mproc_future_wait, _get and mproc_futures_wait for a call that blocked signals itself
 * (interrupt.h) before work that must not lose a Ctrl-C either (apply's submit, imap's refill):
 * st is its state; NULL blocks them for the wait only, as the public calls do. */
int mproc__future_wait_in(const mproc__intr *st, mproc_future *f, double timeout);
int mproc__future_get_in(const mproc__intr *st, mproc_future *f, void *buf, size_t cap, size_t *len,
                         double timeout);
int mproc__futures_wait_in(const mproc__intr *st, mproc_future **fs, size_t n, int mode,
                           double timeout);

/* Supervisor side: run done-processing for watched futures now done (mu held on entry; may drop
 * it to run callbacks). */
void mproc__future_scan_watch(mproc_pool *p);

#endif
