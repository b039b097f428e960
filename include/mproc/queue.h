/* mproc: queue, Python's multiprocessing.Queue / JoinableQueue for C processes.
 *
 * A multi-producer multi-consumer FIFO of variable-length byte messages, living in the family
 * arena: a pointer to a queue works in the process that made it and in every process of its family.
 * There is no feeder thread: put copies the message into the queue before it returns, so a process
 * may exit as soon as its last put returned (Python's "join the feeder thread" deadlock cannot
 * happen), and a message put before a get started is visible to it.
 *
 * Bounds: at most max_items messages and at most max_bytes payload bytes are queued at once; put
 * blocks (up to its timeout) while either bound would be exceeded. The default is bounded (1024
 * messages), where Python's Queue() is not: a child that puts more than max_items blocks until
 * someone gets, so join it before draining only with max_items = MPROC_QUEUE_UNBOUNDED (then only
 * max_bytes bounds the queue). When max_bytes is at least what
 * the ring's slots hold (max_items rounded up to a power of two, times MPROC_QUEUE_INLINE), only
 * messages larger than MPROC_QUEUE_INLINE count against it: the others take no memory beyond the
 * ring. Messages of up to MPROC_QUEUE_INLINE bytes are stored inside their ring slot; larger ones
 * are allocated in the arena and handed to the consumer by reference, so their size is limited
 * only by max_bytes and by the arena (a 64 MiB message needs no special handling).
 *
 * Order: messages of one producer (thread) are delivered in the order it put them; every consumer
 * sees each producer's messages in increasing order.
 *
 * Blocking: a get blocks while the queue is empty, a put while a bound would be exceeded, each up
 * to its timeout; close wakes both. A call on small messages makes no system call unless it waits
 * or wakes a sleeper. A signal the program handles (Ctrl-C with a handler) ends a blocked put, get
 * or join with -EINTR, as Python raises KeyboardInterrupt there: nothing was put or taken. How a
 * wait spins, yields and sleeps, and what it costs: docs/queue.md.
 *
 * Crash safety: a process killed at any instant (SIGKILL included), in the middle of a put or a
 * get, does not wedge the queue: the others notice the dead owner of a half-written or half-read
 * slot (after MPROC_QUEUE_STALL_MS of no progress) and recycle it. At most the message that process
 * was putting or getting is lost; a torn message is never delivered. See docs/queue.md for the
 * limits.
 *
 * Errors common to every call: -EINVAL for a NULL or garbage queue handle (a magic word is checked)
 * or a freed one (unless its memory was reused since).
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_queue mproc_queue;

/* Default bounds (opts NULL or fields 0). */
#define MPROC_QUEUE_DEFAULT_ITEMS 1024
#define MPROC_QUEUE_DEFAULT_BYTES ((size_t)256 << 20) /* 256 MiB */
/* Largest max_items accepted: a ring of 192 MiB (192 bytes a slot, in a 256 MiB arena block),
 * which the default 4 GiB arena holds beside a program's other objects. More messages than that:
 * MPROC_QUEUE_UNBOUNDED. */
#define MPROC_QUEUE_MAX_ITEMS ((size_t)1 << 20)
/* max_items for Python's Queue(): no bound on the number of messages. A ring of
 * MPROC_QUEUE_DEFAULT_ITEMS slots is the fast path; once it is full, puts go to an overflow list
 * in the arena until the consumers have emptied it. max_bytes still bounds the payload bytes (every
 * message in the overflow list counts). */
#define MPROC_QUEUE_UNBOUNDED ((size_t)-1)
/* Messages up to this size live inside their ring slot; larger ones in an arena block. */
#define MPROC_QUEUE_INLINE 128
/* A slot whose owner made no progress for this long gets its owner's liveness checked. */
#define MPROC_QUEUE_STALL_MS 20

typedef struct {
    size_t max_items; /* 0: MPROC_QUEUE_DEFAULT_ITEMS; at most MPROC_QUEUE_MAX_ITEMS, or
                         MPROC_QUEUE_UNBOUNDED */
    size_t max_bytes; /* 0: MPROC_QUEUE_DEFAULT_BYTES; SIZE_MAX: no byte bound (arena only) */
    bool joinable;    /* JoinableQueue: every put must be matched by a task_done */
} mproc_queue_opts;

/* -EINVAL (max_items too large), -ENOMEM (arena exhausted). */
int mproc_queue_new(mproc_queue **out, const mproc_queue_opts *opts);

/* Copy len bytes (data may be NULL when len is 0: zero-length messages are messages) into the
 * queue. Blocks up to timeout while the queue is full.
 * -EAGAIN (timeout 0 and full), -ETIMEDOUT, -EINTR, MPROC_ECLOSED (queue closed), -EMSGSIZE (len
 * larger than max_bytes), -EINVAL (data NULL with len > 0), -ENOMEM (arena exhausted). */
int mproc_queue_put(mproc_queue *q, const void *data, size_t len, double timeout);

/* Take the oldest message into buf (capacity cap); *len (if len is not NULL) gets its size.
 * Blocks up to timeout while the queue is empty.
 * -EMSGSIZE: cap is too small; the message stays queued and *len says how much is needed.
 * -EAGAIN (timeout 0 and empty), -ETIMEDOUT, -EINTR, MPROC_ECLOSED (closed and drained),
 * -EINVAL (buf NULL with cap > 0). */
int mproc_queue_get(mproc_queue *q, void *buf, size_t cap, size_t *len, double timeout);

/* As get, into a malloc'd buffer the caller frees (a zero-length message gives a valid 1-byte
 * allocation and *len 0). -EINVAL when data or len is NULL, -ENOMEM when malloc fails (the message
 * stays queued, unless it was a zero-length one). */
int mproc_queue_get_alloc(mproc_queue *q, void **data, size_t *len, double timeout);

/* Approximate number of queued messages (messages being put or got may or may not count);
 * 0 for a bad handle. */
size_t mproc_queue_size(mproc_queue *q);
/* size == 0 (true for a bad handle). */
bool mproc_queue_empty(mproc_queue *q);
/* size == max_items (never for an unbounded queue), or the byte bound reached (false for a bad
 * handle). */
bool mproc_queue_full(mproc_queue *q);

/* Refuse further puts (MPROC_ECLOSED); gets drain what is queued, then return MPROC_ECLOSED.
 * Blocked putters and getters wake up. Idempotent: 0 again on a closed queue. */
int mproc_queue_close(mproc_queue *q);
/* Whether close was called. */
bool mproc_queue_closed(mproc_queue *q);

/* Joinable queues only (-EINVAL otherwise). task_done marks one message got earlier as processed;
 * more calls than messages put return -EINVAL (as Python's ValueError). join waits until every
 * message put has been marked done: 0, -EINTR, or -ETIMEDOUT (timeout 0 included, as process join).
 */
int mproc_queue_task_done(mproc_queue *q);
int mproc_queue_join(mproc_queue *q, double timeout);

/* Release the queue and every message still in it. NULL-safe. No process may use it afterwards. */
void mproc_queue_free(mproc_queue *q);

#ifdef __cplusplus
}
#endif
#endif
