/* The queue's shared layout: a Vyukov-style bounded ring of slots in the family arena, where each
 * slot's state word carries its lap (sequence), its state and the thread id of the process that
 * owns it while a message is being written or read, so a dead owner can be found and its slot
 * recycled (queue_recover.c). */
#ifndef MPROC_CHANNEL_QUEUE_H
#define MPROC_CHANNEL_QUEUE_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "mproc/queue.h"
#include "platform/platform.h"
#include "platform/spin.h"

#define MPROC__QUEUE_MAGIC 0x6d70726f63717565ULL /* "mprocque" */
#define MPROC__QUEUE_CACHE_LINE 64

/* Slot states. FREE(seq): a producer may claim position seq. WRITING(seq, tid): tid is writing it.
 * FULL(seq): a message (or a skip marker) waits for the consumer of position seq.
 * READING(seq, tid): tid is copying it out; the slot then becomes FREE(seq + nslots). */
enum {
    MPROC__QUEUE_SLOT_FREE = 0,
    MPROC__QUEUE_SLOT_WRITING = 1,
    MPROC__QUEUE_SLOT_FULL = 2,
    MPROC__QUEUE_SLOT_READING = 3
};

/* word = seq (40 bits, positions modulo 2^40) | state (2 bits) | tid (22 bits: pid_max <= 2^22). */
#define MPROC__QUEUE_WORD_TID_MASK ((1u << 22) - 1)
#define MPROC__QUEUE_WORD_STATE_SHIFT 22
#define MPROC__QUEUE_WORD_SEQ_SHIFT 24

static inline uint64_t w_make(uint64_t seq, unsigned state, uint32_t tid)
{
    return (seq << MPROC__QUEUE_WORD_SEQ_SHIFT) |
           ((uint64_t)state << MPROC__QUEUE_WORD_STATE_SHIFT) | (tid & MPROC__QUEUE_WORD_TID_MASK);
}
static inline unsigned w_state(uint64_t w)
{
    return (unsigned)(w >> MPROC__QUEUE_WORD_STATE_SHIFT) & 3u;
}
static inline pid_t w_tid(uint64_t w)
{
    return (pid_t)(w & MPROC__QUEUE_WORD_TID_MASK);
}
static inline uint64_t w_seq(uint64_t w)
{
    return w >> MPROC__QUEUE_WORD_SEQ_SHIFT;
}
/* Signed distance from position pos to the slot's sequence, modulo 2^40. */
static inline int64_t w_diff(uint64_t w, uint64_t pos)
{
    uint64_t d = ((w >> MPROC__QUEUE_WORD_SEQ_SHIFT) - pos) << MPROC__QUEUE_WORD_SEQ_SHIFT;
    return (int64_t)d >> MPROC__QUEUE_WORD_SEQ_SHIFT;
}

/* Slot flags, written by the owner before it publishes; they tell a recoverer what to undo. */
enum {
    MPROC__QUEUE_FLAG_CHARGED = 1, /* len is counted in the byte budget */
    MPROC__QUEUE_FLAG_COUNTED = 2, /* counted in the joinable queue's unfinished tasks */
    MPROC__QUEUE_FLAG_SKIP = 4,    /* no message: consumers drop the slot */
};

/* The header has a cache line to itself: a process polling the word for the slot's next state
 * then never pulls away the line the message is being copied into or out of, and each side moves
 * the header line only when it claims and when it publishes. */
typedef struct {
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint64_t word;
    _Atomic uint64_t len;
    _Atomic uint64_t block; /* arena block holding a message larger than the inline area, or 0 */
    _Atomic uint32_t flags;
    _Alignas(MPROC__QUEUE_CACHE_LINE) unsigned char data[MPROC_QUEUE_INLINE];
} q_slot;
_Static_assert(sizeof(q_slot) == MPROC__QUEUE_CACHE_LINE + MPROC_QUEUE_INLINE,
               "a header line, then the data");

#define MPROC__QUEUE_STASH_ENTRIES 4

/* Producer and consumer counters sit on separate cache lines, so with one of each the fast path
 * touches only its own line plus the slot it hands over. */
struct mproc_queue {
    /* constant after creation */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint64_t magic;
    void *raw; /* the arena block (this struct is aligned inside it) */
    uint64_t mask;
    uint64_t max_items;
    uint64_t max_bytes;   /* UINT64_MAX: no byte bound */
    uint64_t charge_from; /* messages of this many bytes or more count against max_bytes */
    uint64_t room;        /* free slots a put that found the ring full waits for; 0: none */
    uint32_t joinable;
    uint32_t unbounded; /* MPROC_QUEUE_UNBOUNDED: a full ring overflows into ovf_* below */
    /* producers */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint64_t tail;
    _Atomic uint64_t bytes_in;   /* bytes ever charged */
    _Atomic uint64_t head_cache; /* recent head, so a put rarely reads the consumers' line */
    _Atomic uint64_t out_cache;  /* recent bytes_out */
    /* consumers */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint64_t head;
    _Atomic uint64_t bytes_out; /* bytes ever released; bytes queued = bytes_in - bytes_out */
    /* rarely written, read on every call */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint32_t closed;
    /* Futex words, one per side: an epoch, with MPROC__QUEUE_SLEEPING set while one sleeps. */
    _Atomic uint32_t not_empty, not_full;
    /* Messages in the overflow list (and puts about to add one). While it is not 0, puts go to the
     * list, so each producer's messages stay in order; gets take from the list once the ring is
     * empty. */
    _Atomic uint64_t ovf_count;
    /* joinable */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint32_t unfinished;
    _Atomic uint32_t join_waiters;
    /* the overflow list, under ovf_lock (queue_overflow.c) */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint32_t ovf_lock; /* holder's tid, or 0 */
    _Atomic uint32_t ovf_lock_waiters;
    _Atomic uint64_t ovf_head, ovf_tail; /* q_node addresses */
    _Atomic uint64_t ovf_put, ovf_pop;   /* the node a holder is adding or taking, for repair */
    /* blocks of large messages kept for reuse (0 = empty entry) */
    _Alignas(MPROC__QUEUE_CACHE_LINE) _Atomic uint64_t stash[MPROC__QUEUE_STASH_ENTRIES];
    _Alignas(MPROC__QUEUE_CACHE_LINE) q_slot slots[];
};

/* A message of the overflow list: one arena block. */
typedef struct {
    _Atomic uint64_t next;
    uint64_t len;
    uint32_t flags; /* MPROC__QUEUE_FLAG_CHARGED, _COUNTED: what is still to give back */
    _Alignas(8) unsigned char data[];
} q_node;

/* The overflow list's lock: a thread id word, taken over (and the list repaired) from a holder
 * found dead after MPROC_QUEUE_STALL_MS. */
void mproc__queue_ovf_lock(mproc_queue *q);
void mproc__queue_ovf_unlock(mproc_queue *q);
/* Append a copy of the message, charged to the byte bound and counted for join. 0, -EAGAIN (the
 * byte bound is reached: wait), MPROC_ECLOSED, -ENOMEM. Takes the lock. */
int mproc__queue_ovf_put(mproc_queue *q, const void *data, uint64_t len);
/* Lock held: the oldest node, or NULL. */
static inline q_node *mproc__queue_ovf_front(mproc_queue *q)
{
    return (q_node *)(uintptr_t)atomic_load(&q->ovf_head);
}
/* Lock held: unlink the front node n, whose message the caller has copied out, and give back its
 * byte charge; the caller gives n back (mproc__queue_block_put) after unlocking. */
void mproc__queue_ovf_pop(mproc_queue *q, q_node *n);
/* Free every node (mproc_queue_free). */
void mproc__queue_ovf_free(mproc_queue *q);

/* This thread's id, cached (reset in a forked child). */
extern MPROC_TLS uint32_t mproc__queue_tid;
uint32_t mproc__queue_tid_init(void);
static inline uint32_t mproc__queue_self_tid(void)
{
    uint32_t t = mproc__queue_tid;
    return __builtin_expect(t != 0, 1) ? t : mproc__queue_tid_init();
}
/* Whether the thread tid has ended (no such thread, or a zombie). */
int mproc__queue_tid_dead(pid_t tid);
/* If the owner recorded in w (observed in s) is dead, take the slot over and recycle it: a half-
 * written message becomes a skip marker, a half-read slot becomes free; charges are refunded and
 * its block freed. Returns 1 if the slot was recycled or changed meanwhile, 0 if the owner lives.
 */
int mproc__queue_recover(mproc_queue *q, q_slot *s, uint64_t w);

/* Recover every slot whose owner is dead: for a put waiting on bytes that a dead reader's slot,
 * already behind the head, still holds. */
void mproc__queue_sweep(mproc_queue *q);

/* Large-message blocks: take one able to hold len bytes (the stash first, else the arena). */
int mproc__queue_block_get(mproc_queue *q, size_t len, void **out);
/* Give a block back (to the stash if it fits, else to the arena). */
void mproc__queue_block_put(mproc_queue *q, void *blk);
/* Charge len bytes to the byte bound if they fit (false: they do not, nothing charged). */
bool mproc__queue_charge(mproc_queue *q, uint64_t len);
/* Give back bytes to the budget, one unfinished task, and wake whoever waits for either. */
void mproc__queue_refund(mproc_queue *q, uint64_t len, uint32_t flags);
#define MPROC__QUEUE_SLEEPING 0x80000000u
/* Wake every sleeper of a side, if one announced itself. A sleeper sets MPROC__QUEUE_SLEEPING (an
 * RMW) before its last look at the queue, and the caller's last store to the state it waits for was
 * seq_cst: so either the sleeper sees that store or we see its flag. Clearing the flag with the
 * wake makes the next wakes free until someone sleeps again, even if sleepers are slow to run. */
static inline void mproc__queue_wake(_Atomic uint32_t *ev)
{
    uint32_t e = atomic_load(ev);
    if (__builtin_expect((e & MPROC__QUEUE_SLEEPING) != 0, 0) &&
        atomic_compare_exchange_strong(ev, &e, (e + 1) & ~MPROC__QUEUE_SLEEPING))
        mproc__wake(ev, INT_MAX);
}

#endif
