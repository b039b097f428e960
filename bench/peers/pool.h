/* The pool workloads shared by the thread-pool peers (GLib, libuv, OpenMP) and the MPI
 * master/worker: the same names as mproc's rows in bench_pool.c, the same item functions, called
 * through a pointer per item as a pool that takes the caller's function must. */
#ifndef MPROC_BENCH_PEERS_POOL_H
#define MPROC_BENCH_PEERS_POOL_H

#include <stdio.h>
#include <stdlib.h>

#include "msg.h" /* peer_now, peer_row */

#define PEER_SUBMIT_N 100000
#define PEER_MAP_N 10000000
#define PEER_IMAP_N 5000000
#define PEER_IMAP_CHUNK 1000
#define PEER_SUBMIT_WORKLOAD "submit+get throughput, 100k in flight"
#define PEER_MAP_WORKLOAD "map trivial fn over 10M ints"
#define PEER_MAP_ARENA_WORKLOAD "map trivial fn over 10M ints, arrays in the arena"
#define PEER_IMAP_WORKLOAD "imap tiny items, chunksize 1000"

static int peer_inc1(int x)
{
    return x + 1;
}

static int peer_twice(const void *in, void *out, void *arg)
{
    (void)arg;
    *(int *)out = *(const int *)in * 2;
    return 0;
}

/* volatile: the compiler may not inline the item function into the loop */
__attribute__((unused)) static int (*volatile peer_task_fn)(int) = peer_inc1;
__attribute__((unused)) static int (*volatile peer_item_fn)(const void *, void *,
                                                            void *) = peer_twice;

static inline void peer_fail(const char *what)
{
    fprintf(stderr, "%s: wrong result\n", what);
    exit(3);
}

static inline void peer_check_map(const char *what, const int *in, const int *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] != in[i] * 2) peer_fail(what);
}

/* A thread pool has no arena: its map reads and writes the caller's arrays, so the same figure
 * stands for both of mproc's map rows. */
static inline void peer_map_rows(const char *impl, double items_per_s)
{
    peer_row(PEER_MAP_WORKLOAD, impl, items_per_s, "items/s", "higher");
    peer_row(PEER_MAP_ARENA_WORKLOAD, impl, items_per_s, "items/s", "higher");
}

#endif
