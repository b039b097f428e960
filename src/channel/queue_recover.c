/* What keeps a queue alive when the processes using it die: owner identity, liveness checks,
 * recycling of slots left half-written or half-read, and the block stash for large messages. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arena/arena.h"
#include "platform/fence.h"
#include "platform/platform.h"
#include "channel/queue.h"

/* Blocks up to this size are kept for reuse: reusing them avoids the arena lock and, for blocks
 * of two pages or more, the page faults that follow the arena giving their pages back. */
#define STASH_MAX ((size_t)4 << 20)

MPROC_TLS uint32_t mproc__queue_tid;
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

/* Only the forking thread exists in the child: forget its parent's id. */
static void tid_reset(void)
{
    mproc__queue_tid = 0;
}

static void tid_register(void)
{
    pthread_atfork(NULL, NULL, tid_reset);
}

/* Also where a process (or thread) using queues first comes by: the place to set up its fences. */
uint32_t mproc__queue_tid_init(void)
{
    pthread_once(&tid_once, tid_register);
    mproc__fence_setup();
    mproc__queue_tid = (uint32_t)mproc__gettid();
    return mproc__queue_tid;
}

int mproc__queue_tid_dead(pid_t tid)
{
    /* A waiter owns no slot, so a slot marked with its own id was left by an earlier thread that
     * had the same id. */
    if (tid <= 0 || (uint32_t)tid == mproc__queue_self_tid()) return 1;
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT && errno != ESRCH) return 0;
        /* Without /proc (some containers) a missing entry proves nothing: ask the kernel, which
         * counts an unreaped zombie as alive, so recovery waits for its parent to reap it. */
        if (access("/proc/self/stat", F_OK) != 0) return kill(tid, 0) < 0 && errno == ESRCH;
        return 1;
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n <= 0) return n < 0 && e == ESRCH;
    buf[n] = 0;
    /* The state follows the command name, which may itself contain ')'. A zombie is dead: its
     * parent may not have reaped it yet. */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return 0;
    char st = p[2];
    return st == 'Z' || st == 'X' || st == 'x';
}

static void uncount(mproc_queue *q)
{
    uint32_t u = atomic_load(&q->unfinished);
    do {
        if (u == 0) return;
    } while (!atomic_compare_exchange_weak(&q->unfinished, &u, u - 1));
    if (u == 1 && atomic_load(&q->join_waiters)) mproc__futex_wake(&q->unfinished, INT_MAX);
}

void mproc__queue_refund(mproc_queue *q, uint64_t len, uint32_t flags)
{
    if (flags & MPROC__QUEUE_FLAG_CHARGED) atomic_fetch_add(&q->bytes_out, len);
    if (flags & MPROC__QUEUE_FLAG_COUNTED) uncount(q);
}

int mproc__queue_recover(mproc_queue *q, q_slot *s, uint64_t w)
{
    unsigned st = w_state(w);
    if (st != MPROC__QUEUE_SLOT_WRITING && st != MPROC__QUEUE_SLOT_READING) return 1;
    if (!mproc__queue_tid_dead(w_tid(w))) return 0;
    /* Take the slot over with a CAS: of several waiters noticing the same corpse, one recycles it.
     */
    uint64_t mine = w_make(w_seq(w), st, mproc__queue_self_tid());
    if (!atomic_compare_exchange_strong(&s->word, &w, mine)) return 1;
    /* The dead owner's stores are all visible: it stopped. */
    void *blk = (void *)(uintptr_t)atomic_exchange(&s->block, 0);
    if (blk) mproc__queue_block_put(q, blk);
    uint32_t f = atomic_load(&s->flags);
    mproc__queue_refund(q, atomic_load(&s->len), f);
    if (st == MPROC__QUEUE_SLOT_WRITING) {
        /* Its consumer drops it; nothing half-written is ever delivered. */
        atomic_store(&s->flags, MPROC__QUEUE_FLAG_SKIP);
        atomic_store(&s->word, w_make(w_seq(w), MPROC__QUEUE_SLOT_FULL, 0));
    } else {
        atomic_store(&s->flags, 0);
        atomic_store(&s->word, w_make(w_seq(w) + q->mask + 1, MPROC__QUEUE_SLOT_FREE, 0));
    }
    mproc__queue_wake(&q->not_empty);
    mproc__queue_wake(&q->not_full);
    return 1;
}

void mproc__queue_sweep(mproc_queue *q)
{
    for (uint64_t i = 0; i <= q->mask; i++) {
        q_slot *s = &q->slots[i];
        uint64_t w = atomic_load(&s->word);
        unsigned st = w_state(w);
        if (st == MPROC__QUEUE_SLOT_WRITING || st == MPROC__QUEUE_SLOT_READING)
            mproc__queue_recover(q, s, w);
    }
}

int mproc__queue_block_get(mproc_queue *q, size_t len, void **out)
{
    if (len <= STASH_MAX) {
        for (int i = 0; i < MPROC__QUEUE_STASH_ENTRIES; i++) {
            uint64_t b = atomic_load(&q->stash[i]);
            if (!b || !atomic_compare_exchange_strong(&q->stash[i], &b, 0)) continue;
            void *blk = (void *)(uintptr_t)b;
            size_t u = mproc__arena_usable(blk);
            /* Not a huge block for a small message: keep the stash's memory proportionate. */
            if (u >= len && u / 4 <= len) {
                *out = blk;
                return 0;
            }
            mproc__queue_block_put(q, blk);
            break;
        }
    }
    return mproc__arena_alloc(out, len);
}

void mproc__queue_block_put(mproc_queue *q, void *blk)
{
    if (mproc__arena_usable(blk) <= STASH_MAX) {
        for (int i = 0; i < MPROC__QUEUE_STASH_ENTRIES; i++) {
            uint64_t z = 0;
            if (atomic_compare_exchange_strong(&q->stash[i], &z, (uint64_t)(uintptr_t)blk)) return;
        }
    }
    mproc__arena_free(blk);
}
