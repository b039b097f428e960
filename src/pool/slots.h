/* Task records (slots) and their life cycle, the bottom of the pool: a record's layout and states,
 * its allocation in arena chunks, queueing through the backend, failure from outside, waiting for
 * completion, release; the staging blocks of map; the pool's memory.
 *
 * Task records live in arena chunks of 4096 and are recycled through a free list, so submitting
 * allocates nothing once the pool has warmed up. Every record goes QUEUED -> RUNNING(owner) ->
 * DONE_* (or straight to DONE_OUTSIDE_ERROR when cancelled); the parent decides failures from
 * outside (death, time limit, cancel, broken pool) only under pool->mu, and a CAS on the state
 * settles any race with the worker finishing at the same moment.
 */
#ifndef MPROC_POOL_SLOTS_H
#define MPROC_POOL_SLOTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/mman.h>
#include <sys/types.h>

#include "mproc/pool.h"
#include "platform/platform.h"

#ifdef MADV_POPULATE_WRITE
#define MPROC__MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#define MPROC__MADV_POPULATE_READ MADV_POPULATE_READ
#else
#define MPROC__MADV_POPULATE_WRITE 23
#define MPROC__MADV_POPULATE_READ 22
#endif

/* A task record. It lives in the family arena so that a worker reads the task and writes its
 * result in place: no copy through a pipe, no per-task allocation. Two cache lines: the first
 * is all a trivial task touches. */
#define MPROC__SLOT_INLINE 40
typedef struct {
    /* line 1 */
    _Atomic uint32_t state; /* kind | WAITER | owner incarnation << 8; a futex word */
    _Atomic uint32_t flags; /* MPROC__SLOT_CANCEL | MPROC__SLOT_NOTIFY */
    mproc_task_fn fn;
    uint32_t arg_len;
    uint32_t res_len;
    /* Argument on the way in; the worker copies it out first, and then the result on the way
     * out, when they are small. */
    unsigned char inline_buf[MPROC__SLOT_INLINE];
    /* line 2 */
    void *arg_ext;      /* arena block when arg_len > MPROC__SLOT_INLINE */
    void *res_ext;      /* arena block when res_len > MPROC__SLOT_INLINE (made by the worker) */
    char *err_msg;      /* arena string from mproc_task_fail (made by the worker) */
    char *sup_msg;      /* parent heap string: why the supervisor failed the task */
    int32_t err_code;   /* the task's own failure (worker-written) */
    int32_t pid;        /* the worker that took it */
    int32_t sup_code;   /* a failure decided in the parent (death, time limit, cancel) */
    int32_t sup_sig;    /* the killing signal, or 0 */
    int64_t timeout_ns; /* hard limit from start; 0: none */
    int32_t soft_timeout_ms; /* soft limit from start; 0: none */
    int32_t sup_status;      /* exit status for a worker that exited, else -1 */
} mproc__slot;
_Static_assert(sizeof(mproc__slot) == 128, "slot is two cache lines");

enum {
    MPROC__SLOT_FREE = 0,
    MPROC__SLOT_QUEUED = 1,
    MPROC__SLOT_RUNNING = 2,
    MPROC__SLOT_DONE_OK = 3,
    MPROC__SLOT_DONE_TASK_ERROR = 4,    /* the task failed by itself: err_code/err_msg */
    MPROC__SLOT_DONE_OUTSIDE_ERROR = 5, /* failed from outside: sup_code/sup_msg */
};
#define MPROC__SLOT_KIND(s) ((s)&7u)
#define MPROC__SLOT_WAITER 8u
#define MPROC__SLOT_OWNER(s) ((s) >> 8)
#define MPROC__SLOT_RUNNING_BY(inc) (MPROC__SLOT_RUNNING | ((uint32_t)(inc) << 8))
#define MPROC__SLOT_IS_DONE(k) ((k) >= MPROC__SLOT_DONE_OK)

enum {
    MPROC__SLOT_CANCEL = 1, /* cooperative cancel requested */
    MPROC__SLOT_NOTIFY = 2, /* tell the supervisor when done (callbacks, fd, futures_wait) */
};

#define MPROC__SLOT_CHUNK_SHIFT 12
#define MPROC__SLOT_CHUNK (1u << MPROC__SLOT_CHUNK_SHIFT)
#define MPROC__SLOT_MAX_CHUNKS 4096 /* 16 M task records */
#define MPROC__SLOT_NONE UINT32_MAX

/* Fault in the whole pages of [addr, addr + len) with one system call instead of one page fault
 * per page, for writing (fresh task records are touched by the parent and by every worker
 * process) or for reading. Best effort: without MADV_POPULATE_* (Linux < 5.14) the pages fault
 * in one by one as before. */
static inline void mproc__prefault_for(const void *addr, size_t len, int advice)
{
    uintptr_t a = ((uintptr_t)addr + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)addr + len) & ~(uintptr_t)4095;
    if (e > a) madvise((void *)a, e - a, advice);
}
static inline void mproc__prefault(void *addr, size_t len)
{
    mproc__prefault_for(addr, len, MPROC__MADV_POPULATE_WRITE);
}

#define MPROC__PAD8(n) (((n) + 7) & ~(size_t)7)

/* Copy n bytes, n small in the common case (task arguments and results, imap items): fixed-size
 * moves the compiler inlines instead of a memcpy call. */
static inline void mproc__copy_small(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n > 16) {
        memcpy(d, s, n);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

/* The same, zeroing dst up to the next multiple of 8 (dst 8-aligned, with that room). */
static inline void mproc__copy_pad8(unsigned char *dst, const void *src, size_t n)
{
    if (n == 0) return;
    memset(dst + MPROC__PAD8(n) - 8, 0, 8);
    mproc__copy_small(dst, src, n);
}

/* Slot address from its index (parent or worker). */
static inline mproc__slot *mproc__slot_at(mproc__slot *const *chunks, uint32_t idx)
{
    return &chunks[idx >> MPROC__SLOT_CHUNK_SHIFT][idx & (MPROC__SLOT_CHUNK - 1)];
}

static inline bool mproc__slot_done(mproc__slot *s)
{
    return MPROC__SLOT_IS_DONE(
        MPROC__SLOT_KIND(atomic_load_explicit(&s->state, memory_order_acquire)));
}

/* The staging block of one map: refcounted by its chunk tasks so an interrupted map can return
 * while chunks still run. */
typedef struct mproc__stage {
    _Atomic uint32_t refs;
    size_t size;
    void *mem; /* arena */
} mproc__stage;

/* Submit one task (pool->mu held, the pool open): a record and its future, filled from
 * fn/arg/opts, holding a reference to `stage` when given (a map chunk), queued to the backend,
 * which may first wait for room. 0 (*out set) or -ENOMEM/-EMSGSIZE/a state error; nothing is
 * left allocated on error. */
int mproc__pool_submit_locked(mproc_pool *p, mproc_task_fn fn, const void *arg, size_t len,
                              const mproc_submit_opts *o, mproc__stage *stage, mproc_future **out);
/* Free the slot resources and put the record back on the free list (mu held). */
void mproc__pool_release_locked(mproc_pool *p, mproc_future *f);
/* Release every future on the pool's freed list (mu held; pool.h freed_list). */
void mproc__pool_take_freed_locked(mproc_pool *p);
/* Complete a record from outside the task (death, time limit, cancel, broken pool): succeeds
 * only while its state is still `expect` (QUEUED, or RUNNING by a given owner; the WAITER bit is
 * ignored). Wakes waiters. true if this call completed it. */
bool mproc__slot_fail(mproc_pool *p, uint32_t idx, uint32_t expect, int code, int sig, int status,
                      pid_t pid, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* Fail every queued task with code (terminate / break). */
void mproc__pool_fail_queued(mproc_pool *p, int code, const char *msg);
/* Break the pool: fail every queued task with MPROC_EBROKEN + msg, refuse new ones. */
void mproc__pool_break(mproc_pool *p, const char *msg);
/* How long a wait for a record looks with the caller's signal mask before it blocks signals and
 * sleeps (docs/conventions.md, Signals). */
#define MPROC__SLOT_WAIT_SPIN_NS 20000
/* The two halves of a wait: look (spin, then yield; spin.h) until the record is done (0), the
 * wait's spin window ends or deadline passes (-ETIMEDOUT); sleep until done or deadline. A caller
 * that must see Ctrl-C blocks signals between the two (interrupt.h): the spin then costs no
 * system call. */
int mproc__slot_spin(mproc__slot *s, int64_t deadline);
int mproc__slot_sleep(mproc__slot *s, int64_t deadline);
/* Wait for a slot to be done, interruptibly. Inline for the slot already done (every get of a
 * pool with work in flight): that check costs no call. */
int mproc__slot_wait_slow(mproc__slot *s, int64_t deadline);
static inline int mproc__slot_wait(mproc__slot *s, int64_t deadline)
{
    return mproc__slot_done(s) ? 0 : mproc__slot_wait_slow(s, deadline);
}
/* The outcome code of a done slot. */
static inline int mproc__slot_code(const mproc__slot *s)
{
    switch (MPROC__SLOT_KIND(atomic_load_explicit(&s->state, memory_order_acquire))) {
    case MPROC__SLOT_DONE_OK:
        return 0;
    case MPROC__SLOT_DONE_TASK_ERROR:
        return s->err_code;
    case MPROC__SLOT_DONE_OUTSIDE_ERROR:
        return s->sup_code;
    default:
        return -EAGAIN;
    }
}

/* Process-wide completion generation, a futex word bumped whenever a watched future completes
 * (futures_wait, imap unordered). */
extern _Atomic uint32_t mproc__completion_gen;
void mproc__completion_bump(void);

/* A staging block of at least size bytes, with one reference (mu held). */
int mproc__stage_get(mproc_pool *p, size_t size, mproc__stage **out);
/* Drop a reference; the last keeps the block as the pool's cache or frees it (mu held). */
void mproc__stage_unref(mproc_pool *p, mproc__stage *st);

/* Free the pool's memory (workers gone, no live future). */
void mproc__pool_destroy(mproc_pool *p);

/* getpid() is a system call: the owner check on every submit (pool.h) reads it from here. A fork
 * child clears it with mproc__pool_forget_pid (pthread_atfork). */
extern pid_t mproc__pool_pid;
void mproc__pool_forget_pid(void);

#endif
