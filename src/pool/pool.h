/* The pool's task records (slots), futures and pool object, shared by the pool core, the futures,
 * map/imap and the backends. */
#ifndef MPROC_POOL_INTERNAL_H
#define MPROC_POOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sys/mman.h>

#include "mproc/pool.h"
#include "platform/platform.h"

#ifdef MADV_POPULATE_WRITE
#define MPROC__MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define MPROC__MADV_POPULATE_WRITE 23
#endif

#define POOL_MAGIC 0x706f6f6cU   /* "pool" */
#define FUTURE_MAGIC 0x66757475U /* "futu" */
#define FUTURE_DEAD 0x64656164U

/* A task record. It lives in the family arena so that a worker reads the task and writes its
 * result in place: no copy through a pipe, no per-task allocation. Two cache lines: the first
 * is all a trivial task touches. */
#define SLOT_INLINE 40
typedef struct {
    /* line 1 */
    _Atomic uint32_t state; /* kind | WAITER | owner incarnation << 8; a futex word */
    _Atomic uint32_t flags; /* SF_* */
    mproc_task_fn fn;
    uint32_t arg_len;
    uint32_t res_len;
    /* Argument on the way in; the worker copies it out first, and then the result on the way
     * out, when they are small. */
    unsigned char inl[SLOT_INLINE];
    /* line 2 */
    void *arg_ext;           /* arena block when arg_len > SLOT_INLINE */
    void *res_ext;           /* arena block when res_len > SLOT_INLINE (made by the worker) */
    char *err_msg;           /* arena string from mproc_task_fail (made by the worker) */
    char *sup_msg;           /* parent heap string: why the supervisor failed the task */
    int32_t err_code;        /* the task's own failure (worker-written) */
    int32_t pid;             /* the worker that took it */
    int32_t sup_code;        /* a failure decided in the parent (death, time limit, cancel) */
    int32_t sup_sig;         /* the killing signal, or 0 */
    int64_t timeout_ns;      /* hard limit from start; 0: none */
    int32_t soft_timeout_ms; /* soft limit from start; 0: none */
    int32_t sup_status;      /* exit status for a worker that exited, else -1 */
} mproc__slot;
_Static_assert(sizeof(mproc__slot) == 128, "slot is two cache lines");

enum {
    SK_FREE = 0,
    SK_QUEUED = 1,
    SK_RUNNING = 2,
    SK_DONE_OK = 3,
    SK_DONE_TASKERR = 4, /* the task failed by itself: err_code/err_msg */
    SK_DONE_SUPERR = 5,  /* failed from outside: sup_code/sup_msg */
};
#define SS_KIND(s) ((s)&7u)
#define SS_WAITER 8u
#define SS_OWNER(s) ((s) >> 8)
#define SS_RUNNING(inc) (SK_RUNNING | ((uint32_t)(inc) << 8))
#define SK_IS_DONE(k) ((k) >= SK_DONE_OK)

enum {
    SF_CANCEL = 1, /* cooperative cancel requested */
    SF_NOTIFY = 2, /* tell the supervisor when done (callbacks, fd, futures_wait) */
};

#define SLOT_CHUNK_SHIFT 12
#define SLOT_CHUNK (1u << SLOT_CHUNK_SHIFT)
#define SLOT_MAX_CHUNKS 4096 /* 16 M task records */
#define SLOT_NONE UINT32_MAX

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
    uint32_t fl; /* FF_* guarded by pool->mu */
    int efd;     /* -1 until mproc_future_fd */
    mproc__cb *cbs;
    struct mproc__stage *stage;  /* map staging block this task references */
    mproc_future *wnext, *wprev; /* watch list (pool->watch) */
    uint32_t next_free;
};
enum {
    FF_LIVE = 1,        /* handed to the user */
    FF_WATCHED = 2,     /* on the watch list */
    FF_ORPHAN = 4,      /* freed by the user before done: release the slot when done */
    FF_FIRED = 8,       /* done-processing ran */
    FF_QUARANTINE = 16, /* its worker may still write the slot: release only once it is reaped */
    FF_FIRING = 32      /* callbacks running (mu dropped) */
};

typedef struct mproc__pool_backend mproc__pool_backend;

enum { PS_OPEN, PS_CLOSED, PS_TERMINATED };

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
    const mproc__pool_backend *be;
    void *bs; /* backend state */

    /* Task records: arena chunks (their addresses also in shm for workers) and futures. */
    mproc__slot **schunks;       /* == shm chunk table */
    void *sraw[SLOT_MAX_CHUNKS]; /* the arena blocks holding them (chunks are 64-aligned inside) */
    mproc_future *fchunks[SLOT_MAX_CHUNKS];
    uint32_t nchunks;
    uint32_t free_head;
    uint32_t nlive; /* futures not yet released (slots in use) */

    int state;
    bool joined;
    bool freed;         /* user freed the pool; release memory with the last future */
    _Atomic int broken; /* 0 or MPROC_EBROKEN */
    char broken_msg[512];
    mproc_future *watch; /* futures with SF_NOTIFY, not yet fired */
    struct mproc__stage *stage_cache;
    mproc_pool *gnext; /* all pools of this process, for exit */
};

/* The staging block of one map: refcounted by its chunk tasks so an interrupted map can return
 * while chunks still run. */
typedef struct mproc__stage {
    _Atomic uint32_t refs;
    size_t size;
    void *mem; /* arena */
} mproc__stage;

/* Fault in [addr, addr + len) for writing with one system call instead of one page fault per
 * page (fresh task records are touched by the parent and by every worker process). Best
 * effort: without MADV_POPULATE_WRITE (Linux < 5.14) the pages fault in one by one as before. */
static inline void mproc__prefault(void *addr, size_t len)
{
    uintptr_t a = ((uintptr_t)addr + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)addr + len) & ~(uintptr_t)4095;
    if (e > a) madvise((void *)a, e - a, MPROC__MADV_POPULATE_WRITE);
}

/* Slot address from its index (parent or worker). */
static inline mproc__slot *mproc__slot_at(mproc__slot *const *chunks, uint32_t idx)
{
    return &chunks[idx >> SLOT_CHUNK_SHIFT][idx & (SLOT_CHUNK - 1)];
}
static inline mproc_future *mproc__future_at(mproc_pool *p, uint32_t idx)
{
    return &p->fchunks[idx >> SLOT_CHUNK_SHIFT][idx & (SLOT_CHUNK - 1)];
}

/* ---- pool.c ---- */
/* Allocate a task record and its future (pool->mu held). 0 or -ENOMEM. */
int mproc__pool_alloc_locked(mproc_pool *p, mproc_future **out);
/* Fill a record from fn/arg/opts. 0 or -ENOMEM/-EMSGSIZE. */
int mproc__slot_fill(mproc__slot *s, mproc_task_fn fn, const void *arg, size_t len,
                     const mproc_submit_opts *o);
/* Queue futures already filled; the caller holds mu. Returns 0 or an error (state checks). */
int mproc__pool_queue_locked(mproc_pool *p, mproc_future **fs, uint32_t n);
/* Free the slot resources and put the record back on the free list (mu held). */
void mproc__pool_release_locked(mproc_pool *p, mproc_future *f);
/* Complete a record from outside the task (death, time limit, cancel, broken pool): succeeds
 * only while its state is still `expect` (QUEUED, or RUNNING by a given owner; the WAITER bit is
 * ignored). Wakes waiters. true if this call completed it. */
bool mproc__slot_fail(mproc_pool *p, uint32_t idx, uint32_t expect, int code, int sig, int status,
                      pid_t pid, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* Free the pool's memory (workers gone, no live future). */
void mproc__pool_destroy(mproc_pool *p);
/* Break the pool: fail every queued task with MPROC_EBROKEN + msg, refuse new ones. */
void mproc__pool_break(mproc_pool *p, const char *msg);
/* Fail every queued task with code (terminate / break). */
void mproc__pool_fail_queued(mproc_pool *p, int code, const char *msg);
/* Process-wide completion generation, a futex word bumped whenever a watched future completes
 * (futures_wait, imap unordered). */
extern _Atomic uint32_t mproc__completion_gen;
void mproc__completion_bump(void);

/* ---- future.c ---- */
/* Supervisor side: run done-processing for watched futures now done (mu held on entry; may drop
 * it to run callbacks). */
void mproc__future_scan_watch(mproc_pool *p);
/* Put a future on the watch list (mu held): the backend will signal its completion. */
void mproc__future_watch_locked(mproc_future *f);
/* Wait for a slot to be done, interruptibly. */
int mproc__slot_wait(mproc__slot *s, int64_t deadline);
/* The outcome code of a done slot. */
int mproc__slot_code(const mproc__slot *s);
bool mproc__future_valid(const mproc_future *f);

/* ---- pool_map.c ---- */
void mproc__stage_unref(mproc_pool *p, mproc__stage *st);

#endif
