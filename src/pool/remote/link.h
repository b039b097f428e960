/* One process's end of the transport (transport.h), shared by rank 0's comm thread (remote.c) and
 * the worker ranks' loop (serve.c): sends in flight with their buffers, receiving into fresh
 * buffers, message builders, and the wait policy: poll for a while after the last activity, then
 * sleep in short steps, never inside the transport. */
#ifndef MPROC_POOL_REMOTE_LINK_H
#define MPROC_POOL_REMOTE_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/spin.h"
#include "pool/remote/transport.h"
#include "pool/remote/wire.h"

/* Poll this long after the last message or task before sleeping (Open MPI's shared-memory round
 * trip is about 1 us; a blocking receive spins and starves the other ranks on a small machine). */
#define MPROC__LINK_POLL_NS 200000
/* Then sleep, in steps growing up to this (idle cost: a thousand probes a second). */
#define MPROC__LINK_SLEEP_NS 1000000

typedef struct {
    void *req;
    void *buf;
} mproc__link_send_t;

typedef struct {
    const mproc__transport *t;
    int rank, size;
    mproc__link_send_t *sends;
    size_t nsends, cap;
    bool dead; /* the transport failed or was finalized: nothing more travels */
} mproc__link;

/* A message being built: a wire_hdr, then records. */
typedef struct {
    unsigned char *b;
    size_t len, cap;
} mproc__wbuf;

/* Start a message of this type (the buffer keeps its memory between messages). */
void mproc__wbuf_start(mproc__wbuf *w, uint32_t type, uint32_t pool);
/* Room for n more bytes at the end: their address (valid until the next reserve), or NULL. */
void *mproc__wbuf_add(mproc__wbuf *w, size_t n);
static inline wire_hdr *mproc__wbuf_hdr(mproc__wbuf *w)
{
    return (wire_hdr *)w->b;
}
/* Send the message built in w to dest (its buffer handed over to the send); w starts empty. */
int mproc__link_send_wbuf(mproc__link *l, int dest, mproc__wbuf *w);
/* Send a message of only a header. */
int mproc__link_send_hdr(mproc__link *l, int dest, uint32_t type, uint32_t pool, uint32_t n);
/* Finish the sends that are done; true when some were. A send merely in flight is no activity
 * for the wait policy: counting it as one (a loop with a send always in flight never yielded)
 * kept a worker rank's loop off the yield that lets its workers run, and with Open MPI's own
 * yield inside every probe turned off (mpi.c), submit+get fell from 4.7 M to 2.5 M tasks/s. */
bool mproc__link_progress(mproc__link *l);
/* A waiting message, in a malloc'd buffer (*buf, *len, from *src): 1; 0: none; <0: failed. */
int mproc__link_recv(mproc__link *l, int *src, void **buf, size_t *len);
/* Wait for every send to finish (at most timeout_ns). */
void mproc__link_flush(mproc__link *l, int64_t timeout_ns);

/* The wait policy: call with did = whether the last round did anything, sending = whether
 * sends are still in flight (l->nsends): then it polls (yielding) but never sleeps, since a large
 * message moves only while its sender progresses it. */
typedef struct {
    int64_t last_active;
    int64_t sleep_ns; /* the last sleep since then */
    mproc__yielder y; /* between polls: a peer (its workers, another rank) may share the CPU */
} mproc__idle;
/* Returns the ns to sleep now (0: poll again at once). */
int64_t mproc__idle_step(mproc__idle *w, bool did, bool sending);

#endif
