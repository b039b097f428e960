/* The pool object and the futures (the parent-local half of each task record), shared by the
 * records (slots.c), the futures, the backends, the public pool API and map/imap. */
#ifndef MPROC_POOL_POOL_H
#define MPROC_POOL_POOL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "mproc/pool.h"
#include "pool/slots.h"
#include "pool/stats.h"

#define MPROC__POOL_MAGIC 0x706f6f6cU   /* "pool" */
#define MPROC__FUTURE_MAGIC 0x66757475U /* "futu" */

/* Pool-wide state in the arena, seen by the parent and every worker. */
typedef struct mproc__pool_shm mproc__pool_shm;

/* A callback registered with mproc_future_on_done. */
typedef struct mproc__cb {
    void (*fn)(mproc_future *, void *);
    void *arg;
    struct mproc__cb *next;
} mproc__cb;

/* Parent-local half of a task: future i goes with slot i. */
struct mproc_future {
    uint32_t magic;
    uint32_t idx;
    mproc_pool *pool;
    /* MPROC__FUTURE_*, written under pool->mu. Atomic: the handle's owner reads LIVE and ORPHAN
     * (bits only it sets) without the lock (future_valid) while the supervisor changes WATCHED
     * and FIRED in the same word, a data race on a plain integer (TSan). */
    _Atomic uint32_t flags;
    int efd; /* -1 until mproc_future_fd */
    mproc__cb *callbacks;
    struct mproc__stage *stage;            /* map staging block this task references */
    mproc_future *watch_next, *watch_prev; /* watch list (pool->watch) */
    uint32_t next_free; /* the free list (mu), or the freed list (pool->freed_list) */
    /* watch_locked ran for it: written by the user's threads only (every caller of watch_locked
     * is an API call on this future), so mproc_future_free may read it without mu. */
    bool was_watched;
};
/* magic of a future on the pool's freed list: no longer valid to the user. */
#define MPROC__FUTURE_FREED_MAGIC 0x66726565U /* "free" */
enum {
    MPROC__FUTURE_LIVE = 1,    /* handed to the user */
    MPROC__FUTURE_WATCHED = 2, /* on the watch list */
    MPROC__FUTURE_ORPHAN = 4,  /* freed by the user before done: release the slot when done */
    MPROC__FUTURE_FIRED = 8,   /* done-processing ran */
    /* its worker may still write the slot: release only once it is reaped */
    MPROC__FUTURE_QUARANTINE = 16,
    MPROC__FUTURE_FIRING = 32 /* callbacks running (mu dropped) */
};

typedef struct mproc__pool_backend mproc__pool_backend;

enum { MPROC__POOL_OPEN, MPROC__POOL_CLOSED, MPROC__POOL_TERMINATED };

struct mproc_pool {
    uint32_t magic;
    pid_t owner;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* drained / state changes, for join */
    mproc_pool_opts opts;
    char name[56];
    int nworkers;
    int method; /* mproc__start_method */
    const char *method_name;
    const mproc__pool_backend *backend;
    void *backend_state;

    /* Task records: arena chunks (their addresses also in shm for workers) and futures. */
    mproc__slot **slot_chunks; /* == shm chunk table */
    /* the arena blocks holding them (chunks are 64-aligned inside) */
    void *slot_blocks[MPROC__SLOT_MAX_CHUNKS];
    mproc_future *future_chunks[MPROC__SLOT_MAX_CHUNKS];
    uint32_t nchunks;
    uint32_t free_head;
    uint32_t nlive; /* futures not yet released (slots in use; those on freed_list count) */
    /* Futures freed without the lock (mproc_future_free of a done record that holds nothing but
     * its inline result): a stack of index + 1 (0: empty) linked by next_free, pushed by any
     * thread, taken whole under mu when the free list runs dry or the pool is freed (slots.c
     * mproc__pool_take_freed_locked). One lock pair per task less on submit+get+free. */
    _Atomic uint32_t freed_list;

    int state;
    bool joined;
    bool freed;         /* user freed the pool; release memory with the last future */
    _Atomic int broken; /* 0 or MPROC_EBROKEN */
    char broken_msg[512];
    mproc_future *watch; /* futures with MPROC__SLOT_NOTIFY, not yet fired */
    struct mproc__stage *stage_cache;
    void *initarg_copy;               /* arena copy of opts.initarg (opts.initarg_size > 0) */
    struct mproc__ptr_snapshot *ptrs; /* MPROC_CHECK_POINTERS: what workers have (pointers.c) */
    mproc_pool *next_pool;            /* all pools of this process, for exit */

    /* Statistics (stats.h): the parent's counts (mu), and what the last reset saw. */
    mproc__pool_counts counts;
    struct mproc__stats_base *stats_base; /* NULL: nothing reset, count from zero */
    int64_t stats_since_ns;               /* wall clock start: the pool's start or the reset */

    /* Placement: seat i runs on cpu_sets[i % ncpu_sets]; none (NULL) when not placed. */
    cpu_set_t *cpu_sets;
    int ncpu_sets;

    /* Advice lines already logged (advice.c; mu) */
    bool advised_overhead, advised_parallel;
};

/* Set by mproc_pool_apply around its submit: the caller waits for the task at once (a backend
 * whose waits help it along need not wake anyone for it). */
extern _Thread_local bool mproc__pool_wait_follows;

static inline mproc_future *mproc__future_at(mproc_pool *p, uint32_t idx)
{
    return &p->future_chunks[idx >> MPROC__SLOT_CHUNK_SHIFT][idx & (MPROC__SLOT_CHUNK - 1)];
}

static inline bool mproc__pool_valid(const mproc_pool *p)
{
    return p && p->magic == MPROC__POOL_MAGIC && !p->freed;
}

/* Whether the pool takes tasks (mu held): 0, MPROC_ECLOSED or the broken code. */
static inline int mproc__pool_state_check_locked(mproc_pool *p)
{
    return p->state != MPROC__POOL_OPEN ? MPROC_ECLOSED : atomic_load(&p->broken);
}

/* The owner check and the state check before queueing (mu held). Inline: submit is a hot path. */
static inline int mproc__pool_check_open_locked(mproc_pool *p)
{
    pid_t self = __atomic_load_n(&mproc__pool_pid, __ATOMIC_RELAXED);
    if (!self) __atomic_store_n(&mproc__pool_pid, self = getpid(), __ATOMIC_RELAXED);
    if (p->owner != self) return -ECHILD;
    return mproc__pool_state_check_locked(p);
}

#endif
