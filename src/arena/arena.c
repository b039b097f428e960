/* Allocator: a buddy system over the arena, with a small cache of recently freed blocks.
 *
 * Blocks are powers of two from 128 bytes, aligned to their size relative to the heap start, and
 * carved lazily from the never-used top. A freed block merges with its buddy (the other half of
 * the block of twice its size) whenever that buddy is free too, so space freed in one size class
 * serves any other. A request of up to 2 KiB (header included), or of a power of two, takes one
 * such block; any other takes a span: the run of aligned blocks that tiles the request rounded up
 * to 128 bytes (to a page from 64 KiB on), e.g. 64 MiB + 64 B of header -> one 64 MiB block and one
 * 128 B block, not a 128 MiB block. Its first header records the span, so the heap walk and free()
 * see one block; free() gives back each aligned piece, which merges with its buddy as usual. A span
 * is placed where the last one ended or the last large one was freed, else at the start of a free
 * block large enough alone, else at a free run starting at a somewhat smaller block, else at the
 * top (right after the last block, so spans of one size pack tight), else after merging the cache,
 * else anywhere a walk of the heap finds a free run.
 *
 * Before merging, frees go to a cache (LIFO lists by the order a size rounds up to, a request
 * taking a block of exactly its length from the newest few, bounded in bytes): a block that comes
 * back keeps its pages, so a message size that keeps coming and going is neither merged and split
 * again nor faulted in again. A freed block of two pages or more that does not fit the cache gives
 * its pages back to the kernel (MADV_REMOVE), so a large message that came and went costs no
 * memory; each free block remembers how far its bytes may be non-zero, so an allocation zeroes
 * only that.
 *
 * A span's inner bytes are the program's, yet a neighbour's buddy may lie among them: every header
 * carries a key (its offset mixed with the arena's seed), and a merge trusts only a header whose
 * key matches.
 *
 * Crash safety: the allocator's state is changed under a robust mutex. The free lists are
 * rebuilt from the blocks themselves when a holder died: the heap below `top` is always tiled by
 * block headers (each header and `top` are written in an order that keeps the tiling valid at
 * every store: a span's extra pieces get their headers while still inside a block no walk enters,
 * and the first header's span changes in one store), so the next locker walks it and puts every
 * free block back, under a new seed (a header the dead holder left where no block starts stops
 * looking valid); at worst the dead holder's blocks leak. */
#include "arena/arena.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/robust.h"

#define ARENA_MAGIC 0x6d70726f63617265ULL /* "mprocare" */
#define BLOCK_MAGIC 0x6d70626bU           /* allocated */
#define FREE_MAGIC 0x66726565U            /* free, in free_head[order] */
#define CACHED_MAGIC 0x63616368U          /* free, in cache_head[order_for(span)] */
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
/* Allocations of more than this (header included) are spans of what they need; of at least
 * SPAN_PAGE_MIN, of whole pages (so that MADV_REMOVE gives back all of them). */
#define SPAN_MIN ((size_t)2048)
#define SPAN_PAGE_MIN ((size_t)16 * PAGE)

/* A whole cache line, so that every object starts on a line of its own: two locks allocated one
 * after the other never share a line (no false sharing between processes), and code that wants
 * cache-line alignment for its own fields gets it. */
typedef struct {
    _Alignas(64) uint32_t magic;
    uint32_t order;      /* free: the block's order; otherwise the first piece's (its alignment) */
    uint64_t next, prev; /* offsets of the neighbours in its list, while free (0: none) */
    uint64_t dirty; /* while free or cached: bytes from the block's start that may be non-zero */
    uint64_t span;  /* allocated, being freed or cached: bytes the block covers from here */
    uint64_t key;   /* its offset mixed with the arena's seed: a header, not bytes like one */
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
    uint64_t seed;   /* mixed into every header's key; changed by a rebuild */
    size_t hint;     /* where the next span is tried first: past the last one, or the last freed */
    uint64_t free_head[MAX_ORDER + 1];
    uint64_t cache_head[MAX_ORDER + 1];
    void *roots[MPROC__ARENA_ROOT_COUNT];
} arena_hdr;

static char *arena_base;
static arena_hdr *arena;
/* The memfd behind the mapping, kept open (close-on-exec) so that a manager can hand the arena to
 * a process outside the family (manager/share.c); -1 in a process that adopted its arena. */
static int arena_fd = -1;
static bool adopted;
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

/* A new seed: a header written under an old one (left behind by a holder that died) stops
 * looking valid. */
static uint64_t next_seed(uint64_t s)
{
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return s ^ (s >> 29);
}

/* Where to ask for the arena: a process outside the family that adopts it (manager/share.c) must
 * find the same addresses free in its own layout, and the kernel puts every process's mmap area
 * (libraries, thread stacks, malloc's large blocks) at a random base in the terabyte below the
 * stack, so an arena placed there by default collides with another process's mappings about once
 * in a hundred. On x86-64 nothing of a default layout lies between the program and heap (around
 * 0x55..-0x56..) and that terabyte (0x7e..-0x7f..): the arena goes at a random page of
 * [0x6000_0000_0000, 0x7000_0000_0000) instead, still randomised (32 bits), a hint the kernel
 * ignores when the range is taken. ThreadSanitizer keeps its traces there and drops a hint outside
 * its application ranges: under it the arena goes at a random page of
 * [0x0010_0000_0000, 0x0070_0000_0000), in its low application range (below 0x0080_0000_0000),
 * where a PIE program maps nothing (at the default place a TSan CI run saw the collision). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ARENA_TSAN_RANGE 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define ARENA_TSAN_RANGE 1
#endif
#if !defined(__x86_64__)
#define ARENA_NO_HINT 1
#endif
static void *place_hint(size_t size)
{
#ifdef ARENA_NO_HINT
    (void)size;
    return NULL;
#else
#ifdef ARENA_TSAN_RANGE
    const uint64_t lo = 0x001000000000ULL, hi = 0x007000000000ULL;
#else
    const uint64_t lo = 0x600000000000ULL, hi = 0x700000000000ULL;
#endif
    if (size >= (hi - lo) / 2) return NULL;
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = next_seed((uint64_t)getpid() ^ (uint64_t)(uintptr_t)&r);
    uint64_t pages = (hi - lo - size) / PAGE;
    return (void *)(uintptr_t)(lo + (r % pages) * PAGE);
#endif
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
    void *m =
        mmap(place_hint(size), size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        close(fd);
        return -e;
    }
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
    h->seed = next_seed((uint64_t)(uintptr_t)m ^ ((uint64_t)getpid() << 32) ^ ARENA_MAGIC);
    arena_fd = fd;
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

int mproc__arena_share_fd(void)
{
    return __atomic_load_n(&arena, __ATOMIC_ACQUIRE) ? arena_fd : -1;
}

int mproc__arena_adopted(void)
{
    return mproc__arena_ready() && adopted;
}

size_t mproc__arena_size(void)
{
    return __atomic_load_n(&arena, __ATOMIC_ACQUIRE) ? mproc__arena_len : 0;
}

int mproc__arena_adopt(int fd, size_t size, void *base)
{
    if (size < (size_t)1 << 20 || (size & (PAGE - 1)) || ((uintptr_t)base & (PAGE - 1)))
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if ((uint64_t)st.st_size < size) return -EINVAL;
    pthread_mutex_lock(&create_mu);
    if (arena) {
        pthread_mutex_unlock(&create_mu);
        return -EALREADY;
    }
    /* Arena objects hold absolute pointers (the roots, a dict's buckets): only the same address
     * will do, and nothing of this process may be moved out of its way. */
    void *m = mmap(base, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE | MAP_FIXED_NOREPLACE, fd, 0);
    int r = 0;
    if (m == MAP_FAILED) {
        r = errno == EEXIST ? -EADDRINUSE : -errno;
    } else if (m != base) { /* a kernel before 4.17 takes the flag as a hint */
        munmap(m, size);
        r = -EADDRINUSE;
    } else {
        const arena_hdr *h = m;
        if (h->magic != ARENA_MAGIC || h->size != size) {
            munmap(m, size);
            r = -EPROTO;
        }
    }
    if (r == 0) {
        adopted = true;
        arena_base = m;
        mproc__arena_lo = m;
        mproc__arena_len = size;
        __atomic_store_n(&arena, (arena_hdr *)m, __ATOMIC_RELEASE);
    }
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

static uint64_t key_of(size_t off)
{
    return (uint64_t)off ^ arena->seed;
}

static size_t pow2(unsigned o)
{
    return (size_t)1 << o;
}

/* How many bytes the block whose header is at off covers: a free block its order's size, any
 * other (allocated, cached, being freed) its span, which may be several aligned blocks in a row.
 * 0 when the header is not one this heap could hold (a program overwrote it). */
static size_t extent(size_t off)
{
    arena_hdr *A = arena;
    const block_hdr *b = at(off);
    unsigned o = b->order;
    if (o < MIN_ORDER || o > MAX_ORDER || ((off - A->heap) & (pow2(o) - 1))) return 0;
    size_t len = b->magic == FREE_MAGIC ? pow2(o) : b->span;
    if (len < pow2(MIN_ORDER) || (len & (pow2(MIN_ORDER) - 1)) || A->top - off < len) return 0;
    return len;
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
 * buddy is free and whole. dirty: how far its bytes may be non-zero. Returns where the merged
 * block starts. */
static size_t insert_free(size_t off, unsigned o, uint64_t dirty)
{
    arena_hdr *A = arena;
    block_hdr *b = at(off);
    b->dirty = dirty;
    b->order = o;
    b->key = key_of(off);
    b->magic = FREE_MAGIC; /* from here a rebuild would find it, wherever it is */
    while (o < MAX_ORDER) {
        size_t half = pow2(o);
        size_t buddy = A->heap + ((off - A->heap) ^ half);
        /* Below top the heap is tiled, so the buddy's offset starts a block or lies inside a
         * span (an allocation of several blocks in a row, whose inner bytes are the program's):
         * it is our buddy only if a valid header says it is free and of our order. */
        if (buddy >= A->top || A->size - buddy < half) break;
        block_hdr *bb = at(buddy);
        if (bb->magic != FREE_MAGIC || bb->order != o || bb->key != key_of(buddy)) break;
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
    return off;
}

/* The aligned blocks that tile [from, to) of the heap, largest first where alignment allows: at
 * most two per order, no two of them buddies. Returns how many. */
#define MAX_TILES (2 * MAX_ORDER + 2)
static int tiles(size_t from, size_t to, size_t *off, unsigned *order)
{
    int n = 0;
    while (from < to) {
        size_t rel = from - arena->heap;
        unsigned k = MIN_ORDER;
        while (k < MAX_ORDER && !(rel & pow2(k)) && to - from >= pow2(k + 1))
            k++;
        off[n] = from;
        order[n++] = k;
        from += pow2(k);
    }
    return n;
}

/* How far a piece at `rel` bytes into a region, `size` bytes long, may be non-zero when the
 * region may be non-zero up to `dirty`: at least its header. */
static uint64_t piece_dirty(uint64_t dirty, size_t rel, size_t size)
{
    if (dirty <= rel + HDR) return HDR;
    return dirty - rel < size ? dirty - rel : size;
}

/* Carve [top, to) into aligned blocks marked as being freed (each a block of its own, so a
 * rebuild counts them in use: at worst they leak), headers first and then top, so a rebuild never
 * walks into a header not yet written; `carving` tells a rebuild after a death mid-carve which
 * bytes past top may hold stray headers. The caller turns them into what it wants. */
static void grow(size_t to)
{
    arena_hdr *A = arena;
    size_t off[MAX_TILES];
    unsigned ord[MAX_TILES];
    int n = tiles(A->top, to, off, ord);
    A->carving = to;
    for (int i = 0; i < n; i++)
        *at(off[i]) = (block_hdr){.magic = FREEING_MAGIC,
                                  .order = ord[i],
                                  .dirty = HDR,
                                  .span = pow2(ord[i]),
                                  .key = key_of(off[i])};
    A->top = to;
}

/* Carve a block of order o at the top: the gap before its aligned start becomes free blocks. */
static size_t carve(unsigned o)
{
    arena_hdr *A = arena;
    size_t bsize = pow2(o);
    size_t rel = ((A->top - A->heap) + bsize - 1) & ~(bsize - 1);
    if (rel > A->size - A->heap || A->size - A->heap - rel < bsize) return 0;
    size_t off = A->heap + rel, from = A->top;
    grow(off + bsize);
    at(off)->magic = BLOCK_MAGIC;
    size_t goff[MAX_TILES];
    unsigned gord[MAX_TILES];
    int n = tiles(from, off, goff, gord);
    for (int i = 0; i < n; i++)
        insert_free(goff[i], gord[i], HDR);
    return off;
}

/* The allocated (or being freed, or cached, already out of its list) span at off, `dirty` bytes
 * of it maybe non-zero, back into the free lists as the aligned blocks that tile it, each merged
 * where it can be. The inner pieces' headers are written first, as being freed (a merge never
 * takes one before it is in its list), then the first header shrinks to its own piece, so the
 * heap stays tiled at every store. Returns where the first piece ended up after merging. */
static size_t span_to_free(size_t s, size_t len, uint64_t dirty)
{
    size_t off[MAX_TILES];
    unsigned ord[MAX_TILES];
    int n = tiles(s, s + len, off, ord);
    for (int i = 1; i < n; i++)
        *at(off[i]) = (block_hdr){.magic = FREEING_MAGIC,
                                  .order = ord[i],
                                  .dirty = piece_dirty(dirty, off[i] - s, pow2(ord[i])),
                                  .span = pow2(ord[i]),
                                  .key = key_of(off[i])};
    block_hdr *b = at(s);
    b->order = ord[0];
    b->span = pow2(ord[0]);
    size_t first = insert_free(s, ord[0], piece_dirty(dirty, 0, pow2(ord[0])));
    for (int i = 1; i < n; i++)
        insert_free(off[i], ord[i], at(off[i])->dirty);
    return first;
}

/* Every cached block back into the free lists, merged where it can be. */
static void flush_cache(void)
{
    arena_hdr *A = arena;
    for (unsigned o = MIN_ORDER; o <= MAX_ORDER; o++)
        while (A->cache_head[o]) {
            size_t off = A->cache_head[o], len = at(off)->span;
            list_remove(&A->cache_head[o], off);
            A->cached -= len;
            span_to_free(off, len, at(off)->dirty);
        }
}

/* The order of the smallest block of at least total bytes; MAX_ORDER + 1 when there is none. */
static unsigned order_for(size_t total)
{
    if (total <= pow2(MIN_ORDER)) return MIN_ORDER;
    unsigned o = 64 - (unsigned)__builtin_clzll((unsigned long long)(total - 1));
    return o <= MAX_ORDER ? o : MAX_ORDER + 1;
}

/* A cached block of exactly len bytes, looked for among the newest few of its class (which holds
 * every length that rounds up to the same power of two); 0 when none. */
#define CACHE_LOOK 8
static size_t cache_take(unsigned k, size_t len, uint64_t *dirty)
{
    arena_hdr *A = arena;
    uint64_t *head = &A->cache_head[k];
    size_t off = *head;
    for (int i = 0; off && i < CACHE_LOOK; i++, off = at(off)->next) {
        block_hdr *b = at(off);
        if (b->span != len) continue;
        list_remove(head, off);
        A->cached -= len;
        *dirty = b->dirty;
        b->magic = BLOCK_MAGIC;
        return off;
    }
    return 0;
}

/* A block of order o, taken out of the lists or carved (its header says BLOCK_MAGIC), and how far
 * its bytes may be non-zero; 0 when there is no room. */
static size_t take(unsigned o, uint64_t *dirty)
{
    arena_hdr *A = arena;
    size_t off = cache_take(o, pow2(o), dirty);
    if (off) return off;
    for (int pass = 0; pass < 2; pass++) {
        unsigned k = o;
        while (k <= MAX_ORDER && !A->free_head[k])
            k++;
        if (k <= MAX_ORDER) {
            off = A->free_head[k];
            list_remove(&A->free_head[k], off);
            block_hdr *b = at(off);
            uint64_t d = b->dirty;
            /* Split down to o: the upper half's header first, then the lower's order, then its
             * dirty mark (which only narrows), so a rebuild sees a valid tiling throughout. */
            while (k > o) {
                k--;
                size_t half = pow2(k);
                *at(off + half) = (block_hdr){.magic = FREE_MAGIC,
                                              .order = k,
                                              .dirty = piece_dirty(d, half, half),
                                              .key = key_of(off + half)};
                b->order = k;
                d = d < half ? d : half;
                b->dirty = d;
                list_push(&A->free_head[k], off + half);
            }
            b->span = pow2(o); /* before the magic: an allocated block's extent is its span */
            b->magic = BLOCK_MAGIC;
            *dirty = d;
            return off;
        }
        off = carve(o);
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

/* Whether [s, s + len) is free: the blocks from s on are free up to its end (the last may reach
 * past it), or, with `grow_ok`, up to top, past which the arena has room. s must start a block
 * (or be top); a stale or forged header fails its key. */
static bool run_free(size_t s, size_t len, bool grow_ok)
{
    arena_hdr *A = arena;
    if (s < A->heap || s > A->top || ((s - A->heap) & (pow2(MIN_ORDER) - 1)) || len > A->size ||
        A->size - len < s)
        return false;
    for (size_t p = s; p < s + len;) {
        if (p == A->top) return grow_ok;
        const block_hdr *b = at(p);
        if (b->magic != FREE_MAGIC || b->key != key_of(p)) return false;
        size_t n = extent(p);
        if (!n) return false;
        p += n;
    }
    return true;
}

/* Make [s, s + len) one allocated span, run_free having said it may (or s at or past top, with
 * room). Past top it is carved first (the gap before s becomes free blocks). The blocks it covers
 * leave their lists and are marked as being freed (each still a block of its own, so a rebuild
 * counts them in use), the part of the last one past the span gets its own headers (inside that
 * block, where no walk looks yet), then the first header's span takes in the run, and only then
 * are the inner headers wiped (bytes of the span now) and the leftover put back. Returns how far
 * the span's bytes may be non-zero. */
static uint64_t claim(size_t s, size_t len)
{
    arena_hdr *A = arena;
    size_t end = s + len, from = A->top;
    size_t goff[MAX_TILES], toff[MAX_TILES];
    unsigned gord[MAX_TILES], tord[MAX_TILES];
    int ng = 0, nt = 0;
    if (end > from) {
        if (s > from) ng = tiles(from, s, goff, gord);
        grow(end);
    }
    uint64_t dirty = HDR;
    size_t p = s;
    while (p < end) {
        block_hdr *b = at(p);
        size_t n = pow2(b->order);
        uint64_t d = b->dirty;
        if (b->magic == FREE_MAGIC) {
            list_remove(&A->free_head[b->order], p);
            b->span = n; /* before the magic: a block being freed extends over its span */
            b->magic = FREEING_MAGIC;
        }
        size_t inside = end - p < n ? end - p : n;
        uint64_t dd = d < inside ? d : inside;
        /* An inner header is wiped below, so a piece clean past it adds nothing. */
        if ((p == s || dd > HDR) && p - s + dd > dirty) dirty = p - s + dd;
        if (p + n > end) {
            nt = tiles(end, p + n, toff, tord);
            for (int i = 0; i < nt; i++)
                *at(toff[i]) = (block_hdr){.magic = FREEING_MAGIC,
                                           .order = tord[i],
                                           .dirty = piece_dirty(d, toff[i] - p, pow2(tord[i])),
                                           .span = pow2(tord[i]),
                                           .key = key_of(toff[i])};
        }
        p += n;
    }
    block_hdr *b = at(s);
    size_t first = pow2(b->order);
    b->span = len;
    b->magic = BLOCK_MAGIC;
    for (p = s + first; p < end;) {
        size_t n = pow2(at(p)->order);
        memset(at(p), 0, HDR);
        p += n;
    }
    for (int i = 0; i < nt; i++)
        insert_free(toff[i], tord[i], at(toff[i])->dirty);
    for (int i = 0; i < ng; i++)
        insert_free(goff[i], gord[i], HDR);
    A->hint = end;
    return dirty;
}

/* Where a span of len bytes can go, without carving: after the last span or where the last freed
 * one was, at the start of a free block large enough alone, or at a free block of up to 8 times
 * less followed by enough free ones (any free run of len bytes holds such a block, as free
 * buddies merge). 0: nowhere. */
#define RUN_LOOK 16
static size_t find_run(size_t len)
{
    arena_hdr *A = arena;
    if (A->hint && run_free(A->hint, len, false)) return A->hint;
    unsigned k = order_for(len);
    for (unsigned j = k; j <= MAX_ORDER; j++)
        if (A->free_head[j]) return A->free_head[j];
    for (unsigned j = k - 1; j + 3 >= k && j >= MIN_ORDER; j--) {
        size_t off = A->free_head[j];
        for (int i = 0; off && i < RUN_LOOK; i++, off = at(off)->next)
            if (run_free(off, len, false)) return off;
    }
    return 0;
}

/* The last resort: walk the whole heap for a free run of len bytes (one ending at top may carve
 * the rest). 0: none. */
static size_t walk_for_run(size_t len)
{
    arena_hdr *A = arena;
    size_t run = 0;
    for (size_t off = A->heap; off < A->top;) {
        size_t n = extent(off);
        if (!n) return 0;
        if (at(off)->magic == FREE_MAGIC) {
            if (!run) run = off;
            if (off + n - run >= len) return run;
        } else {
            run = 0;
        }
        off += n;
    }
    return run && run_free(run, len, true) ? run : 0;
}

/* A span of len bytes (a multiple of the smallest block; of a page for large ones): a run of
 * aligned blocks, so an allocation takes what it needs rather than the next power of two.
 * Returns its offset and how far it may be non-zero, or 0. */
static size_t take_span(size_t len, uint64_t *dirty)
{
    arena_hdr *A = arena;
    if (order_for(len) > MAX_ORDER) return 0;
    size_t off = cache_take(order_for(len), len, dirty);
    if (off) return off;
    for (int pass = 0; pass < 2; pass++) {
        off = find_run(len);
        if (!off) {
            /* Carve at the top: right after the last block, so spans of one size pack tight
             * (a 4 KiB message no longer takes 8 KiB); a large one on a page, for MADV_REMOVE. */
            size_t align = len >= SPAN_PAGE_MIN ? PAGE : pow2(MIN_ORDER);
            size_t rel = ((A->top - A->heap) + align - 1) & ~(align - 1);
            if (rel <= A->size - A->heap && A->size - A->heap - rel >= len) off = A->heap + rel;
        }
        if (off) {
            *dirty = claim(off, len);
            return off;
        }
        if (pass == 0 && A->cached)
            flush_cache();
        else
            break;
    }
    off = walk_for_run(len);
    if (off) *dirty = claim(off, len);
    return off;
}

/* After a holder died: rebuild the lists and counts from the headers that tile the heap, under a
 * new seed (every header the walk finds gets its new key, so one the dead holder left where no
 * block starts stops counting as one). A cached span goes back as the blocks that tile it. */
static void rebuild(void)
{
    arena_hdr *A = arena;
    memset(A->free_head, 0, sizeof A->free_head);
    memset(A->cache_head, 0, sizeof A->cache_head);
    A->cached = 0;
    A->in_use = 0;
    A->hint = 0;
    A->seed = next_seed(A->seed);
    if (A->carving > A->top) {
        /* Died carving: past top there may be headers of a carve that never happened. The region
         * becomes free blocks that may be dirty anywhere. */
        size_t goff[MAX_TILES];
        unsigned gord[MAX_TILES];
        int n = tiles(A->top, A->carving, goff, gord);
        for (int i = 0; i < n; i++)
            *at(goff[i]) = (block_hdr){.magic = FREE_MAGIC,
                                       .order = gord[i],
                                       .dirty = pow2(gord[i]),
                                       .key = key_of(goff[i])};
        A->top = A->carving;
    }
    for (size_t off = A->heap; off < A->top;) {
        block_hdr *b = at(off);
        size_t len = extent(off);
        /* A header a program overwrote (an underflow): what lies past it stays unused. */
        if (!len) break;
        if (b->magic == CACHED_MAGIC) {
            /* Inner pieces first (no walk sees them yet), then the first shrinks to its own. */
            size_t toff[MAX_TILES];
            unsigned tord[MAX_TILES];
            int n = tiles(off, off + len, toff, tord);
            for (int i = 1; i < n; i++)
                *at(toff[i]) = (block_hdr){.magic = FREE_MAGIC,
                                           .order = tord[i],
                                           .dirty = pow2(tord[i]),
                                           .key = key_of(toff[i])};
            b->order = tord[0];
            b->dirty = pow2(tord[0]);
            b->magic = FREE_MAGIC;
            len = pow2(tord[0]);
        }
        if (b->magic == FREE_MAGIC) {
            b->key = key_of(off);
            list_push(&A->free_head[b->order], off);
        } else if (b->magic == BLOCK_MAGIC || b->magic == FREEING_MAGIC) {
            b->key = key_of(off);
            A->in_use += len;
        } else {
            break;
        }
        off += len;
    }
}

static void arena_lock(void)
{
    if (mproc__robust_lock(&arena->lock)) {
        rebuild();
        arena->rebuilds++;
    }
}

pthread_mutex_t *mproc__arena_mutex(void)
{
    return mproc__arena_ensure() == 0 ? &arena->lock : NULL;
}

static void arena_unlock(void)
{
    pthread_mutex_unlock(&arena->lock);
}

/* Give the pages wholly inside [p, p + n) back to the kernel and zero the bytes around them. */
static void drop_range(char *p, size_t n)
{
    char *end = p + n;
    char *lo = (char *)(((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    char *hi = (char *)((uintptr_t)end & ~(uintptr_t)(PAGE - 1));
    if (lo >= hi) {
        memset(p, 0, n);
        return;
    }
    memset(p, 0, (size_t)(lo - p));
    madvise(lo, (size_t)(hi - lo), MADV_REMOVE);
    memset(hi, 0, (size_t)(end - hi));
}

/* Give back the pages of an owned block of two pages or more, past its header: afterwards only the
 * header is non-zero. */
static void release_pages(block_hdr *b, size_t len)
{
    drop_range((char *)(b + 1), len - HDR);
}

int mproc__arena_alloc(void **out, size_t size)
{
    *out = NULL;
    if (size == 0) return -EINVAL;
    int r = mproc__arena_ensure();
    if (r < 0) return r;
    if (size > arena->size) return -ENOMEM;
    size_t total = size + HDR, len;
    unsigned o = order_for(total);
    if (o > MAX_ORDER) return -ENOMEM;
    /* Small blocks stay powers of two (rounding wastes under a kilobyte, and they are split and
     * merged the fastest); larger ones are spans of what they need. */
    if (total <= SPAN_MIN)
        len = pow2(o);
    else if (total < SPAN_PAGE_MIN)
        len = (total + pow2(MIN_ORDER) - 1) & ~(pow2(MIN_ORDER) - 1);
    else
        len = (total + PAGE - 1) & ~(size_t)(PAGE - 1);
    /* A span of a power of two is that block itself, aligned: a page-sized one then sits on one
     * page rather than straddling two. */
    bool plain = len == pow2(o);
    uint64_t dirty;
    arena_lock();
    size_t off = plain ? take(o, &dirty) : take_span(len, &dirty);
    if (off) arena->in_use += len;
    arena_unlock();
    if (!off) return -ENOMEM;
    block_hdr *b = at(off);
    b->next = b->prev = b->dirty = 0;
    char *user = (char *)(b + 1);
    size_t z = (dirty < len ? dirty : len) - HDR; /* bytes past the header maybe non-zero */
    if (z > size) z = size;
    if (z > ZERO_MEMSET_MAX)
        drop_range(user, z);
    else if (z)
        memset(user, 0, z);
    *out = user;
    return 0;
}

/* The allocated block whose user bytes start at ptr, or NULL: a pointer from elsewhere, into a
 * block's middle, or to a block already freed is refused rather than read as a header. Under the
 * lock it is exact (the key is checked too); without, a quick filter. */
static block_hdr *live_block(const void *ptr, bool locked)
{
    block_hdr *b = ptr ? (block_hdr *)ptr - 1 : NULL;
    if (!b || !mproc__arena_contains(b, sizeof *b) || ((uintptr_t)ptr & 63) ||
        __atomic_load_n(&b->magic, __ATOMIC_RELAXED) != BLOCK_MAGIC)
        return NULL;
    if (locked) {
        size_t off = off_of(b);
        if (off < arena->heap || off >= arena->top || b->key != key_of(off) || !extent(off))
            return NULL;
    }
    return b;
}

void mproc__arena_free(void *ptr)
{
    if (!arena) return;
    block_hdr *b = live_block(ptr, false);
    if (!b) return;
    arena_hdr *A = arena;
    size_t off = off_of(b);
    arena_lock();
    if (!live_block(ptr, true)) { /* a double free racing with the first, or not a block */
        arena_unlock();
        return;
    }
    size_t len = b->span;
    if (len <= CACHE_BLOCK_MAX && A->cache_max - A->cached >= len) {
        b->dirty = len;
        b->magic = CACHED_MAGIC;
        list_push(&A->cache_head[order_for(len)], off);
        A->cached += len;
        A->in_use -= len;
        arena_unlock();
        return;
    }
    uint64_t dirty = len;
    if (len >= 2 * PAGE) {
        /* Outside the lock: the block is still ours, marked so that a second free leaves it. */
        b->magic = FREEING_MAGIC;
        arena_unlock();
        release_pages(b, len);
        dirty = HDR;
        arena_lock();
    }
    size_t first = span_to_free(off, len, dirty);
    /* A large span's space is where the next large one looks first. */
    if (len > SPAN_MIN) A->hint = first;
    A->in_use -= len; /* counted until now: a rebuild meanwhile counts a FREEING block too */
    arena_unlock();
}

void mproc__arena_trim(void)
{
    if (!arena) return;
    arena_hdr *A = arena;
    arena_lock();
    for (unsigned o = MIN_ORDER; o <= MAX_ORDER; o++)
        while (A->cache_head[o]) {
            size_t off = A->cache_head[o], len = at(off)->span;
            list_remove(&A->cache_head[o], off);
            A->cached -= len;
            uint64_t dirty = at(off)->dirty;
            if (len >= 2 * PAGE) {
                at(off)->magic = FREEING_MAGIC;
                A->in_use += len; /* counted as in use while out of every list */
                arena_unlock();
                release_pages(at(off), len);
                dirty = HDR;
                arena_lock();
                A->in_use -= len;
            }
            span_to_free(off, len, dirty);
        }
    arena_unlock();
}

size_t mproc__arena_usable(const void *ptr)
{
    const block_hdr *b = (const block_hdr *)ptr - 1;
    return b->span - sizeof *b;
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

/* Whether the blocks in a list are free (or cached) blocks of its class, n of them: a free list
 * holds one order, a cache list every span that rounds up to its order. */
static int check_list(uint64_t head, uint32_t magic, unsigned o, size_t *n)
{
    for (uint64_t off = head, prev = 0; off; prev = off, off = at(off)->next, (*n)++) {
        const block_hdr *b = at(off);
        if (off < arena->heap || off >= arena->top || b->magic != magic || b->prev != prev ||
            *n > arena->size / 128 || !extent(off) ||
            (magic == FREE_MAGIC ? b->order : order_for(b->span)) != o)
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
        size_t len = extent(off);
        if (!len || b->key != key_of(off)) {
            r = -EIO;
            break;
        }
        if (b->magic == BLOCK_MAGIC || b->magic == FREEING_MAGIC)
            in_use += len;
        else if (b->magic == CACHED_MAGIC)
            cached += len, ncached++;
        else if (b->magic == FREE_MAGIC)
            nfree++;
        else
            r = -EIO;
        off += len;
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
    if (!arena || !live_block(ptr, false)) {
        errno = EINVAL;
        return 0;
    }
    return mproc__arena_usable(ptr);
}
