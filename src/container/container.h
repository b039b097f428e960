/* Internals shared by the arena containers (dict.c, list.c): their limits, their lock, the
 * per-container cache of small blocks, the hash, and copying values out. */
#ifndef MPROC_CONTAINER_CONTAINER_H
#define MPROC_CONTAINER_CONTAINER_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arena/arena.h"
#include "mproc/containers.h"

#define MPROC__DICT_MAGIC 0x64696374U /* "dict" */
#define MPROC__LIST_MAGIC 0x6c697374U /* "list" */

/* The index of a dict holds 32-bit entry numbers: no container holds more. */
#define MPROC__CONTAINER_ITEMS_CAP ((size_t)1 << 30)

typedef struct {
    size_t max_key, max_value, max_items;
} mproc__climits;
/* The limits of opts (NULL or fields 0: the defaults). */
void mproc__climits_from(mproc__climits *l, const mproc_dict_opts *opts);

/* Stores the dead holder's successor must see in program order (the only reader is the
 * successor under the robust mutex: these stop the compiler, and x86 keeps store order). Each is
 * a crash point for tests: with mproc__container_crash_after set to k, the process SIGKILLs
 * itself just before its k-th such store (one predictable branch otherwise). */
extern int mproc__container_crash_after;
void mproc__container_crash_tick(void);
#define MPROC__PUB(lv, v)                                                                          \
    do {                                                                                           \
        if (__builtin_expect(mproc__container_crash_after != 0, 0)) mproc__container_crash_tick(); \
        __atomic_store_n(&(lv), (v), __ATOMIC_RELEASE);                                            \
    } while (0)

/* A container's mutex: true when its previous holder died holding it (the caller repairs the
 * structure from its journal before anything else; the mutex is already consistent, and if the
 * repairer dies too its successor repairs again: every repair is idempotent). */
bool mproc__container_lock_slow(pthread_mutex_t *m);
static inline bool mproc__container_lock(pthread_mutex_t *m)
{
    /* Uncontended: one compare-and-swap (and glibc's robust-list bookkeeping), inline. A holder
     * that died: trylock hands the mutex over with EOWNERDEAD (taking the slow path then would
     * lock it a second time and wait for ever). */
    int r = pthread_mutex_trylock(m);
    if (__builtin_expect(r == 0, 1)) return false;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return true;
    }
    return mproc__container_lock_slow(m);
}
static inline void mproc__container_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}

/* Small blocks a container keeps for its own reuse, under its mutex: replacing a value then
 * costs no trip to the family-wide allocator (whose lock every process shares). Classes are the
 * arena's power-of-two blocks of 128 bytes to 2 KiB; each class keeps up to 8 KiB. A block on a
 * list is owned by the container; one taken off and not yet published is owned by nobody, so a
 * process killed between the two leaks that one block (documented in docs/containers.md). */
#define MPROC__CCACHE_CLASSES 5
typedef struct {
    void *head[MPROC__CCACHE_CLASSES];
    uint32_t count[MPROC__CCACHE_CLASSES];
} mproc__ccache;
/* A block of at least `size` bytes (not zeroed): from the cache, else the arena. 0 or -ENOMEM. */
int mproc__cblock_alloc(mproc__ccache *c, void **out, size_t size);
/* Give back a block of mproc__cblock_alloc(size): to the cache, else to the arena. */
void mproc__cblock_release(mproc__ccache *c, void *blk, size_t size);
/* Empty the cache into the arena (clear, free). */
void mproc__ccache_drain(mproc__ccache *c);

/* A per-container seed, so that keys sent by a manager's remote clients cannot be chosen to
 * collide. */
uint64_t mproc__chash_seed(void);

/* A 64-bit hash in the style of wyhash (public domain; a 128-bit multiply folds each 16 bytes):
 * a few ns for a short key, and inline so the dict's hot path does not call out for it. */
static inline uint64_t mproc__crd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t mproc__crd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t mproc__cmix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}
static inline uint64_t mproc__chash(const void *key, size_t n, uint64_t seed)
{
    const uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL;
    const unsigned char *p = key;
    uint64_t a, b;
    if (n <= 16) {
        if (n >= 4) {
            size_t m = (n >> 3) << 2;
            a = (mproc__crd32(p) << 32) | mproc__crd32(p + m);
            b = (mproc__crd32(p + n - 4) << 32) | mproc__crd32(p + n - 4 - m);
        } else if (n) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        while (i > 16) {
            seed = mproc__cmix(mproc__crd64(p) ^ k1, mproc__crd64(p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        a = mproc__crd64(p + i - 16);
        b = mproc__crd64(p + i - 8);
    }
    __uint128_t r = (__uint128_t)(a ^ k1) * (b ^ seed);
    return mproc__cmix((uint64_t)r ^ k0 ^ n, (uint64_t)(r >> 64) ^ k1);
}

/* Copy n bytes out as the _get calls do: 0, or -EMSGSIZE with *len the size needed. len may be
 * NULL. */
static inline int mproc__copy_out(const void *src, size_t n, void *buf, size_t cap, size_t *len)
{
    if (len) *len = n;
    if (n > cap) return -EMSGSIZE;
    if (n) memcpy(buf, src, n);
    return 0;
}
/* The same into a malloc'd buffer (at least one byte, so an empty value is not NULL). */
int mproc__copy_alloc(const void *src, size_t n, void **val, size_t *len);

/* For tests: 0 when the structure is consistent (every index slot, entry and count agree; every
 * value block is whole), -EIO when not, -EINVAL for a bad handle. Takes the container's lock. */
int mproc__dict_check(mproc_dict *d);
int mproc__list_check(mproc_list *l);
/* For tests: skip the repair a successor makes after a holder died (1), to show what it fixes. */
extern int mproc__container_no_repair;

#endif
