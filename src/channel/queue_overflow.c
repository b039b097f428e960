/* The overflow list of an unbounded queue (MPROC_QUEUE_UNBOUNDED): where puts go once the ring is
 * full, so that a producer never blocks on the number of messages (Python's Queue()). It is the
 * slow path: a linked list of arena blocks under a lock, used only while the backlog exceeds the
 * ring; the ring's fast path stays as it is, with one more load of a line it reads anyway.
 *
 * Crash safety follows the ring's rules. The lock word holds its holder's thread id; a waiter that
 * finds the same holder for MPROC_QUEUE_STALL_MS checks that it lives, and takes the lock over from
 * a dead one, repairing the list: a holder records in ovf_put / ovf_pop the node it is adding or
 * taking, so the repair can tell a half-done step from a finished one, and gives back the charge
 * and the joinable count of a message that was half added or half taken (that message is lost, as
 * in the ring; nothing is delivered twice). */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "arena/arena.h"
#include "platform/platform.h"
#include "platform/spin.h"
#include "channel/queue.h"

#define LOCK_SPIN 64          /* looks before yielding */
#define LOCK_SLEEP_NS 1000000 /* a sleeping waiter looks again this often (a waker may die) */
#define STALL_NS ((int64_t)MPROC_QUEUE_STALL_MS * 1000000)

static q_node *node_at(uint64_t v)
{
    return (q_node *)(uintptr_t)v;
}

/* Give back what a message lost in a dead holder's hands still held, and free it. */
static void drop_node(mproc_queue *q, q_node *n)
{
    mproc__queue_refund(q, n->len, n->flags);
    mproc__queue_block_put(q, n);
}

/* The holder died: make the list whole again (we hold the lock now). */
static void repair(mproc_queue *q)
{
    q_node *put = node_at(atomic_load(&q->ovf_put)), *pop = node_at(atomic_load(&q->ovf_pop));
    uint64_t count = 0;
    q_node *last = NULL;
    bool put_linked = false, pop_linked = false;
    for (q_node *n = mproc__queue_ovf_front(q); n; n = node_at(atomic_load(&n->next))) {
        put_linked |= n == put;
        pop_linked |= n == pop;
        last = n;
        count++;
    }
    if (put && !put_linked) drop_node(q, put);
    if (pop && !pop_linked) drop_node(q, pop);
    atomic_store(&q->ovf_put, 0);
    atomic_store(&q->ovf_pop, 0);
    atomic_store(&q->ovf_tail, (uint64_t)(uintptr_t)last);
    atomic_store(&q->ovf_count, count);
    mproc__queue_wake(&q->not_empty);
    mproc__queue_wake(&q->not_full);
}

void mproc__queue_ovf_lock(mproc_queue *q)
{
    uint32_t me = mproc__queue_self_tid(), v = 0;
    if (atomic_compare_exchange_strong(&q->ovf_lock, &v, me)) return;
    uint32_t holder = 0;
    int64_t since = 0;
    for (unsigned looks = 0;; looks++) {
        v = atomic_load(&q->ovf_lock);
        if (v == 0) {
            if (atomic_compare_exchange_weak(&q->ovf_lock, &v, me)) return;
            continue;
        }
        if (looks < LOCK_SPIN) {
            mproc__cpu_relax();
            continue;
        }
        int64_t now = mproc__now_ns();
        if (v != holder) {
            holder = v;
            since = now;
        } else if (now - since >= STALL_NS) {
            if (mproc__queue_tid_dead((pid_t)v) &&
                atomic_compare_exchange_strong(&q->ovf_lock, &v, me)) {
                repair(q);
                return;
            }
            since = now;
        }
        atomic_fetch_add(&q->ovf_lock_waiters, 1);
        if (atomic_load(&q->ovf_lock) == v) mproc__futex_wait(&q->ovf_lock, v, now + LOCK_SLEEP_NS);
        atomic_fetch_sub(&q->ovf_lock_waiters, 1);
    }
}

void mproc__queue_ovf_unlock(mproc_queue *q)
{
    atomic_store(&q->ovf_lock, 0);
    if (atomic_load(&q->ovf_lock_waiters)) mproc__futex_wake(&q->ovf_lock, 1);
}

int mproc__queue_ovf_put(mproc_queue *q, const void *data, uint64_t len)
{
    q_node *n;
    int r = mproc__queue_block_get(q, sizeof *n + len, (void **)&n);
    if (r < 0) return r;
    atomic_init(&n->next, 0);
    n->len = len;
    n->flags = 0;
    if (len) memcpy(n->data, data, len);
    mproc__queue_ovf_lock(q);
    /* Recorded first: from here a repair gives back whatever this put took. */
    atomic_store(&q->ovf_put, (uint64_t)(uintptr_t)n);
    /* Every message of the list takes arena memory: all count against the byte bound. */
    if (q->max_bytes != UINT64_MAX) {
        n->flags = MPROC__QUEUE_FLAG_CHARGED;
        if (!mproc__queue_charge(q, len)) {
            r = -EAGAIN;
            goto undo;
        }
    }
    /* Counted before the closed check: a get that saw the queue closed, then the count 0, must not
     * miss this message (the same rule as a ring put's check after its claim). */
    atomic_fetch_add(&q->ovf_count, 1);
    if (atomic_load(&q->closed)) {
        atomic_fetch_sub(&q->ovf_count, 1);
        mproc__queue_refund(q, len, n->flags);
        r = MPROC_ECLOSED;
        goto undo;
    }
    if (q->joinable) {
        n->flags |= MPROC__QUEUE_FLAG_COUNTED;
        atomic_fetch_add(&q->unfinished, 1);
    }
    q_node *tail = node_at(atomic_load(&q->ovf_tail));
    if (tail)
        atomic_store(&tail->next, (uint64_t)(uintptr_t)n);
    else
        atomic_store(&q->ovf_head, (uint64_t)(uintptr_t)n);
    atomic_store(&q->ovf_tail, (uint64_t)(uintptr_t)n);
    atomic_store(&q->ovf_put, 0);
    mproc__queue_ovf_unlock(q);
    return 0;
undo:
    atomic_store(&q->ovf_put, 0);
    mproc__queue_ovf_unlock(q);
    mproc__queue_block_put(q, n);
    return r;
}

void mproc__queue_ovf_pop(mproc_queue *q, q_node *n)
{
    atomic_store(&q->ovf_pop, (uint64_t)(uintptr_t)n);
    q_node *next = node_at(atomic_load(&n->next));
    atomic_store(&q->ovf_head, (uint64_t)(uintptr_t)next);
    if (!next) atomic_store(&q->ovf_tail, 0);
    atomic_fetch_sub(&q->ovf_count, 1);
    /* The byte charge goes back now; the unfinished task is the caller's task_done's. */
    if (n->flags & MPROC__QUEUE_FLAG_CHARGED) atomic_fetch_add(&q->bytes_out, n->len);
    n->flags = 0;
    atomic_store(&q->ovf_pop, 0);
}

void mproc__queue_ovf_free(mproc_queue *q)
{
    q_node *n = mproc__queue_ovf_front(q);
    while (n) {
        q_node *next = node_at(atomic_load(&n->next));
        mproc__arena_free(n);
        n = next;
    }
    atomic_store(&q->ovf_head, 0);
    atomic_store(&q->ovf_tail, 0);
}
