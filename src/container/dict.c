/* mproc_dict: a hash map of byte strings in the family arena, in CPython's compact layout: an
 * array of entries in insertion order (so a snapshot lists them as Python's dict does) and an
 * open-addressing index of entry numbers, rebuilt bigger (or compacted) when the entries run out.
 *
 * Crash safety. One robust mutex guards the whole dict. Each entry is one arena block holding
 * key and value, built whole before anything points at it. A change that is one store (replacing
 * a value, swapping in a rebuilt table) needs nothing more; a change of several stores (insert,
 * delete, clear, a batch) first writes what it is about to do into the journal (d->j, d->b), then
 * does it, then clears the journal. A successor that finds the mutex's holder dead replays the
 * journal: every replay store writes a value already known, so replaying twice (its own holder
 * dying too) is harmless. What can leak: a block built and not yet published, or one unpublished
 * and not yet given back, so at most one block per killed call. */
#include <stdlib.h>
#include <string.h>

#include "container/container.h"
#include "sync/proxy.h"
#include "sync/sync.h"

/* An entry: one block, key then value. */
typedef struct {
    size_t klen, vlen;
    unsigned char data[];
} dent;

typedef struct {
    uint64_t hash;
    dent *e; /* NULL: deleted */
} dslot;

/* The table: cap entries, then the index of 2 * cap slots (so at most half full, deleted ones
 * counted). An index slot holds an entry number + 1; 0 is empty, IX_DUMMY a deleted entry's. */
typedef struct {
    size_t cap;
    size_t mask; /* index slots - 1 */
    size_t used; /* entries [0, used) were ever filled */
    size_t len;  /* live entries */
    dslot ent[];
} dtab;
#define IX_DUMMY UINT32_MAX

enum { J_NONE, J_INSERT, J_DEL, J_CLEAR };
enum { B_NONE, B_PREPARE, B_APPLY };

struct mproc_dict {
    uint32_t magic;
    pthread_mutex_t m;
    dtab *tab;
    uint64_t seed;
    mproc__climits lim;
    mproc__ccache cache;
    /* The one multi-store change in progress. */
    struct {
        uint32_t op;
        size_t slot, eidx, len; /* INSERT, DEL: where, and len afterwards */
        uint64_t hash;          /* INSERT */
        dent *e;                /* INSERT: the new entry; DEL: the removed one */
        dtab *old, *tab;        /* CLEAR: the table being emptied, the one replacing it */
    } j;
    /* A set_many in progress: its entries, built (B_PREPARE) and then applied in order. */
    struct {
        uint32_t op;
        dslot *ents;
        size_t n, done;
    } b;
};

static inline uint32_t *tab_index(const dtab *t)
{
    return (uint32_t *)(t->ent + t->cap);
}

static inline size_t dent_size(size_t klen, size_t vlen)
{
    return sizeof(dent) + klen + vlen;
}

static inline bool dict_valid(const mproc_dict *d)
{
    return mproc__sync_valid(d, sizeof *d, MPROC__DICT_MAGIC);
}

static inline bool bytes_ok(const void *p, size_t n)
{
    return p || n == 0;
}

/* ---- tables ---- */

static int tab_new(dtab **out, size_t cap)
{
    size_t bytes = sizeof(dtab) + cap * sizeof(dslot) + 2 * cap * sizeof(uint32_t);
    void *p;
    int r = mproc__arena_alloc(&p, bytes); /* zeroed: every index slot empty */
    if (r < 0) return r;
    dtab *t = p;
    t->cap = cap;
    t->mask = 2 * cap - 1;
    *out = t;
    return 0;
}

/* Room for `items` live entries: a power of two, at least 8, with half again to spare. */
static size_t cap_for(size_t items)
{
    size_t want = items + items / 2, cap = 8;
    while (cap < want)
        cap *= 2;
    return cap;
}

/* Whether n bytes are equal: short keys (the common case) without a call. */
static inline bool key_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    if (n > 16) return memcmp(a, b, n) == 0;
    if (n >= 8)
        return ((mproc__crd64(a) ^ mproc__crd64(b)) |
                (mproc__crd64(a + n - 8) ^ mproc__crd64(b + n - 8))) == 0;
    if (n >= 4)
        return ((mproc__crd32(a) ^ mproc__crd32(b)) |
                (mproc__crd32(a + n - 4) ^ mproc__crd32(b + n - 4))) == 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* Look key up: its entry number, or SIZE_MAX with *slot where it would go (the first deleted
 * slot on its path, else the empty one that ended it). */
static size_t find(const dtab *t, uint64_t h, const void *key, size_t klen, size_t *slot)
{
    const uint32_t *ix = tab_index(t);
    size_t i = h & t->mask, dummy = SIZE_MAX;
    for (;;) {
        uint32_t v = ix[i];
        if (v == 0) {
            *slot = dummy != SIZE_MAX ? dummy : i;
            return SIZE_MAX;
        }
        if (v == IX_DUMMY) {
            if (dummy == SIZE_MAX) dummy = i;
        } else {
            const dslot *s = &t->ent[v - 1];
            if (s->hash == h && s->e->klen == klen && key_eq(s->e->data, key, klen)) {
                *slot = i;
                return v - 1;
            }
        }
        i = (i + 1) & t->mask;
    }
}

/* The empty slot for a hash in a table with no deleted slots (a rebuild). */
static size_t free_slot(const dtab *t, uint64_t h)
{
    const uint32_t *ix = tab_index(t);
    size_t i = h & t->mask;
    while (ix[i])
        i = (i + 1) & t->mask;
    return i;
}

/* Rebuild the table with room for `extra` more entries, live entries compacted in order. The new
 * table is private until the one store that publishes it; the old one is given back after. */
static int grow(mproc_dict *d, size_t extra)
{
    dtab *old = d->tab, *t;
    int r = tab_new(&t, cap_for(old->len + extra));
    if (r < 0) return r;
    uint32_t *ix = tab_index(t);
    size_t n = 0;
    for (size_t i = 0; i < old->used; i++) {
        if (!old->ent[i].e) continue;
        t->ent[n] = old->ent[i];
        ix[free_slot(t, t->ent[n].hash)] = (uint32_t)(n + 1);
        n++;
    }
    t->used = t->len = n;
    MPROC__PUB(d->tab, t);
    mproc__arena_free(old);
    return 0;
}

/* ---- the journalled changes (each replay is the same function) ---- */

static void do_insert(mproc_dict *d)
{
    dtab *t = d->tab;
    MPROC__PUB(t->ent[d->j.eidx].hash, d->j.hash);
    MPROC__PUB(t->ent[d->j.eidx].e, d->j.e);
    MPROC__PUB(tab_index(t)[d->j.slot], (uint32_t)(d->j.eidx + 1));
    MPROC__PUB(t->used, d->j.eidx + 1);
    MPROC__PUB(t->len, d->j.len);
    MPROC__PUB(d->j.op, J_NONE);
}

static void do_del(mproc_dict *d)
{
    dtab *t = d->tab;
    dent *e = d->j.e;
    MPROC__PUB(tab_index(t)[d->j.slot], IX_DUMMY);
    MPROC__PUB(t->ent[d->j.eidx].e, NULL);
    MPROC__PUB(t->len, d->j.len);
    MPROC__PUB(d->j.op, J_NONE);
    mproc__cblock_release(&d->cache, e, dent_size(e->klen, e->vlen));
}

static void do_clear(mproc_dict *d)
{
    dtab *old = d->j.old;
    MPROC__PUB(d->tab, d->j.tab);
    for (size_t i = 0; i < old->used; i++) {
        dent *e = old->ent[i].e;
        if (!e) continue;
        MPROC__PUB(old->ent[i].e, NULL);
        mproc__arena_free(e);
    }
    MPROC__PUB(d->j.op, J_NONE);
    mproc__arena_free(old);
}

/* Publish entry e (hash h) under its key, found at entry i (SIZE_MAX: absent, to go in index
 * slot `slot`): insert or replace. The table has room. */
static void put_at(mproc_dict *d, size_t i, size_t slot, uint64_t h, dent *e)
{
    dtab *t = d->tab;
    if (i != SIZE_MAX) {
        dent *old = t->ent[i].e;
        if (old == e) return;
        MPROC__PUB(t->ent[i].e, e);
        mproc__cblock_release(&d->cache, old, dent_size(old->klen, old->vlen));
        return;
    }
    d->j.slot = slot;
    d->j.eidx = t->used;
    d->j.len = t->len + 1;
    d->j.hash = h;
    d->j.e = e;
    MPROC__PUB(d->j.op, J_INSERT);
    do_insert(d);
}

/* The same, looking the key up first. A replay of a batch meets entries it already published,
 * and leaves them. */
static void put(mproc_dict *d, uint64_t h, dent *e)
{
    size_t slot, i = find(d->tab, h, e->data, e->klen, &slot);
    put_at(d, i, slot, h, e);
}

/* Undo a prepared batch. Each entry is unhooked before it is given back, so that a successor of
 * a repairer killed in here gives back only the rest (never one block twice). */
static void free_batch(mproc_dict *d, size_t from)
{
    for (size_t i = from; i < d->b.n; i++) {
        dent *e = d->b.ents[i].e;
        if (!e) continue;
        MPROC__PUB(d->b.ents[i].e, NULL);
        mproc__cblock_release(&d->cache, e, dent_size(e->klen, e->vlen));
    }
    dslot *ents = d->b.ents;
    MPROC__PUB(d->b.op, B_NONE);
    mproc__arena_free(ents);
}

static void apply_batch(mproc_dict *d)
{
    for (size_t i = d->b.done; i < d->b.n; i++) {
        put(d, d->b.ents[i].hash, d->b.ents[i].e);
        MPROC__PUB(d->b.done, i + 1);
    }
    MPROC__PUB(d->b.op, B_NONE);
    mproc__arena_free(d->b.ents);
}

/* Finish what a dead holder left: its one change, then its batch (prepared: undone; applying:
 * finished, so a set_many is all or nothing even when its caller dies). */
static void repair(mproc_dict *d)
{
    if (mproc__container_no_repair) return;
    switch (d->j.op) {
    case J_INSERT:
        do_insert(d);
        break;
    case J_DEL:
        do_del(d);
        break;
    case J_CLEAR:
        do_clear(d);
        break;
    default:
        break;
    }
    if (d->b.op == B_PREPARE)
        free_batch(d, 0);
    else if (d->b.op == B_APPLY)
        apply_batch(d);
}

static inline void dict_lock(mproc_dict *d)
{
    if (__builtin_expect(mproc__container_lock(&d->m), 0)) repair(d);
}

static inline void dict_unlock(mproc_dict *d)
{
    mproc__container_unlock(&d->m);
}

/* ---- the API ---- */

static int dict_init(void *obj, void *arg)
{
    mproc_dict *d = obj;
    const mproc_dict_opts *opts = arg;
    mproc__climits_from(&d->lim, opts);
    d->seed = mproc__chash_seed();
    size_t hint = opts ? opts->capacity : 0;
    if (hint > d->lim.max_items) hint = d->lim.max_items;
    int r = tab_new(&d->tab, cap_for(hint));
    if (r < 0) return r;
    r = mproc__robust_mutex_init(&d->m, PTHREAD_MUTEX_NORMAL);
    if (r < 0) mproc__arena_free(d->tab);
    return r;
}

int mproc_dict_new(mproc_dict **out, const mproc_dict_opts *opts)
{
    return mproc__sync_new((void **)out, true, sizeof **out, MPROC__DICT_MAGIC, dict_init,
                           (void *)opts);
}

/* Build an entry (under the lock: it may come from the dict's cache). */
static int build(mproc_dict *d, dent **out, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    void *p;
    int r = mproc__cblock_alloc(&d->cache, &p, dent_size(klen, vlen));
    if (r < 0) return r;
    dent *e = p;
    e->klen = klen;
    e->vlen = vlen;
    if (klen) memcpy(e->data, key, klen);
    if (vlen) memcpy(e->data + klen, val, vlen);
    *out = e;
    return 0;
}

int mproc_dict_set(mproc_dict *d, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_set, d, key, klen, val, vlen);
    if (!bytes_ok(key, klen) || !bytes_ok(val, vlen)) return -EINVAL;
    if (klen > d->lim.max_key || vlen > d->lim.max_value) return -E2BIG;
    uint64_t h = mproc__chash(key, klen, d->seed);
    dict_lock(d);
    dtab *t = d->tab;
    size_t slot, i = find(t, h, key, klen, &slot);
    int r = 0;
    if (i == SIZE_MAX) {
        if (t->len >= d->lim.max_items) {
            r = -ENOSPC;
            goto out;
        }
        if (t->used == t->cap) {
            if ((r = grow(d, 1)) < 0) goto out;
            find(d->tab, h, key, klen, &slot);
        }
    }
    dent *e;
    if ((r = build(d, &e, key, klen, val, vlen)) < 0) goto out;
    put_at(d, i, slot, h, e);
out:
    dict_unlock(d);
    return r;
}

int mproc_dict_get(mproc_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_get, d, key, klen, buf, cap, len);
    if (!bytes_ok(key, klen) || !bytes_ok(buf, cap)) return -EINVAL;
    uint64_t h = mproc__chash(key, klen, d->seed);
    dict_lock(d);
    size_t slot, i = find(d->tab, h, key, klen, &slot);
    int r = -ENOENT;
    if (i != SIZE_MAX) {
        const dent *e = d->tab->ent[i].e;
        r = mproc__copy_out(e->data + e->klen, e->vlen, buf, cap, len);
    }
    dict_unlock(d);
    return r;
}

int mproc_dict_get_alloc(mproc_dict *d, const void *key, size_t klen, void **val, size_t *len)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_get_alloc, d, key, klen, val, len);
    if (!bytes_ok(key, klen) || !val) return -EINVAL;
    *val = NULL;
    uint64_t h = mproc__chash(key, klen, d->seed);
    dict_lock(d);
    size_t slot, i = find(d->tab, h, key, klen, &slot);
    int r = -ENOENT;
    if (i != SIZE_MAX) {
        const dent *e = d->tab->ent[i].e;
        r = mproc__copy_alloc(e->data + e->klen, e->vlen, val, len);
    }
    dict_unlock(d);
    return r;
}

int mproc_dict_del(mproc_dict *d, const void *key, size_t klen)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_del, d, key, klen);
    if (!bytes_ok(key, klen)) return -EINVAL;
    uint64_t h = mproc__chash(key, klen, d->seed);
    dict_lock(d);
    dtab *t = d->tab;
    size_t slot, i = find(t, h, key, klen, &slot);
    int r = -ENOENT;
    if (i != SIZE_MAX) {
        d->j.slot = slot;
        d->j.eidx = i;
        d->j.len = t->len - 1;
        d->j.e = t->ent[i].e;
        MPROC__PUB(d->j.op, J_DEL);
        do_del(d);
        r = 0;
    }
    dict_unlock(d);
    return r;
}

int mproc_dict_contains(mproc_dict *d, const void *key, size_t klen)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_contains, d, key, klen);
    if (!bytes_ok(key, klen)) return -EINVAL;
    uint64_t h = mproc__chash(key, klen, d->seed);
    dict_lock(d);
    size_t slot;
    int r = find(d->tab, h, key, klen, &slot) != SIZE_MAX;
    dict_unlock(d);
    return r;
}

int mproc_dict_len(mproc_dict *d, size_t *n)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_len, d, n);
    if (!n) return -EINVAL;
    dict_lock(d);
    *n = d->tab->len;
    dict_unlock(d);
    return 0;
}

int mproc_dict_clear(mproc_dict *d)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_clear, d);
    dict_lock(d);
    dtab *t;
    int r = tab_new(&t, cap_for(0));
    if (r == 0) {
        d->j.old = d->tab;
        d->j.tab = t;
        MPROC__PUB(d->j.op, J_CLEAR);
        do_clear(d);
        mproc__ccache_drain(&d->cache);
    }
    dict_unlock(d);
    return r;
}

/* How many of the batch's keys are neither in the table nor earlier in the batch (exact, for the
 * -ENOSPC check of a batch that might not fit; quadratic in the new keys, so only then). */
static size_t new_keys(const mproc_dict *d, const mproc_dict_item *items, const uint64_t *h,
                       size_t n)
{
    size_t fresh = 0, slot;
    for (size_t i = 0; i < n; i++) {
        if (find(d->tab, h[i], items[i].key, items[i].klen, &slot) != SIZE_MAX) continue;
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = h[k] == h[i] && items[k].klen == items[i].klen &&
                  memcmp(items[k].key, items[i].key, items[i].klen) == 0;
        fresh += !dup;
    }
    return fresh;
}

int mproc_dict_set_many(mproc_dict *d, const mproc_dict_item *items, size_t n)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_set_many, d, items, n);
    if (!items && n) return -EINVAL;
    if (n == 0) return 0;
    if (n > MPROC__CONTAINER_ITEMS_CAP) return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        if (!bytes_ok(items[i].key, items[i].klen) || !bytes_ok(items[i].val, items[i].vlen))
            return -EINVAL;
        if (items[i].klen > d->lim.max_key || items[i].vlen > d->lim.max_value) return -E2BIG;
    }
    uint64_t hs[64], *h = n <= 64 ? hs : malloc(n * sizeof *h);
    if (!h) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = mproc__chash(items[i].key, items[i].klen, d->seed);
    dict_lock(d);
    dtab *t = d->tab;
    int r = 0;
    if (t->len + n > d->lim.max_items && t->len + new_keys(d, items, h, n) > d->lim.max_items) {
        r = -ENOSPC;
        goto out;
    }
    /* Room for all of them first: applying then needs no allocation. */
    if (t->used + n > t->cap && (r = grow(d, n)) < 0) goto out;
    void *p;
    if ((r = mproc__arena_alloc(&p, n * sizeof(dslot))) < 0) goto out;
    d->b.ents = p;
    d->b.n = n;
    d->b.done = 0;
    MPROC__PUB(d->b.op, B_PREPARE);
    for (size_t i = 0; i < n; i++) {
        dent *e;
        if ((r = build(d, &e, items[i].key, items[i].klen, items[i].val, items[i].vlen)) < 0) {
            free_batch(d, 0);
            goto out;
        }
        d->b.ents[i].hash = h[i];
        MPROC__PUB(d->b.ents[i].e, e);
    }
    MPROC__PUB(d->b.op, B_APPLY);
    apply_batch(d);
out:
    dict_unlock(d);
    if (h != hs) free(h);
    return r;
}

int mproc_dict_get_many(mproc_dict *d, mproc_dict_item *items, size_t n, void **block)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_get_many, d, items, n, block);
    if ((!items && n) || !block) return -EINVAL;
    *block = NULL;
    for (size_t i = 0; i < n; i++)
        if (!bytes_ok(items[i].key, items[i].klen)) return -EINVAL;
    if (n > INT32_MAX) return -E2BIG;
    uint64_t hs[64], *h = n <= 64 ? hs : malloc(n * sizeof *h);
    if (!h) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = mproc__chash(items[i].key, items[i].klen, d->seed);
    /* Found entries are remembered as their entry numbers (in h, reused) between the two passes:
     * sizes, then one malloc and the copies, all under the lock. */
    dict_lock(d);
    const dtab *t = d->tab;
    size_t total = 0, found = 0, slot;
    for (size_t i = 0; i < n; i++) {
        size_t e = find(t, h[i], items[i].key, items[i].klen, &slot);
        h[i] = e;
        if (e != SIZE_MAX) {
            total += t->ent[e].e->vlen;
            found++;
        }
    }
    int r = (int)found;
    unsigned char *out = found ? malloc(total ? total : 1) : NULL;
    if (found && !out) {
        r = -ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++) {
            items[i].val = NULL;
            items[i].vlen = 0;
            if (h[i] == SIZE_MAX) continue;
            const dent *e = t->ent[h[i]].e;
            memcpy(out, e->data + e->klen, e->vlen);
            items[i].val = out;
            items[i].vlen = e->vlen;
            out += e->vlen;
        }
        *block = found ? out - total : NULL;
    }
    dict_unlock(d);
    if (h != hs) free(h);
    return r;
}

int mproc_dict_items(mproc_dict *d, bool keys_only, mproc_dict_item **items, size_t *n)
{
    if (!dict_valid(d)) return MPROC__PROXY_OR_EINVAL(dict_items, d, keys_only, items, n);
    if (!items || !n) return -EINVAL;
    *items = NULL;
    *n = 0;
    dict_lock(d);
    const dtab *t = d->tab;
    size_t bytes = t->len * sizeof(mproc_dict_item);
    for (size_t i = 0; i < t->used; i++) {
        const dent *e = t->ent[i].e;
        if (e) bytes += e->klen + (keys_only ? 0 : e->vlen);
    }
    int r = 0;
    if (t->len) {
        mproc_dict_item *it = malloc(bytes);
        if (!it) {
            r = -ENOMEM;
        } else {
            unsigned char *p = (unsigned char *)(it + t->len);
            size_t k = 0;
            for (size_t i = 0; i < t->used; i++) {
                const dent *e = t->ent[i].e;
                if (!e) continue;
                memcpy(p, e->data, e->klen);
                it[k] = (mproc_dict_item){.key = p, .klen = e->klen};
                p += e->klen;
                if (!keys_only) {
                    memcpy(p, e->data + e->klen, e->vlen);
                    it[k].val = p;
                    it[k].vlen = e->vlen;
                    p += e->vlen;
                }
                k++;
            }
            *items = it;
            *n = k;
        }
    }
    dict_unlock(d);
    return r;
}

void mproc_dict_free(mproc_dict *d)
{
    if (!dict_valid(d)) {
        MPROC__PROXY_VOID(dict_free, d);
        return;
    }
    /* A dead holder's half-done change is finished first, so that its blocks are freed too. */
    dict_lock(d);
    __atomic_store_n(&d->magic, MPROC__SYNC_DEAD_MAGIC, __ATOMIC_RELEASE);
    dtab *t = d->tab;
    for (size_t i = 0; i < t->used; i++)
        if (t->ent[i].e) mproc__arena_free(t->ent[i].e);
    mproc__arena_free(t);
    mproc__ccache_drain(&d->cache);
    dict_unlock(d);
    pthread_mutex_destroy(&d->m);
    mproc__arena_free(d);
}

int mproc__dict_check(mproc_dict *d)
{
    if (!dict_valid(d)) return -EINVAL;
    dict_lock(d);
    const dtab *t = d->tab;
    const uint32_t *ix = tab_index(t);
    int r = 0;
    size_t live = 0, slots = 0;
    if (t->used > t->cap || t->mask != 2 * t->cap - 1) r = -EIO;
    for (size_t i = 0; r == 0 && i < t->used; i++) {
        const dent *e = t->ent[i].e;
        if (!e) continue;
        live++;
        if (!mproc__arena_contains(e, sizeof *e) ||
            mproc__arena_usable(e) < dent_size(e->klen, e->vlen) ||
            mproc__chash(e->data, e->klen, d->seed) != t->ent[i].hash) {
            r = -EIO;
            break;
        }
        size_t slot;
        if (find(t, t->ent[i].hash, e->data, e->klen, &slot) != i) r = -EIO;
    }
    for (size_t i = 0; r == 0 && i <= t->mask; i++) {
        uint32_t v = ix[i];
        if (v == 0 || v == IX_DUMMY) continue;
        slots++;
        if (v > t->used || !t->ent[v - 1].e) r = -EIO;
    }
    if (r == 0 && (live != t->len || slots != t->len)) r = -EIO;
    dict_unlock(d);
    return r;
}
