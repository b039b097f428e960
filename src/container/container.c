/* What the dict and the list share (container.h): limits, the lock, the block cache, copying
 * out. */
#include "container/container.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "sync/sync.h"

int mproc__container_no_repair;
int mproc__container_crash_after;

void mproc__container_crash_tick(void)
{
    if (--mproc__container_crash_after == 0) raise(SIGKILL);
}

void mproc__climits_from(mproc__climits *l, const mproc_dict_opts *opts)
{
    l->max_key = opts && opts->max_key ? opts->max_key : MPROC_DICT_DEFAULT_MAX_KEY;
    l->max_value = opts && opts->max_value ? opts->max_value : MPROC_DICT_DEFAULT_MAX_VALUE;
    l->max_items = opts && opts->max_items ? opts->max_items : MPROC_DICT_DEFAULT_MAX_ITEMS;
    if (l->max_items > MPROC__CONTAINER_ITEMS_CAP) l->max_items = MPROC__CONTAINER_ITEMS_CAP;
}

bool mproc__container_lock_slow(pthread_mutex_t *m)
{
    /* No untimed sleep: a waiter woken and killed before it takes the mutex takes the wake-up
     * with it (platform/robust.h). Consistent at once: the caller repairs from its journal while it
     * holds the lock. A signal's handler runs and the wait goes on. */
    return mproc__robust_lock(m);
}

/* The arena's block for `size` user bytes is the power of two at or above size + 64 (its
 * header), from 128 bytes: class k holds blocks of 128 << k. */
#define CBLOCK_HDR 64
static int class_of(size_t size)
{
    size_t total = size + CBLOCK_HDR;
    for (int k = 0; k < MPROC__CCACHE_CLASSES; k++)
        if (total <= (size_t)128 << k) return k;
    return -1;
}
#define CLASS_BYTES ((size_t)8 << 10)

int mproc__cblock_alloc(mproc__ccache *c, void **out, size_t size)
{
    int k = class_of(size);
    if (k >= 0) {
        void *b = c->head[k];
        if (b) {
            /* Taken off the list with one store: from here until it is published it is ours. */
            MPROC__PUB(c->head[k], *(void **)b);
            c->count[k]--;
            *out = b;
            return 0;
        }
    }
    return mproc__arena_alloc(out, size);
}

void mproc__cblock_release(mproc__ccache *c, void *blk, size_t size)
{
    if (!blk) return;
    int k = class_of(size);
    if (k >= 0 && c->count[k] < CLASS_BYTES >> (7 + k)) {
        *(void **)blk = c->head[k];
        MPROC__PUB(c->head[k], blk);
        c->count[k]++;
        return;
    }
    mproc__arena_free(blk);
}

void mproc__ccache_drain(mproc__ccache *c)
{
    for (int k = 0; k < MPROC__CCACHE_CLASSES; k++) {
        void *b;
        while ((b = c->head[k])) {
            MPROC__PUB(c->head[k], *(void **)b);
            mproc__arena_free(b);
        }
        c->count[k] = 0;
    }
}

uint64_t mproc__chash_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return mproc__cmix((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&s, 0x9e3779b97f4a7c15ULL);
}

int mproc__copy_alloc(const void *src, size_t n, void **val, size_t *len)
{
    void *p = malloc(n ? n : 1);
    if (!p) return -ENOMEM;
    if (n) memcpy(p, src, n);
    *val = p;
    if (len) *len = n;
    return 0;
}
