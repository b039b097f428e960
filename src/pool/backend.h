/* The seam between the pool (task records, futures, map/imap, shutdown policy) and the transport
 * that runs tasks on workers. The local backend (local/local.c) runs forked workers that read task
 * records straight from the arena; an MPI backend would ship the same records to ranks and write
 * their results back, without any change to the public API. */
#ifndef MPROC_POOL_BACKEND_H
#define MPROC_POOL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool/pool.h"

struct mproc__pool_backend {
    const char *name;
    /* How many chunks per worker an automatic map chunksize aims at; 0: map.c's default. */
    int map_chunks_per_worker;
    /* Make the backend state (p->backend_state) and the chunk table (p->slot_chunks), start
     * p->nworkers workers and their supervision. 0 or a negative code (nothing left running). */
    int (*start)(mproc_pool *p);
    /* Publish a batch of queued task records (pool->mu held) and wake workers as needed.
     * -EAGAIN when the transport is full (the caller waits and retries). */
    int (*send)(mproc_pool *p, const uint32_t *idx, uint32_t n);
    /* No more tasks will come: workers leave once the queue is empty. */
    void (*close)(mproc_pool *p);
    /* Wait until every worker has exited and been reaped (after close or terminate). With intr,
     * -EINTR when a signal handler ran meanwhile (the pool goes on closing; join again). */
    int (*join)(mproc_pool *p, int64_t deadline, bool intr);
    /* Kill every worker now and fail queued and running tasks with `code` (MPROC_ECANCELLED for
     * terminate, MPROC_EBROKEN for a broken pool); returns once they are reaped. */
    void (*terminate)(mproc_pool *p, int code);
    /* The watch list changed: make sure completions of MPROC__SLOT_NOTIFY records are reported. */
    void (*notify)(mproc_pool *p);
    /* Visit every record still queued (not yet taken by a worker), with pool->mu held. */
    void (*for_queued)(mproc_pool *p, void (*fn)(mproc_pool *, uint32_t idx, void *), void *arg);
    /* Live worker pids. */
    int (*worker_pids)(mproc_pool *p, pid_t *pids, int cap);
    /* Seat i's statistics line and the pid of its worker (0: none); false when i is past the
     * last seat (pool->mu held). */
    bool (*seat_stats)(mproc_pool *p, uint32_t i, mproc__stat_line **line, pid_t *pid);
    /* Keep n workers from now on (pool open, mu not held): start the missing ones, and those
     * past n leave once idle. -EINVAL when n is past what the backend can hold. */
    int (*resize)(mproc_pool *p, int n);
    /* Where a done record's worker ran, for its error record: the rank (or -1) and, when it is
     * not -1, that rank's host name in host (cap bytes). NULL: -1, this machine (local). */
    int (*origin)(mproc_pool *p, uint32_t idx, char *host, size_t cap);
    /* Wait for record s to be done until `until` (a step of mproc_future_get/wait, signals
     * blocked), helping the transport along meanwhile: 0, -ETIMEDOUT, or what mproc__slot_sleep
     * returns. *state is the wait's own, 0 at its start. NULL: mproc__slot_sleep. */
    int (*wait)(mproc_pool *p, mproc__slot *s, int64_t until, int64_t *state);
    /* Release everything (workers already gone). */
    void (*destroy)(mproc_pool *p);
};

extern const mproc__pool_backend mproc__pool_local_backend;

/* For a backend whose workers do not share this process's memory (pool/remote/): what the tasks
 * of map and imap carry by address. A map chunk's record (map.c) points at its map's staging
 * block; the view says what it reads and writes there. */
typedef struct {
    mproc_map_fn fn;
    void *arg;
    size_t arg_size; /* > 0: arg is a copy of that many bytes */
    const char *in;  /* the chunk's first item */
    char *out;       /* where its first result goes */
    size_t in_size, out_size, count, first;
} mproc__map_view;
/* false when the record is not a map chunk (its argument still in place: before it runs). */
bool mproc__map_chunk_view(const mproc__slot *s, mproc__map_view *v);
/* Write a failed map chunk's item into its record, where the caller looks for it (map.c). */
void mproc__map_chunk_set_progress(mproc__slot *s, size_t item);
/* Run a map chunk's items in the worker: fn over count items from in (is bytes each) into out (os
 * bytes each), item indexes from first, a failed item's index and message left where the caller
 * looks for them (map.c); a backend that ships chunks elsewhere (remote/serve.c) runs them with it.
 * 0 or the chunk's error code. */
int mproc__map_run_items(mproc_task *t, mproc_map_fn fn, const char *in, size_t is, char *out,
                         size_t os, size_t first, size_t count, void *arg);
/* The task function of an imap chunk (imap.c); its argument starts with the item function. */
extern const mproc_task_fn mproc__imap_chunk_fn;

#endif
