/* Local backend: the shared queue and worker seats in the arena, seen by the parent's supervisor
 * and by the workers (local/worker.c). */
#ifndef MPROC_POOL_LOCAL_LOCAL_H
#define MPROC_POOL_LOCAL_LOCAL_H

#include <stdalign.h>

#include "platform/ticks.h"
#include "pool/pool.h"

#define MPROC__LOCAL_QUEUE_CAP (1u << 20)
#define MPROC__LOCAL_CRASH_MAX 3072
/* How often the supervisor looks for a stopped worker while work is queued (local.c). */
#define MPROC__LOCAL_TICK_NS 10000000
/* Ticks it goes on with after the queue went idle (so a pool between tasks is not woken). */
#define MPROC__LOCAL_IDLE_TICKS 20

/* A queue entry: the record index (24 bits hold every record: MPROC__SLOT_MAX_CHUNKS chunks of
 * MPROC__SLOT_CHUNK), a bit saying whether it carries a stamp, and above them when it was sent,
 * in units of 2^MPROC__Q_SHIFT ticks modulo 2^39 (about 20 ns units, wrapping after 3 hours on
 * x86): the worker that takes it counts its dispatch latency (stats.h) without another line of
 * shared memory per task. Only a sample of the entries carries a stamp (local_send): reading
 * the counter costs ~10 ns on a VM, a measurable part of a submit. */
#define MPROC__Q_IDX_BITS 24
#define MPROC__Q_TIMED ((uint64_t)1 << MPROC__Q_IDX_BITS)
#define MPROC__Q_STAMP_BITS (64 - MPROC__Q_IDX_BITS - 1)
/* One submit in this many is stamped (a power of two); a batch always is. */
#define MPROC__Q_SAMPLE 8
#if defined(__x86_64__)
#define MPROC__Q_SHIFT 6
#else
#define MPROC__Q_SHIFT 2
#endif
_Static_assert((uint64_t)MPROC__SLOT_MAX_CHUNKS << MPROC__SLOT_CHUNK_SHIFT <=
                   (uint64_t)1 << MPROC__Q_IDX_BITS,
               "record indices fit a queue entry");
/* An entry with a stamp (ticks, from mproc__ticks), or none (ticks 0 with timed false). */
static inline uint64_t mproc__q_entry(uint32_t idx, uint64_t ticks, bool timed)
{
    return (ticks >> MPROC__Q_SHIFT) << (MPROC__Q_IDX_BITS + 1) | (timed ? MPROC__Q_TIMED : 0) |
           idx;
}
static inline uint32_t mproc__q_idx(uint64_t e)
{
    return (uint32_t)(e & ((1u << MPROC__Q_IDX_BITS) - 1));
}
static inline bool mproc__q_timed(uint64_t e)
{
    return e & MPROC__Q_TIMED;
}
/* Ticks from the entry's stamp to `now` (a timed entry). */
static inline uint64_t mproc__q_waited(uint64_t e, uint64_t now)
{
    uint64_t units = ((now >> MPROC__Q_SHIFT) - (e >> (MPROC__Q_IDX_BITS + 1))) &
                     (((uint64_t)1 << MPROC__Q_STAMP_BITS) - 1);
    return units << MPROC__Q_SHIFT;
}

enum {
    MPROC__WORKER_STARTING,
    MPROC__WORKER_READY,
    MPROC__WORKER_INIT_FAILED,
    MPROC__WORKER_RETIRED,
    MPROC__WORKER_EXITING
};

/* One worker seat; a replacement worker takes over the seat of the one it replaces. */
typedef struct {
    alignas(64) _Atomic uint32_t inc; /* incarnation of the worker in this seat (slot owner id) */
    _Atomic uint32_t current;         /* record it is claiming or running, MPROC__SLOT_NONE */
    _Atomic uint32_t phase;           /* MPROC__WORKER_* */
    /* 1 while counted in shm->sleepers (set after the increment, cleared before the decrement),
     * so the supervisor can take a killed sleeper out of the count. */
    _Atomic uint32_t asleep;
    _Atomic uint32_t sleep_seq; /* the wake_seq it went to sleep on (for check_stuck's count) */
    _Atomic uint32_t leave;     /* 1: the pool shrank past this seat: retire when idle */
    int32_t init_code;
    _Atomic int64_t deadline_ns; /* hard deadline of the running task, 0: none */
    char init_msg[256];
    _Atomic uint32_t crash_len; /* bytes of backtrace in crash[] */
    int32_t crash_sig;
    char crash[MPROC__LOCAL_CRASH_MAX];
    bool pinned; /* the worker confines itself to cpus before anything else */
    cpu_set_t cpus;
    mproc__stat_line st; /* the seat's statistics, on lines of their own (st.ok: crash loops) */
} mproc__seat;

struct mproc__pool_shm {
    uint32_t magic;
    uint32_t nseats;     /* seats made: what mproc_pool_resize may grow to (local.c) */
    _Atomic uint64_t *q; /* MPROC__LOCAL_QUEUE_CAP entries (mproc__q_entry), by position */
    mproc__slot *chunks[MPROC__SLOT_MAX_CHUNKS];
    int ctl_efd;      /* wakes the supervisor (parent only: workers may not share our fds) */
    bool thread_mode; /* workers are threads of the parent (start method "thread") */
    unsigned max_tasks;
    size_t max_rss; /* opts.max_memory_per_child */
    int64_t pool_timeout_ns;
    alignas(64) _Atomic uint64_t tail; /* positions published (parent) */
    alignas(64) _Atomic uint64_t head; /* positions passed (workers; a hint, see local/worker.c) */
    alignas(64) _Atomic uint32_t wake_seq; /* futex: workers sleep here */
    _Atomic uint32_t sleepers;             /* workers that may be asleep on wake_seq */
    _Atomic uint32_t spinner; /* incarnation of the one worker spinning for work, 0: none */
    /* How long the spinner spins on the CPU before it yields between looks (parent; workers
     * read it at every wait): MPROC__LOCAL_IDLE_HARD_SPIN_NS, or 0 (mproc__local_yield_at_once). */
    _Atomic uint32_t idle_hard_spin_ns;
    _Atomic uint32_t shutdown;   /* 1: leave when the queue is empty */
    _Atomic int64_t sup_wake_ns; /* when the supervisor next looks at deadlines */
    /* 1 while the supervisor looks at the queue every MPROC__LOCAL_TICK_NS for a spinner that
     * stopped (local.c, check_stuck); a send that relies on the spinner wakes it otherwise. */
    _Atomic uint32_t sup_ticking;
    /* Workers -> supervisor, without any fd (a forkserver child inherits none of ours): a
     * futex word that a relay thread in the parent turns into a write of ctl_efd. */
    alignas(64) _Atomic uint32_t notify_seq;
    _Atomic uint32_t relay_sleeping;
    alignas(64) mproc__seat seats[];
};

/* How often check_stuck (local.c) found records waiting a whole tick while every sleeping worker
 * slept on the current wake_seq (no wake-up issued since: a lost wake-up, or a worker stopped
 * while trusted with one), in this process. Tests where no worker is stopped expect 0: the
 * tick's rescue would hide a lost wake-up otherwise. A worker woken but kept waiting for a CPU
 * is not counted (a wake was issued). */
extern _Atomic uint64_t mproc__pool_stuck_wakes;

/* An idle worker spins on the CPU this long before it yields between looks for work (spin.h);
 * why not less: WAIT_HARD_SPIN_NS in pool/slots.c. */
#define MPROC__LOCAL_IDLE_HARD_SPIN_NS 10000
/* For a pool whose parent always has a thread busy beside its workers (a worker rank's serving
 * loop, pool/remote/serve.c): its idle workers yield from their first look. Spinning first keeps
 * a worker and a parent that waits on another CPU apart; with three busy threads on two CPUs
 * two share one, and a worker that spins 10 µs before it lets its loop run made every hand-over
 * on that CPU cost those 10 µs (13 µs from a task's end to its rank's loop seeing it, 2 µs
 * yielding at once; measured). */
void mproc__local_yield_at_once(mproc_pool *p);

/* The worker process body (local/worker.c). */
typedef struct {
    mproc__pool_shm *shm;
    uint32_t seat;
    uint32_t inc;
    int (*initializer)(void *);
    void *initarg;
} mproc__worker_boot;
int mproc__worker_main(void *boot);
/* Run in the pool's process before its workers are forked: loads what every worker would
 * otherwise load for itself (the unwinder behind backtrace()), once. */
void mproc__worker_prepare(void);

#endif
