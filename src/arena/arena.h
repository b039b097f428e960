/* The family arena: one shared mapping, made before any child exists, at the same address in every
 * process of the family, with a buddy allocator (larger requests take spans of what they need)
 * under a robust process-shared mutex. */
#ifndef MPROC_ARENA_ARENA_H
#define MPROC_ARENA_ARENA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Map the arena now with `size` bytes of address space (0: MPROC_ARENA_SIZE, else 4 GiB): for
 * mproc_init. 0, -EALREADY when it exists already (the first allocation maps it by itself), or a
 * negative code. */
int mproc__arena_create(size_t size);
/* Map the arena with the default size unless it exists: 0 or a negative code. Every allocation
 * does it by itself; a forkserver helper must see the arena before it forks anyone. */
int mproc__arena_ensure(void);
/* Whether the arena exists in this process. */
int mproc__arena_ready(void);
/* The memfd behind the arena (close-on-exec, owned by the arena: never close it), for a manager
 * to offer it to a process outside the family; -1 when there is no arena or this process adopted
 * its arena (the adopter closed the fd it was given). */
int mproc__arena_share_fd(void);
/* Whether this process's arena is another process's, adopted (mproc__arena_adopt). */
int mproc__arena_adopted(void);
/* Bytes of the arena mapping, 0 when there is none. */
size_t mproc__arena_size(void);
/* Make another process's arena this process's own: map `size` bytes of fd at `base`, the address
 * it has there (arena objects hold absolute pointers). The caller keeps fd (it may close it).
 * 0, -EALREADY (this process has an arena already), -EADDRINUSE (something of this process lies
 * in the way), -EPROTO (not an arena of this build), -EINVAL, or mmap's code. */
int mproc__arena_adopt(int fd, size_t size, void *base);

/* Zeroed, 64-byte (cache line) aligned block; 0, -EINVAL (size 0) or -ENOMEM. Initialises the
 * arena on first use. */
int mproc__arena_alloc(void **out, size_t size);
void mproc__arena_free(void *ptr);
/* Give the pages of every cached freed block back to the kernel, and let the blocks merge. */
void mproc__arena_trim(void);
/* Usable bytes of a block: its power of two or span, less the header. */
size_t mproc__arena_usable(const void *ptr);
/* Whether ptr points into the arena mapping (no arena: never). */
extern const char *mproc__arena_lo;
extern size_t mproc__arena_len;
static inline int mproc__arena_contains(const void *ptr, size_t len)
{
    const char *p = ptr;
    return mproc__arena_lo && p >= mproc__arena_lo && len <= mproc__arena_len &&
           (size_t)(p - mproc__arena_lo) <= mproc__arena_len - len;
}

/* Family-wide roots: a module keeps its family state in slot `id`. On first use a zeroed block of
 * `size` bytes is allocated, init(obj) prepares it, and it is published; if two processes race, one
 * block wins and the other is freed, so init must have no effect outside the block.
 * size 0 only looks. Returns the object or NULL. */
enum {
    MPROC__ARENA_ROOT_LOG,
    MPROC__ARENA_ROOT_POOL,
    MPROC__ARENA_ROOT_SPARE1,
    MPROC__ARENA_ROOT_SPARE2,
    MPROC__ARENA_ROOT_COUNT
};
void *mproc__arena_root(int id, size_t size, void (*init)(void *obj));

/* Statistics for tests and benchmarks. */
typedef struct {
    size_t mapped;   /* address space of the arena */
    size_t top;      /* bytes ever carved from it (high-water mark) */
    size_t in_use;   /* bytes in live blocks, headers included */
    size_t cached;   /* bytes of freed blocks kept, with their pages, for reuse at their size */
    size_t rebuilds; /* free lists rebuilt after a process died holding the allocator's lock */
} mproc__arena_stats;
void mproc__arena_get_stats(mproc__arena_stats *st);
/* For tests: 0 when the heap is tiled by valid blocks and the lists and counts agree with them,
 * -EIO when not. */
int mproc__arena_check(void);
/* For tests: the allocator's mutex (to die holding it, or to queue on it), the arena mapped. */
pthread_mutex_t *mproc__arena_mutex(void);

#endif
