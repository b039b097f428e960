/* mproc_list: a sequence of byte strings in the family arena: an array of item pointers (doubled
 * when full) and one arena block per item.
 *
 * Crash safety, as for the dict (dict.c): one robust mutex; an item is built whole before it is
 * published; a change of one store (append's length, set's pointer, swapping in a grown array)
 * needs nothing more; a shift (insert, pop) and a clear write their intent into the journal
 * first and record their progress in it store by store, so that a successor finding the holder
 * dead finishes them (each step rewrites a value already known: replaying twice is harmless).
 * At most one block leaks per killed call. */
#include <stdlib.h>
#include <string.h>

#include "container/container.h"
#include "sync/proxy.h"
#include "sync/sync.h"

typedef struct {
    size_t len;
    unsigned char data[];
} litem;

typedef struct {
    size_t cap;
    litem *it[];
} larr;

enum { J_NONE, J_INSERT, J_POP, J_CLEAR };

struct mproc_list {
    uint32_t magic;
    pthread_mutex_t m;
    larr *arr;
    size_t len;
    mproc__climits lim;
    mproc__ccache cache;
    struct {
        uint32_t op;
        size_t i; /* INSERT, POP: the index */
        size_t n; /* the length before */
        size_t j; /* the shift's next step */
        litem *e; /* INSERT: the new item; POP: the removed one */
    } j;
};

static inline bool list_valid(const mproc_list *l)
{
    return mproc__sync_valid(l, sizeof *l, MPROC__LIST_MAGIC);
}

static inline size_t litem_size(size_t len)
{
    return sizeof(litem) + len;
}

static void release(mproc_list *l, litem *e)
{
    if (e) mproc__cblock_release(&l->cache, e, litem_size(e->len));
}

/* ---- the journalled changes (each replay is the same function) ---- */

/* Shift [i, n) right by one from the top, then store the new item at i. */
static void do_insert(mproc_list *l)
{
    litem **it = l->arr->it;
    for (size_t j = l->j.j; j > l->j.i; j--) {
        MPROC__PUB(it[j], it[j - 1]);
        MPROC__PUB(l->j.j, j - 1);
    }
    MPROC__PUB(it[l->j.i], l->j.e);
    MPROC__PUB(l->len, l->j.n + 1);
    MPROC__PUB(l->j.op, J_NONE);
}

/* Shift (i, n) left by one over the removed item. */
static void do_pop(mproc_list *l)
{
    litem **it = l->arr->it;
    litem *e = l->j.e;
    for (size_t j = l->j.j; j + 1 < l->j.n; j++) {
        MPROC__PUB(it[j], it[j + 1]);
        MPROC__PUB(l->j.j, j + 1);
    }
    MPROC__PUB(l->len, l->j.n - 1);
    MPROC__PUB(l->j.op, J_NONE);
    release(l, e);
}

static void do_clear(mproc_list *l)
{
    litem **it = l->arr->it;
    MPROC__PUB(l->len, 0);
    for (size_t k = 0; k < l->j.n; k++) {
        litem *e = it[k];
        if (!e) continue;
        MPROC__PUB(it[k], NULL);
        mproc__arena_free(e);
    }
    MPROC__PUB(l->j.op, J_NONE);
}

static void repair(mproc_list *l)
{
    if (mproc__container_no_repair) return;
    switch (l->j.op) {
    case J_INSERT:
        do_insert(l);
        break;
    case J_POP:
        do_pop(l);
        break;
    case J_CLEAR:
        do_clear(l);
        break;
    default:
        break;
    }
}

static inline void list_lock(mproc_list *l)
{
    if (__builtin_expect(mproc__container_lock(&l->m), 0)) repair(l);
}

static inline void list_unlock(mproc_list *l)
{
    mproc__container_unlock(&l->m);
}

static int arr_new(larr **out, size_t cap)
{
    void *p;
    int r = mproc__arena_alloc(&p, sizeof(larr) + cap * sizeof(litem *));
    if (r < 0) return r;
    larr *a = p;
    a->cap = cap;
    *out = a;
    return 0;
}

/* Room for one more item: a doubled array, private until the store that publishes it. */
static int make_room(mproc_list *l)
{
    larr *old = l->arr, *a;
    if (l->len < old->cap) return 0;
    int r = arr_new(&a, old->cap * 2);
    if (r < 0) return r;
    memcpy(a->it, old->it, l->len * sizeof(litem *));
    MPROC__PUB(l->arr, a);
    mproc__arena_free(old);
    return 0;
}

static int build(mproc_list *l, litem **out, const void *val, size_t len)
{
    void *p;
    int r = mproc__cblock_alloc(&l->cache, &p, litem_size(len));
    if (r < 0) return r;
    litem *e = p;
    e->len = len;
    if (len) memcpy(e->data, val, len);
    *out = e;
    return 0;
}

/* How far a negative index counts back from the end: negated in size_t, since -PTRDIFF_MIN
 * overflows ptrdiff_t (a manager client sent it: fuzz_manager_protocol). */
static size_t back(ptrdiff_t index)
{
    return (size_t)0 - (size_t)index;
}

/* A Python index into [0, n): false when out of range. */
static bool normalise(ptrdiff_t index, size_t n, size_t *at)
{
    if (index < 0) {
        if (back(index) > n) return false;
        *at = n - back(index);
        return true;
    }
    if ((size_t)index >= n) return false;
    *at = (size_t)index;
    return true;
}

/* ---- the API ---- */

static int list_init(void *obj, void *arg)
{
    mproc_list *l = obj;
    const mproc_dict_opts *opts = arg;
    mproc__climits_from(&l->lim, opts);
    size_t cap = 8, hint = opts ? opts->capacity : 0;
    if (hint > l->lim.max_items) hint = l->lim.max_items;
    while (cap < hint)
        cap *= 2;
    int r = arr_new(&l->arr, cap);
    if (r < 0) return r;
    r = mproc__robust_mutex_init(&l->m, PTHREAD_MUTEX_NORMAL);
    if (r < 0) mproc__arena_free(l->arr);
    return r;
}

int mproc_list_new(mproc_list **out, const mproc_dict_opts *opts)
{
    return mproc__sync_new((void **)out, true, sizeof **out, MPROC__LIST_MAGIC, list_init,
                           (void *)opts);
}

int mproc_list_insert(mproc_list *l, ptrdiff_t index, const void *val, size_t len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_insert, l, index, val, len);
    if (!val && len) return -EINVAL;
    if (len > l->lim.max_value) return -E2BIG;
    list_lock(l);
    size_t n = l->len, at;
    int r = -ENOSPC;
    if (n >= l->lim.max_items) goto out;
    /* Clamped, as Python's list.insert. */
    if (index < 0)
        at = back(index) >= n ? 0 : n - back(index);
    else
        at = (size_t)index > n ? n : (size_t)index;
    litem *e;
    if ((r = make_room(l)) < 0 || (r = build(l, &e, val, len)) < 0) goto out;
    if (at == n) {
        /* Past the end nothing reads the slot: the length is the one publishing store. */
        MPROC__PUB(l->arr->it[n], e);
        MPROC__PUB(l->len, n + 1);
    } else {
        l->j.i = at;
        l->j.n = n;
        l->j.j = n;
        l->j.e = e;
        MPROC__PUB(l->j.op, J_INSERT);
        do_insert(l);
    }
out:
    list_unlock(l);
    return r;
}

int mproc_list_append(mproc_list *l, const void *val, size_t len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_append, l, val, len);
    return mproc_list_insert(l, PTRDIFF_MAX, val, len);
}

int mproc_list_get(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_get, l, index, buf, cap, len);
    if (!buf && cap) return -EINVAL;
    list_lock(l);
    size_t at;
    int r = -ERANGE;
    if (normalise(index, l->len, &at)) {
        const litem *e = l->arr->it[at];
        r = mproc__copy_out(e->data, e->len, buf, cap, len);
    }
    list_unlock(l);
    return r;
}

int mproc_list_get_alloc(mproc_list *l, ptrdiff_t index, void **val, size_t *len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_get_alloc, l, index, val, len);
    if (!val) return -EINVAL;
    *val = NULL;
    list_lock(l);
    size_t at;
    int r = -ERANGE;
    if (normalise(index, l->len, &at)) {
        const litem *e = l->arr->it[at];
        r = mproc__copy_alloc(e->data, e->len, val, len);
    }
    list_unlock(l);
    return r;
}

int mproc_list_set(mproc_list *l, ptrdiff_t index, const void *val, size_t len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_set, l, index, val, len);
    if (!val && len) return -EINVAL;
    if (len > l->lim.max_value) return -E2BIG;
    list_lock(l);
    size_t at;
    int r = -ERANGE;
    litem *e;
    if (normalise(index, l->len, &at) && (r = build(l, &e, val, len)) == 0) {
        litem *old = l->arr->it[at];
        MPROC__PUB(l->arr->it[at], e);
        release(l, old);
    }
    list_unlock(l);
    return r;
}

int mproc_list_pop(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_pop, l, index, buf, cap, len);
    if (!buf && cap) return -EINVAL;
    list_lock(l);
    size_t at;
    int r = -ERANGE;
    if (normalise(index, l->len, &at)) {
        litem *e = l->arr->it[at];
        /* Copied out first: a kill during the copy leaves the list as it was. */
        if (!buf && !cap) {
            if (len) *len = e->len;
            r = 0;
        } else {
            r = mproc__copy_out(e->data, e->len, buf, cap, len);
        }
        if (r == 0) {
            l->j.i = at;
            l->j.n = l->len;
            l->j.j = at;
            l->j.e = e;
            MPROC__PUB(l->j.op, J_POP);
            do_pop(l);
        }
    }
    list_unlock(l);
    return r;
}

int mproc_list_len(mproc_list *l, size_t *n)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_len, l, n);
    if (!n) return -EINVAL;
    list_lock(l);
    *n = l->len;
    list_unlock(l);
    return 0;
}

int mproc_list_clear(mproc_list *l)
{
    if (!list_valid(l)) return MPROC__PROXY_OR_EINVAL(list_clear, l);
    list_lock(l);
    l->j.n = l->len;
    MPROC__PUB(l->j.op, J_CLEAR);
    do_clear(l);
    mproc__ccache_drain(&l->cache);
    list_unlock(l);
    return 0;
}

void mproc_list_free(mproc_list *l)
{
    if (!list_valid(l)) {
        MPROC__PROXY_VOID(list_free, l);
        return;
    }
    list_lock(l);
    __atomic_store_n(&l->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    for (size_t k = 0; k < l->len; k++)
        mproc__arena_free(l->arr->it[k]);
    mproc__arena_free(l->arr);
    mproc__ccache_drain(&l->cache);
    list_unlock(l);
    pthread_mutex_destroy(&l->m);
    mproc__arena_free(l);
}

int mproc__list_check(mproc_list *l)
{
    if (!list_valid(l)) return -EINVAL;
    list_lock(l);
    int r = l->len > l->arr->cap ? -EIO : 0;
    for (size_t k = 0; r == 0 && k < l->len; k++) {
        const litem *e = l->arr->it[k];
        if (!e || !mproc__arena_contains(e, sizeof *e) ||
            mproc__arena_usable(e) < litem_size(e->len))
            r = -EIO;
        /* No item listed twice (a half-done shift duplicates one). */
        for (size_t m = k + 1; r == 0 && m < l->len && m < k + 64; m++)
            if (l->arr->it[m] == e) r = -EIO;
    }
    list_unlock(l);
    return r;
}
