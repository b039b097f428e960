/* The ring of the last N text lines, shared by the whole family (it lives in the arena).
 *
 * Writers never wait: a writer takes a sequence number, then claims its slot with a CAS from
 * "done with an older sequence" to "being written by me". If the slot is busy (a writer a whole
 * lap behind, or one that died mid-copy) the line is left out of the ring; the sinks still have
 * it. Readers copy a slot and keep it only if its state named the same finished sequence before
 * and after the copy (a seqlock), so they never return a torn line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "log/log.h"

#define RING_MAGIC 0x6c72696eU

typedef struct {
    _Atomic uint64_t state; /* 0 empty; 2s+1 sequence s being written; 2s+2 sequence s done */
    uint32_t len;
    char text[MPROC_LOG_RING_LINE_MAX];
} ring_slot;

struct mproc__log_ring {
    uint32_t magic;
    size_t lines;
    _Atomic uint64_t head; /* next sequence number */
    ring_slot slots[];
};

int mproc__log_ring_new(mproc__log_ring **out, size_t lines)
{
    if (lines > ((size_t)1 << 16)) return -EINVAL;
    void *p;
    int r = mproc__arena_alloc(&p, sizeof(mproc__log_ring) + lines * sizeof(ring_slot));
    if (r < 0) return r;
    mproc__log_ring *ring = p;
    ring->lines = lines;
    ring->magic = RING_MAGIC;
    *out = ring;
    return 0;
}

void mproc__log_ring_push(mproc__log_ring *r, const char *line, size_t len)
{
    uint64_t s = atomic_fetch_add(&r->head, 1);
    ring_slot *sl = &r->slots[s % r->lines];
    uint64_t cur = atomic_load(&sl->state);
    if ((cur & 1) || cur > 2 * s) return;
    if (!atomic_compare_exchange_strong(&sl->state, &cur, 2 * s + 1)) return;
    if (len > MPROC_LOG_RING_LINE_MAX - 1) len = MPROC_LOG_RING_LINE_MAX - 1;
    memcpy(sl->text, line, len);
    sl->len = (uint32_t)len;
    atomic_store_explicit(&sl->state, 2 * s + 2, memory_order_release);
}

int mproc_log_ring_get(char ***lines, size_t *n)
{
    if (!lines || !n) return -EINVAL;
    *lines = NULL;
    *n = 0;
    mproc__log_ring *r = mproc__log.ring;
    size_t cap = r && r->magic == RING_MAGIC ? r->lines : 0;
    /* One block: the pointer array, then the texts. */
    char *block = malloc(cap * (sizeof(char *) + MPROC_LOG_RING_LINE_MAX) + sizeof(char *));
    if (!block) return -ENOMEM;
    char **ptrs = (char **)block;
    char *text = block + cap * sizeof(char *) + sizeof(char *);
    size_t count = 0;
    if (cap) {
        uint64_t head = atomic_load(&r->head);
        uint64_t s = head > cap ? head - cap : 0;
        for (; s < head; s++) {
            ring_slot *sl = &r->slots[s % cap];
            uint64_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
            if (st != 2 * s + 2) continue;
            uint32_t len = sl->len;
            if (len >= MPROC_LOG_RING_LINE_MAX) continue;
            memcpy(text, sl->text, len);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load(&sl->state) != st) continue;
            text[len] = '\0';
            ptrs[count++] = text;
            text += len + 1;
        }
    }
    ptrs[count] = NULL;
    *lines = ptrs;
    *n = count;
    return 0;
}
