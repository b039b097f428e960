/* Allocator: power-of-two size classes with one free list per class, carved by a bump pointer.
 * Every mutation of allocator state is a single store made under a robust mutex, so a process
 * killed while holding the mutex leaves the state consistent (at worst one block leaks).
 * Freed blocks of two pages or more give their pages back to the kernel (MADV_REMOVE), so a
 * large message that came and went costs no memory afterwards. */
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
#define BLOCK_MAGIC 0x6d70626bU
#define FREE_MAGIC 0x66726565U
#define MIN_ORDER 7  /* 128-byte blocks */
#define MAX_ORDER 40 /* 1 TiB */
#define PAGE 4096
#define DEFAULT_SIZE ((size_t)4 << 30)

/* A whole cache line, so that every object starts on a line of its own: two locks allocated one
 * after the other never share a line (no false sharing between processes), and code that wants
 * cache-line alignment for its own fields gets it. */
typedef struct {
    _Alignas(64) uint32_t magic;
    uint32_t order;
    uint64_t next; /* offset of the next free block of this order, while free */
} block_hdr;

typedef struct {
    uint64_t magic;
    size_t size;
    pthread_mutex_t lock;
    size_t top; /* offset of the first never-used byte */
    size_t in_use;
    uint64_t free_head[MAX_ORDER + 1];
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
    h->top = (sizeof *h + PAGE - 1) & ~(size_t)(PAGE - 1);
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

static void arena_lock(void)
{
    /* Every mutation is a single store, so the state a dead holder left is already consistent. */
    mproc__robust_lock(&arena->lock);
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

int mproc__arena_alloc(void **out, size_t size)
{
    *out = NULL;
    if (size == 0) return -EINVAL;
    int r = mproc__arena_ensure();
    if (r < 0) return r;
    if (size > arena->size) return -ENOMEM;
    unsigned o = order_for(size + sizeof(block_hdr));
    if (o > MAX_ORDER) return -ENOMEM;
    size_t bsize = (size_t)1 << o;
    block_hdr *b;
    bool fresh = false;
    arena_lock();
    if (arena->free_head[o]) {
        b = (block_hdr *)(arena_base + arena->free_head[o]);
        arena->free_head[o] = b->next;
    } else {
        size_t align = bsize < PAGE ? bsize : PAGE;
        size_t off = (arena->top + align - 1) & ~(align - 1);
        if (off > arena->size || arena->size - off < bsize) {
            arena_unlock();
            return -ENOMEM;
        }
        arena->top = off + bsize;
        b = (block_hdr *)(arena_base + off);
        fresh = true;
    }
    arena->in_use += bsize;
    arena_unlock();
    b->magic = BLOCK_MAGIC;
    b->order = o;
    b->next = 0;
    void *user = b + 1;
    if (!fresh) {
        /* Pages past the first were given back on free and read as zeros again. */
        size_t dirty = o >= 13 ? PAGE - sizeof *b : bsize - sizeof *b;
        memset(user, 0, dirty < size ? dirty : size);
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
    if (!mproc__arena_contains(b, sizeof *b) || b->magic != BLOCK_MAGIC) return;
    unsigned o = b->order;
    size_t bsize = (size_t)1 << o;
    if (o >= 13) madvise((char *)b + PAGE, bsize - PAGE, MADV_REMOVE);
    b->magic = FREE_MAGIC;
    arena_lock();
    b->next = arena->free_head[o];
    arena->free_head[o] = (uint64_t)((char *)b - arena_base);
    arena->in_use -= bsize;
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
    arena_unlock();
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
