/* Allocator: a buddy system over the arena, with a small cache of recently freed blocks.
 *
 * Blocks are powers of two from 128 bytes, aligned to their size relative to the heap start, and
 * carved lazily from the never-used top. A freed block merges with its buddy (the other half of
 * the block of twice its size) whenever that buddy is free too, so space freed in one size class
 * serves any other. Before that, frees go to a per-class cache (LIFO, bounded in bytes): a block
 * that comes back keeps its pages, so a message size that keeps coming and going is neither
 * merged and split again nor faulted in again. A freed block of two pages or more that does not
 * fit the cache gives its pages back to the kernel (MADV_REMOVE), so a large message that came and
 * went costs no memory; each free block remembers how far its bytes may be non-zero, so an
 * allocation zeroes only that.
 *
 * Crash safety: the allocator's state is changed under a robust mutex. The free lists are
 * rebuilt from the blocks themselves when a holder died: the heap below `top` is always tiled by
 * block headers (each header and `top` are written in an order that keeps the tiling valid at
 * every store), so the next locker walks it and puts every free block back; at worst the dead
 * holder's block leaks. */
#include "arena/arena.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "platform/robust.h"

#define ARENA_MAGIC 0x6d70726f63617265ULL /* "mprocare" */
#define BLOCK_MAGIC 0x6d70626bU           /* allocated */
#define FREE_MAGIC 0x66726565U            /* free, in free_head[order] */
#define CACHED_MAGIC 0x63616368U          /* free, in cache_head[order] */
#define FREEING_MAGIC 0x66726967U         /* being freed (its pages released): still owned */
#define MIN_ORDER 7                       /* 128-byte blocks */
#define MAX_ORDER 40                      /* 1 TiB */
#define PAGE 4096
#define DEFAULT_SIZE ((size_t)4 << 30)
/* The cache: blocks of up to CACHE_BLOCK_MAX bytes, CACHE_MAX bytes in all (1/16 of a smaller
 * arena). */
#define CACHE_BLOCK_MAX ((size_t)2 << 20)
#define CACHE_MAX ((size_t)32 << 20)
/* An allocation zeroes what may be dirty with memset up to this much, beyond it gives the pages
 * back instead (a memset would commit memory a sparse user never touches). */
#define ZERO_MEMSET_MAX ((size_t)4 << 20)

/* A whole cache line, so that every object starts on a line of its own: two locks allocated one
 * after the other never share a line (no false sharing between processes), and code that wants
 * cache-line alignment for its own fields gets it. */
typedef struct {
    _Alignas(64) uint32_t magic;
    uint32_t order;
    uint64_t next, prev; /* offsets of the neighbours in its list, while free (0: none) */
    uint64_t dirty;      /* while free: bytes from the block's start that may be non-zero */
} block_hdr;
#define HDR sizeof(block_hdr)

typedef struct {
    uint64_t magic;
    size_t size;
    pthread_mutex_t lock;
    size_t heap;    /* offset of the heap: blocks are aligned relative to it */
    size_t top;     /* offset of the first never-carved byte */
    size_t carving; /* end of the region a carve is writing headers into, until top moves */
    size_t in_use;  /* bytes in allocated blocks */
    size_t cached;  /* bytes in the cache */
    size_t cache_max;
    size_t rebuilds; /* times a holder's death made the lists be rebuilt */
    uint64_t free_head[MAX_ORDER + 1];
    uint64_t cache_head[MAX_ORDER + 1];
    void *roots[MPROC__ARENA_ROOT_COUNT];
} arena_hdr;

static char *arena_base;
static arena_hdr *arena;
/* The mapping's bounds, copied out of the shared header: that header's line changes with every
 * allocation in the family, and the bounds are read on every call that checks a handle. */
const char *mproc__arena_lo;
size_t mproc__arena_len;

int mproc__arena_ready(void)
{
    return __atomic_load_n(&arena, __ATOMIC_ACQUIRE) != NULL;
}

/* MPROC_ARENA_SIZE: bytes, or with a suffix M or G; 0 when unset. */
static size_t size_from_env(void)
{
    const char *e = getenv("MPROC_ARENA_SIZE");
    if (!e || !*e) return 0;
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    if (*end == 'G' || *end == 'g')
        v <<= 30;
    else if (*end == 'M' || *end == 'm')
        v <<= 20;
    return (size_t)v;
}

static int map_locked(size_t size)
{
    if (size == 0) size = size_from_env();
    if (size == 0) size = DEFAULT_SIZE;
    if (size < (size_t)1 << 20) return -EINVAL;
    size = (size + PAGE - 1) & ~(size_t)(PAGE - 1);
    int fd = memfd_create("mproc-arena", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    int e = errno;
    /* The mapping keeps the memory alive; the fd is not needed once every child inherits it. */
    close(fd);
    if (m == MAP_FAILED) return -e;
    arena_hdr *h = m;
    h->magic = ARENA_MAGIC;
    h->size = size;
    int r = mproc__robust_mutex_init(&h->lock, PTHREAD_MUTEX_DEFAULT);
    if (r < 0) {
        munmap(m, size);
        return r;
    }
    h->heap = h->top = (sizeof *h + PAGE - 1) & ~(size_t)(PAGE - 1);
    h->cache_max = size / 16 < CACHE_MAX ? size / 16 : CACHE_MAX;
    arena_base = m;
    mproc__arena_lo = m;
    mproc__arena_len = size;
    __atomic_store_n(&arena, h, __ATOMIC_RELEASE);
    return 0;
}

/* A mutex rather than pthread_once: a failed mapping (fd or address space exhausted) must let a
 * later call try again, and mproc_init must be able to pass its size to the first mapping. */
static pthread_mutex_t create_mu = PTHREAD_MUTEX_INITIALIZER;

int mproc__arena_create(size_t size)
{
    pthread_mutex_lock(&create_mu);
    int r = arena ? -EALREADY : map_locked(size);
    pthread_mutex_unlock(&create_mu);
    return r;
}

/* The arena maps itself on first use, so no layer needs the library initialised first. */
int mproc__arena_ensure(void)
{
    if (__atomic_load_n(&arena, __ATOMIC_ACQUIRE)) return 0;
    int r = mproc__arena_create(0);
    return r == -EALREADY ? 0 : r;
}

static block_hdr *at(size_t off)
{
    return (block_hdr *)(arena_base + off);
}

static size_t off_of(const block_hdr *b)
{
    return (size_t)((const char *)b - arena_base);
}

static void list_push(uint64_t *head, size_t off)
{
    block_hdr *b = at(off);
    b->prev = 0;
    b->next = *head;
    if (*head) at(*head)->prev = off;
    *head = off;
}

static void list_remove(uint64_t *head, size_t off)
{
    block_hdr *b = at(off);
    if (b->prev)
        at(b->prev)->next = b->next;
    else
        *head = b->next;
    if (b->next) at(b->next)->prev = b->prev;
}

/* Put the free block at off of this order in the free lists, merged with its buddy as long as the
 * buddy is free and whole. dirty: how far its bytes may be non-zero. */
static void insert_free(size_t off, unsigned o, uint64_t dirty)
{
    arena_hdr *A = arena;
    block_hdr *b = at(off);
    b->dirty = dirty;
    b->order = o;
    b->magic = FREE_MAGIC; /* from here a rebuild would find it, wherever it is */
    while (o < MAX_ORDER) {
        size_t half = (size_t)1 << o;
        size_t buddy = A->heap + ((off - A->heap) ^ half);
        /* Below top the heap is tiled, so the buddy's offset starts a block; it is our buddy
         * only if that block is free and of our order (not split, not merged further). */
        if (buddy >= A->top || A->size - buddy < half) break;
        block_hdr *bb = at(buddy);
        if (bb->magic != FREE_MAGIC || bb->order != o) break;
        list_remove(&A->free_head[o], buddy);
        size_t lo = off < buddy ? off : buddy, hi = off < buddy ? buddy : off;
        uint64_t lo_dirty = lo == off ? dirty : bb->dirty;
        uint64_t hi_dirty = hi == off ? dirty : bb->dirty;
        /* The upper header becomes plain bytes of the merged block: zeroed below, so an upper
         * half holding nothing but its header leaves the merged block as clean as the lower. */
        uint64_t merged = hi_dirty > HDR ? half + hi_dirty : lo_dirty;
        block_hdr *l = at(lo);
        l->magic = FREE_MAGIC;
        l->dirty = merged; /* widened before the order grows, so it never under-states */
        l->order = o + 1;
        memset(at(hi), 0, HDR);
        off = lo;
        dirty = merged;
        o++;
    }
    b = at(off);
    b->order = o;
    b->dirty = dirty;
    list_push(&A->free_head[o], off);
}

/* The aligned blocks that tile [from, to) of the heap, largest first where alignment allows: at
 * most two per order. Returns how many. */
static int tiles(size_t from, size_t to, size_t *off, unsigned *order)
{
    int n = 0;
    while (from < to) {
        size_t rel = from - arena->heap;
        unsigned k = MIN_ORDER;
        while (k < MAX_ORDER && !(rel & ((size_t)1 << k)) && to - from >= (size_t)2 << k)
            k++;
        off[n] = from;
        order[n++] = k;
        from += (size_t)1 << k;
    }
    return n;
}

/* Carve a block of order o at the top: the gap before its aligned start becomes free blocks.
 * Headers first, then top, so a rebuild never walks into a header not yet written; `carving`
 * tells a rebuild after a death mid-carve which bytes past top may hold stray headers. */
static size_t carve(unsigned o)
{
    arena_hdr *A = arena;
    size_t bsize = (size_t)1 << o;
    size_t rel = ((A->top - A->heap) + bsize - 1) & ~(bsize - 1);
    if (rel > A->size - A->heap || A->size - A->heap - rel < bsize) return 0;
    size_t off = A->heap + rel;
    size_t goff[2 * MAX_ORDER + 2];
    unsigned gord[2 * MAX_ORDER + 2];
    int n = tiles(A->top, off, goff, gord);
    A->carving = off + bsize;
    for (int i = 0; i < n; i++)
        *at(goff[i]) = (block_hdr){.magic = FREE_MAGIC, .order = gord[i], .dirty = HDR};
    *at(off) = (block_hdr){.magic = BLOCK_MAGIC, .order = o};
    A->top = off + bsize;
    for (int i = 0; i < n; i++)
        insert_free(goff[i], gord[i], HDR);
    return off;
}

/* Every cached block back into the free lists, merged where it can be. */
static void flush_cache(void)
{
    arena_hdr *A = arena;
    for (unsigned o = MIN_ORDER; o <= MAX_ORDER; o++)
        while (A->cache_head[o]) {
            size_t off = A->cache_head[o];
            list_remove(&A->cache_head[o], off);
            A->cached -= (size_t)1 << o;
            insert_free(off, o, at(off)->dirty);
        }
}

/* A block of order o, taken out of the lists or carved (its header says BLOCK_MAGIC), and how far
 * its bytes may be non-zero; 0 when there is no room. */
static size_t take(unsigned o, uint64_t *dirty)
{
    arena_hdr *A = arena;
    size_t bsize = (size_t)1 << o;
    if (A->cache_head[o]) {
        size_t off = A->cache_head[o];
        list_remove(&A->cache_head[o], off);
        A->cached -= bsize;
        *dirty = at(off)->dirty;
        at(off)->magic = BLOCK_MAGIC;
        return off;
    }
    for (int pass = 0; pass < 2; pass++) {
        unsigned k = o;
        while (k <= MAX_ORDER && !A->free_head[k])
            k++;
        if (k <= MAX_ORDER) {
            size_t off = A->free_head[k];
            list_remove(&A->free_head[k], off);
            block_hdr *b = at(off);
            uint64_t d = b->dirty;
            /* Split down to o: the upper half's header first, then the lower's order, then its
             * dirty mark (which only narrows), so a rebuild sees a valid tiling throughout. */
            while (k > o) {
                k--;
                size_t half = (size_t)1 << k;
                uint64_t ud = d > half + HDR ? d - half : HDR;
                *at(off + half) = (block_hdr){.magic = FREE_MAGIC, .order = k, .dirty = ud};
                b->order = k;
                d = d < half ? d : half;
                b->dirty = d;
                list_push(&A->free_head[k], off + half);
            }
            b->magic = BLOCK_MAGIC;
            *dirty = d;
            return off;
        }
        size_t off = carve(o);
        if (off) {
            *dirty = HDR;
            return off;
        }
        if (pass == 0 && A->cached)
            flush_cache();
        else
            break;
    }
    return 0;
}

/* After a holder died: rebuild the lists and counts from the headers that tile the heap. */
static void rebuild(void)
{
    arena_hdr *A = arena;
    memset(A->free_head, 0, sizeof A->free_head);
    memset(A->cache_head, 0, sizeof A->cache_head);
    A->cached = 0;
    A->in_use = 0;
    if (A->carving > A->top) {
        /* Died carving: past top there may be headers of a carve that never happened. The region
         * becomes free blocks that may be dirty anywhere. */
        size_t goff[2 * MAX_ORDER + 2];
        unsigned gord[2 * MAX_ORDER + 2];
        int n = tiles(A->top, A->carving, goff, gord);
        for (int i = 0; i < n; i++)
            *at(goff[i]) =
                (block_hdr){.magic = FREE_MAGIC, .order = gord[i], .dirty = (uint64_t)1 << gord[i]};
        A->top = A->carving;
    }
    for (size_t off = A->heap; off < A->top;) {
        block_hdr *b = at(off);
        unsigned o = b->order;
        size_t bsize = (size_t)1 << (o <= MAX_ORDER ? o : 0);
        /* A header a program overwrote (an underflow): what lies past it stays unused. */
        if (o < MIN_ORDER || o > MAX_ORDER || ((off - A->heap) & (bsize - 1)) ||
            A->top - off < bsize)
            break;
        if (b->magic == FREE_MAGIC || b->magic == CACHED_MAGIC) {
            b->magic = FREE_MAGIC;
            list_push(&A->free_head[o], off);
        } else if (b->magic == BLOCK_MAGIC || b->magic == FREEING_MAGIC) {
            A->in_use += bsize;
        } else {
            break;
        }
        off += bsize;
    }
}

static void arena_lock(void)
{
    if (mproc__robust_lock(&arena->lock)) {
        rebuild();
        arena->rebuilds++;
    }
}

static void arena_unlock(void)
{
    pthread_mutex_unlock(&arena->lock);
}

static unsigned order_for(size_t total)
{
    unsigned o = MIN_ORDER;
    while (o <= MAX_ORDER && ((size_t)1 << o) < total)
        o++;
    return o;
}

/* Give back the pages of an owned block of two pages or more, past its header: afterwards only the
 * header is non-zero. */
static void release_pages(block_hdr *b, size_t bsize)
{
    memset((char *)b + HDR, 0, PAGE - HDR);
    madvise((char *)b + PAGE, bsize - PAGE, MADV_REMOVE);
}

int mproc__arena_alloc(void **out, size_t size)
{
    *out = NULL;
    if (size == 0) return -EINVAL;
    int r = mproc__arena_ensure();
    if (r < 0) return r;
    if (size > arena->size) return -ENOMEM;
    unsigned o = order_for(size + HDR);
    if (o > MAX_ORDER) return -ENOMEM;
    size_t bsize = (size_t)1 << o;
    uint64_t dirty;
    arena_lock();
    size_t off = take(o, &dirty);
    if (off) arena->in_use += bsize;
    arena_unlock();
    if (!off) return -ENOMEM;
    block_hdr *b = at(off);
    b->next = b->prev = b->dirty = 0;
    char *user = (char *)(b + 1);
    size_t z = (dirty < bsize ? dirty : bsize) - HDR; /* bytes past the header maybe non-zero */
    if (z > size) z = size;
    if (z > ZERO_MEMSET_MAX) {
        memset(user, 0, PAGE - HDR);
        size_t end = (HDR + z + PAGE - 1) & ~(size_t)(PAGE - 1);
        madvise((char *)b + PAGE, end - PAGE, MADV_REMOVE);
    } else if (z) {
        memset(user, 0, z);
    }
    *out = user;
    return 0;
}

void mproc__arena_free(void *ptr)
{
    if (!ptr || !arena) return;
    block_hdr *b = (block_hdr *)ptr - 1;
    /* A pointer from elsewhere, or a block already freed, is ignored rather than corrupting the
     * free lists of every process. */
    if (!mproc__arena_contains(b, sizeof *b) || ((uintptr_t)ptr & 63) ||
        __atomic_load_n(&b->magic, __ATOMIC_RELAXED) != BLOCK_MAGIC)
        return;
    arena_hdr *A = arena;
    unsigned o = b->order;
    size_t bsize = (size_t)1 << o, off = off_of(b);
    arena_lock();
    if (b->magic != BLOCK_MAGIC) { /* a double free racing with the first */
        arena_unlock();
        return;
    }
    if (bsize <= CACHE_BLOCK_MAX && A->cache_max - A->cached >= bsize) {
        b->dirty = bsize;
        b->magic = CACHED_MAGIC;
        list_push(&A->cache_head[o], off);
        A->cached += bsize;
        A->in_use -= bsize;
        arena_unlock();
        return;
    }
    uint64_t dirty = bsize;
    if (bsize >= 2 * PAGE) {
        /* Outside the lock: the block is still ours, marked so that a second free leaves it. */
        b->magic = FREEING_MAGIC;
        arena_unlock();
        release_pages(b, bsize);
        dirty = HDR;
        arena_lock();
    }
    insert_free(off, o, dirty);
    A->in_use -= bsize; /* counted until now: a rebuild meanwhile counts a FREEING block too */
    arena_unlock();
}

void mproc__arena_trim(void)
{
    if (!arena) return;
    arena_hdr *A = arena;
    arena_lock();
    for (unsigned o = MIN_ORDER; o <= MAX_ORDER; o++)
        while (A->cache_head[o]) {
            size_t off = A->cache_head[o], bsize = (size_t)1 << o;
            list_remove(&A->cache_head[o], off);
            A->cached -= bsize;
            uint64_t dirty = at(off)->dirty;
            if (bsize >= 2 * PAGE) {
                at(off)->magic = FREEING_MAGIC;
                A->in_use += bsize; /* counted as in use while out of every list */
                arena_unlock();
                release_pages(at(off), bsize);
                dirty = HDR;
                arena_lock();
                A->in_use -= bsize;
            }
            insert_free(off, o, dirty);
        }
    arena_unlock();
}

size_t mproc__arena_usable(const void *ptr)
{
    const block_hdr *b = (const block_hdr *)ptr - 1;
    return ((size_t)1 << b->order) - sizeof *b;
}

void *mproc__arena_root(int id, size_t size, void (*init)(void *obj))
{
    if (id < 0 || id >= MPROC__ARENA_ROOT_COUNT || mproc__arena_ensure() < 0) return NULL;
    void *v = __atomic_load_n(&arena->roots[id], __ATOMIC_ACQUIRE);
    if (v || size == 0) return v;
    void *mine;
    if (mproc__arena_alloc(&mine, size) < 0) return NULL;
    if (init) init(mine);
    /* Whoever publishes first wins; a loser's block was never seen by anyone. */
    if (__atomic_compare_exchange_n(&arena->roots[id], &v, mine, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return mine;
    mproc__arena_free(mine);
    return v;
}

void mproc__arena_get_stats(mproc__arena_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!arena) return;
    arena_lock();
    st->mapped = arena->size;
    st->top = arena->top;
    st->in_use = arena->in_use;
    st->cached = arena->cached;
    st->rebuilds = arena->rebuilds;
    arena_unlock();
}

/* Whether the blocks in a list are free (or cached) blocks of its order, n of them. */
static int check_list(uint64_t head, uint32_t magic, unsigned o, size_t *n)
{
    for (uint64_t off = head, prev = 0; off; prev = off, off = at(off)->next, (*n)++) {
        const block_hdr *b = at(off);
        if (off < arena->heap || off >= arena->top || b->magic != magic || b->order != o ||
            b->prev != prev || *n > arena->size / 128)
            return -EIO;
    }
    return 0;
}

int mproc__arena_check(void)
{
    if (!arena) return 0;
    arena_hdr *A = arena;
    arena_lock();
    int r = 0;
    size_t in_use = 0, cached = 0, nfree = 0, ncached = 0, listed = 0;
    for (size_t off = A->heap; r == 0 && off < A->top;) {
        const block_hdr *b = at(off);
        unsigned o = b->order;
        size_t bsize = (size_t)1 << (o <= MAX_ORDER ? o : 0);
        if (o < MIN_ORDER || o > MAX_ORDER || ((off - A->heap) & (bsize - 1)) ||
            A->top - off < bsize) {
            r = -EIO;
            break;
        }
        if (b->magic == BLOCK_MAGIC || b->magic == FREEING_MAGIC)
            in_use += bsize;
        else if (b->magic == CACHED_MAGIC)
            cached += bsize, ncached++;
        else if (b->magic == FREE_MAGIC)
            nfree++;
        else
            r = -EIO;
        off += bsize;
    }
    for (unsigned o = MIN_ORDER; r == 0 && o <= MAX_ORDER; o++) {
        size_t n = 0;
        r = check_list(A->free_head[o], FREE_MAGIC, o, &n);
        listed += n;
        n = 0;
        if (r == 0) r = check_list(A->cache_head[o], CACHED_MAGIC, o, &n);
        ncached -= n;
    }
    if (r == 0 && (in_use != A->in_use || cached != A->cached || ncached || listed != nfree))
        r = -EIO;
    arena_unlock();
    return r;
}

/* Public face of the allocator. */
void *mproc_shared_alloc(size_t size)
{
    void *p;
    int r = mproc__arena_alloc(&p, size);
    if (r < 0) errno = -r;
    return p;
}

void mproc_shared_free(void *ptr)
{
    mproc__arena_free(ptr);
}

int mproc_shared_trim(void)
{
    mproc__arena_trim();
    return 0;
}

size_t mproc_shared_size(const void *ptr)
{
    /* The header is read only once it is known to lie inside the mapping: a stack or heap
     * pointer, or one into the middle of a block, must not fault or read garbage. */
    const block_hdr *b = ptr ? (const block_hdr *)ptr - 1 : NULL;
    if (!b || !mproc__arena_contains(b, sizeof *b) || ((uintptr_t)ptr & 63) ||
        __atomic_load_n(&b->magic, __ATOMIC_RELAXED) != BLOCK_MAGIC) {
        errno = EINVAL;
        return 0;
    }
    return mproc__arena_usable(ptr);
}
