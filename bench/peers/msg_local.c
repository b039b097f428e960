/* Message peers that need no library: mproc queues, pipes, a socketpair, POSIX message queues,
 * and the floor, a minimal single-producer single-consumer ring in shared memory. */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mproc.h"
#include "msg.h"

/* ---- mproc: two queues of the same depth as every peer's ---- */

typedef struct {
    mproc_queue *q[2];
} mq_pair;

static void *mproc_prepare(size_t len, size_t depth)
{
    mq_pair *st = mproc_shared_alloc(sizeof *st);
    /* The byte bound holds depth messages; at least the ring's inline room, so that small
     * messages are bounded by max_items alone, as with mproc's defaults. */
    size_t per = len > MPROC_QUEUE_INLINE ? len : MPROC_QUEUE_INLINE;
    mproc_queue_opts o = {.max_items = depth, .max_bytes = depth * per};
    if (!st || mproc_queue_new(&st->q[0], &o) < 0 || mproc_queue_new(&st->q[1], &o) < 0) abort();
    return st;
}

typedef struct {
    mproc_queue *rx, *tx;
} mq_end;

static void *mproc_open(void *p, int side)
{
    mq_pair *st = p;
    mq_end *h = malloc(sizeof *h);
    if (!h) return NULL;
    h->rx = st->q[side];
    h->tx = st->q[1 - side];
    return h;
}

static int mproc_send(void *p, const void *buf, size_t len)
{
    return mproc_queue_put(((mq_end *)p)->tx, buf, len, MPROC_FOREVER) ? -1 : 0;
}

static const void *mproc_recv(void *p, void *buf, size_t len, size_t *got)
{
    return mproc_queue_get(((mq_end *)p)->rx, buf, len, got, MPROC_FOREVER) ? NULL : buf;
}

static void free_handle(void *h)
{
    free(h);
}

static void mproc_cleanup(void *p)
{
    mq_pair *st = p;
    mproc_queue_free(st->q[0]);
    mproc_queue_free(st->q[1]);
    mproc_shared_free(st);
}

static const peer_msg_ops mproc_ops = {"mproc",    mproc_prepare, mproc_open,   mproc_send,
                                       mproc_recv, free_handle,   mproc_cleanup};

/* ---- floor: one SPSC ring per direction, depth slots of len bytes ----
 * The producer copies into a slot and publishes it by advancing head; the consumer reads the
 * message in place and frees the slot (advances tail) at its next receive. Each side reads the
 * other's index only when it has to (full / caught up); a full producer waits for a sixteenth
 * of the ring, so that it does not poll the slot the consumer is reading. A side that finds
 * nothing to do looks again for 100 us (spinning 2 us, then yielding the CPU between looks) and
 * then sleeps in a futex on the other's index, having said so in a flag the other side checks
 * after each advance (store, then load, both sequentially consistent): the least a ring must do
 * to keep working on a loaded 2-CPU machine (mproc's queue waits the same way, docs/queue.md).
 * No bounds but the ring, no crash recovery, no multiple producers. */

typedef struct {
    _Alignas(64) _Atomic size_t head;
    _Atomic int rx_waiting;
    _Alignas(64) _Atomic size_t tail;
    _Atomic int tx_waiting;
    _Alignas(64) size_t depth, len;
    char data[];
} spsc;

typedef struct {
    spsc *ring[2];
    size_t bytes;
} spsc_pair;

#define SPIN_S 2e-6
#define WAIT_S 100e-6

typedef struct {
    unsigned looks;
    double t0;
} waiter;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One look found nothing: true when it is time to sleep. */
static bool wait_more(waiter *w)
{
    if (w->looks++ % 32 == 0) {
        double t = peer_now();
        if (w->looks == 1) w->t0 = t;
        if (t - w->t0 > WAIT_S) return true;
        if (t - w->t0 > SPIN_S) w->looks |= 1u << 30;
    }
    if (w->looks & (1u << 30))
        sched_yield();
    else
        cpu_relax();
    return false;
}

/* The futex word is the index's low half (little-endian x86 and arm64). */
static void sleep_on(_Atomic size_t *idx, _Atomic int *waiting, size_t seen)
{
    atomic_store(waiting, 1);
    if (atomic_load(idx) == seen)
        syscall(SYS_futex, (uint32_t *)idx, FUTEX_WAIT, (uint32_t)seen, NULL, NULL, 0);
    atomic_store(waiting, 0);
}

static void advance(_Atomic size_t *idx, _Atomic int *waiting, size_t to)
{
    atomic_store(idx, to);
    if (atomic_load(waiting)) syscall(SYS_futex, (uint32_t *)idx, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void *ring_prepare(size_t len, size_t depth)
{
    spsc_pair *st = malloc(sizeof *st);
    st->bytes = sizeof(spsc) + depth * len;
    for (int i = 0; i < 2; i++) {
        st->ring[i] =
            mmap(NULL, st->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (st->ring[i] == MAP_FAILED) abort();
        st->ring[i]->depth = depth;
        st->ring[i]->len = len;
    }
    return st;
}

typedef struct {
    spsc *rx, *tx;
    size_t held;             /* slots read in place, freed at the next receive */
    size_t tx_tail, rx_head; /* the other side's index as last read: read again only when needed */
} ring_end;

static void *ring_open(void *p, int side)
{
    spsc_pair *st = p;
    ring_end *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->rx = st->ring[side];
    h->tx = st->ring[1 - side];
    return h;
}

static int ring_send(void *p, const void *buf, size_t len)
{
    ring_end *h = p;
    spsc *r = h->tx;
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t room = r->depth >= 128 ? r->depth / 16 : 1;
    for (waiter w = {0}; head - h->tx_tail == r->depth;) {
        size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (r->depth - (head - t) >= room) {
            h->tx_tail = t;
            break;
        }
        if (wait_more(&w)) {
            sleep_on(&r->tail, &r->tx_waiting, t);
            w = (waiter){0};
        }
    }
    memcpy(r->data + (head % r->depth) * r->len, buf, len);
    advance(&r->head, &r->rx_waiting, head + 1);
    return 0;
}

static const void *ring_recv(void *p, void *buf, size_t len, size_t *got)
{
    (void)buf;
    ring_end *h = p;
    spsc *r = h->rx;
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed) + h->held;
    if (h->held) advance(&r->tail, &r->tx_waiting, tail);
    h->held = 1;
    for (waiter w = {0}; h->rx_head == tail;) {
        h->rx_head = atomic_load_explicit(&r->head, memory_order_acquire);
        if (h->rx_head != tail) break;
        if (wait_more(&w)) {
            sleep_on(&r->head, &r->rx_waiting, tail);
            w = (waiter){0};
        }
    }
    *got = len;
    return r->data + (tail % r->depth) * r->len;
}

static void ring_cleanup(void *p)
{
    spsc_pair *st = p;
    munmap(st->ring[0], st->bytes);
    munmap(st->ring[1], st->bytes);
    free(st);
}

static const peer_msg_ops ring_ops = {"floor",   ring_prepare, ring_open,   ring_send,
                                      ring_recv, free_handle,  ring_cleanup};

/* ---- pipe and socketpair: byte streams of fixed-size records ---- */

typedef struct {
    int fd[4]; /* pipe: channel 0 read/write, channel 1 read/write; socketpair: fd[0], fd[1] */
    bool pair;
} fds;

typedef struct {
    int rx, tx;
} fd_end;

static void *pipe_prepare(size_t len, size_t depth)
{
    (void)len, (void)depth; /* a pipe's depth is its 64 KiB buffer, as a program gets it */
    fds *st = calloc(1, sizeof *st);
    if (!st || pipe(st->fd) || pipe(st->fd + 2)) abort();
    return st;
}

static void *socketpair_prepare(size_t len, size_t depth)
{
    (void)len, (void)depth;
    fds *st = calloc(1, sizeof *st);
    if (!st || socketpair(AF_UNIX, SOCK_STREAM, 0, st->fd)) abort();
    st->pair = true;
    return st;
}

static void *fd_open(void *p, int side)
{
    fds *st = p;
    fd_end *h = malloc(sizeof *h);
    if (!h) return NULL;
    if (st->pair) {
        h->rx = h->tx = st->fd[side];
    } else {
        h->rx = st->fd[side ? 2 : 0];
        h->tx = st->fd[side ? 1 : 3];
    }
    return h;
}

static int fd_send(void *p, const void *buf, size_t len)
{
    const char *b = buf;
    while (len) {
        ssize_t k = write(((fd_end *)p)->tx, b, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        len -= (size_t)k;
    }
    return 0;
}

static const void *fd_recv(void *p, void *buf, size_t len, size_t *got)
{
    char *b = buf;
    for (size_t have = 0; have < len;) {
        ssize_t k = read(((fd_end *)p)->rx, b + have, len - have);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return NULL;
        have += (size_t)k;
    }
    *got = len;
    return buf;
}

static void fd_cleanup(void *p)
{
    fds *st = p;
    for (int i = 0; i < (st->pair ? 2 : 4); i++)
        close(st->fd[i]);
    free(st);
}

static const peer_msg_ops pipe_ops = {"pipe",  pipe_prepare, fd_open,   fd_send,
                                      fd_recv, free_handle,  fd_cleanup};
static const peer_msg_ops socketpair_ops = {"socketpair", socketpair_prepare, fd_open,   fd_send,
                                            fd_recv,      free_handle,        fd_cleanup};

/* ---- POSIX message queues ---- */

typedef struct {
    char name[2][64];
} pmq_names;

typedef struct {
    mqd_t rx, tx;
} pmq_end;

static long mqueue_limit(const char *name)
{
    char path[64];
    long v = 0;
    snprintf(path, sizeof path, "/proc/sys/fs/mqueue/%s", name);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%ld", &v) != 1) v = 0;
    if (f) fclose(f);
    return v;
}

static void *pmq_prepare(size_t len, size_t depth)
{
    /* Above fs.mqueue.msg_max and msgsize_max a queue needs CAP_SYS_RESOURCE; without it the
     * depth is cut to msg_max and larger messages are not run (a line on stderr says so). */
    struct mq_attr a = {.mq_maxmsg = (long)depth, .mq_msgsize = (long)len};
    pmq_names *st = malloc(sizeof *st);
    for (int i = 0; i < 2; i++) {
        snprintf(st->name[i], sizeof st->name[i], "/mproc-bench-%d-%d", (int)getpid(), i);
        mq_unlink(st->name[i]);
        mqd_t q = mq_open(st->name[i], O_CREAT | O_EXCL | O_RDWR, 0600, &a);
        if (q == (mqd_t)-1 && errno == EINVAL && i == 0) {
            long max = mqueue_limit("msg_max"), size_max = mqueue_limit("msgsize_max");
            if (max > 0 && a.mq_maxmsg > max) a.mq_maxmsg = max;
            if (a.mq_msgsize <= size_max)
                q = mq_open(st->name[i], O_CREAT | O_EXCL | O_RDWR, 0600, &a);
            fprintf(stderr,
                    "posix mq %zu B: depth %ld instead of %zu (fs.mqueue.msg_max %ld, msgsize_max "
                    "%ld, no CAP_SYS_RESOURCE)%s\n",
                    len, a.mq_maxmsg, depth, max, size_max, q == (mqd_t)-1 ? ": not run" : "");
        }
        if (q == (mqd_t)-1) {
            if (errno != EINVAL) fprintf(stderr, "posix mq %zu B: %s\n", len, strerror(errno));
            if (i) mq_unlink(st->name[0]);
            free(st);
            return NULL;
        }
        mq_close(q);
    }
    return st;
}

static void *pmq_open(void *p, int side)
{
    pmq_names *st = p;
    pmq_end *h = malloc(sizeof *h);
    if (!h) return NULL;
    h->rx = mq_open(st->name[side], O_RDONLY);
    h->tx = mq_open(st->name[1 - side], O_WRONLY);
    if (h->rx == (mqd_t)-1 || h->tx == (mqd_t)-1) return NULL;
    return h;
}

static int pmq_send(void *p, const void *buf, size_t len)
{
    while (mq_send(((pmq_end *)p)->tx, buf, len, 0))
        if (errno != EINTR) return -1;
    return 0;
}

static const void *pmq_recv(void *p, void *buf, size_t len, size_t *got)
{
    ssize_t k;
    while ((k = mq_receive(((pmq_end *)p)->rx, buf, len, NULL)) < 0)
        if (errno != EINTR) return NULL;
    *got = (size_t)k;
    return buf;
}

static void pmq_close(void *p)
{
    pmq_end *h = p;
    mq_close(h->rx);
    mq_close(h->tx);
    free(h);
}

static void pmq_cleanup(void *p)
{
    pmq_names *st = p;
    mq_unlink(st->name[0]);
    mq_unlink(st->name[1]);
    free(st);
}

static const peer_msg_ops pmq_ops = {"posix mq", pmq_prepare, pmq_open,   pmq_send,
                                     pmq_recv,   pmq_close,   pmq_cleanup};

int main(void)
{
    const peer_msg_ops *ops[] = {&mproc_ops, &ring_ops, &pipe_ops, &socketpair_ops, &pmq_ops};
    return peer_msg_main(ops, (int)(sizeof ops / sizeof ops[0]));
}
