/* mproc_dict: every call and error code, insertion order, growth, batches, and the dict shared by
 * processes (concurrent writers, snapshots while others write). Processes killed inside a call
 * are in test_container_recovery.c. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena/arena.h"
#include "container/container.h"
#include "harness.h"

static size_t in_use(void)
{
    mproc__arena_stats st;
    mproc__arena_get_stats(&st);
    return st.in_use;
}

static int set_s(mproc_dict *d, const char *k, const char *v)
{
    return mproc_dict_set(d, k, strlen(k), v, strlen(v));
}

/* The value of k as a string ("" when absent). */
static const char *get_s(mproc_dict *d, const char *k)
{
    static char buf[256];
    size_t n;
    if (mproc_dict_get(d, k, strlen(k), buf, sizeof buf - 1, &n) != 0) return "";
    buf[n] = 0;
    return buf;
}

/* The keys in snapshot order, joined by ',' (keys are strings here). */
static const char *keys_s(mproc_dict *d)
{
    static char buf[4096];
    mproc_dict_item *it;
    size_t n;
    CHECK_OK(mproc_dict_items(d, true, &it, &n));
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(it[i].val == NULL && it[i].vlen == 0);
        if (i) strcat(buf, ",");
        strncat(buf, it[i].key, it[i].klen);
    }
    free(it);
    return buf;
}

TEST(set_get_del_len_contains)
{
    size_t before = in_use();
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    size_t n = 99;
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, 0);
    CHECK_OK(set_s(d, "alpha", "one"));
    CHECK_OK(set_s(d, "beta", "two"));
    CHECK_EQ(mproc_dict_contains(d, "alpha", 5), 1);
    CHECK_EQ(mproc_dict_contains(d, "gamma", 5), 0);
    CHECK(strcmp(get_s(d, "alpha"), "one") == 0);
    CHECK(strcmp(get_s(d, "beta"), "two") == 0);
    CHECK_OK(set_s(d, "alpha", "uno, replaced by a longer value"));
    CHECK(strcmp(get_s(d, "alpha"), "uno, replaced by a longer value") == 0);
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, 2);
    char buf[8];
    size_t len = 0;
    CHECK_RC(mproc_dict_get(d, "gamma", 5, buf, sizeof buf, &len), -ENOENT);
    /* Too small: the size needed, nothing copied. */
    memset(buf, 'x', sizeof buf);
    CHECK_RC(mproc_dict_get(d, "alpha", 5, buf, sizeof buf, &len), -EMSGSIZE);
    CHECK_EQ(len, 31);
    CHECK_EQ(buf[0], 'x');
    /* A size query. */
    CHECK_RC(mproc_dict_get(d, "beta", 4, NULL, 0, &len), -EMSGSIZE);
    CHECK_EQ(len, 3);
    CHECK_OK(mproc_dict_get(d, "beta", 4, buf, 3, NULL));
    void *v;
    CHECK_OK(mproc_dict_get_alloc(d, "alpha", 5, &v, &len));
    CHECK_EQ(len, 31);
    CHECK(memcmp(v, "uno", 3) == 0);
    free(v);
    CHECK_RC(mproc_dict_get_alloc(d, "gamma", 5, &v, &len), -ENOENT);
    CHECK(v == NULL);
    CHECK_OK(mproc_dict_del(d, "alpha", 5));
    CHECK_RC(mproc_dict_del(d, "alpha", 5), -ENOENT);
    CHECK_EQ(mproc_dict_contains(d, "alpha", 5), 0);
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, 1);
    /* Empty keys and values are keys and values. */
    CHECK_OK(mproc_dict_set(d, "", 0, "", 0));
    CHECK_OK(mproc_dict_get(d, "", 0, NULL, 0, &len));
    CHECK_EQ(len, 0);
    CHECK_OK(mproc_dict_get_alloc(d, NULL, 0, &v, &len));
    CHECK(v != NULL);
    CHECK_EQ(len, 0);
    free(v);
    CHECK_EQ(mproc_dict_contains(d, NULL, 0), 1);
    CHECK_OK(mproc__dict_check(d));
    mproc_dict_free(d);
    CHECK_EQ(in_use(), before);
}

TEST(limits_and_bad_arguments)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, &(mproc_dict_opts){.max_key = 4, .max_value = 8, .max_items = 2}));
    CHECK_RC(mproc_dict_set(d, "12345", 5, "v", 1), -E2BIG);
    CHECK_RC(mproc_dict_set(d, "k", 1, "123456789", 9), -E2BIG);
    CHECK_OK(mproc_dict_set(d, "1234", 4, "12345678", 8));
    CHECK_OK(set_s(d, "b", "2"));
    CHECK_RC(set_s(d, "c", "3"), -ENOSPC);
    CHECK_RC(set_s(d, "b", "longer than eight"), -E2BIG);
    CHECK(strcmp(get_s(d, "b"), "2") == 0);
    CHECK_OK(set_s(d, "b", "22"));
    CHECK_OK(mproc_dict_del(d, "b", 1));
    CHECK_OK(set_s(d, "c", "3"));
    /* NULL where a pointer is required. */
    size_t n;
    void *v;
    mproc_dict_item *it;
    CHECK_RC(mproc_dict_set(d, NULL, 1, "v", 1), -EINVAL);
    CHECK_RC(mproc_dict_set(d, "k", 1, NULL, 1), -EINVAL);
    CHECK_RC(mproc_dict_get(d, NULL, 1, NULL, 0, &n), -EINVAL);
    CHECK_RC(mproc_dict_get(d, "c", 1, NULL, 4, &n), -EINVAL);
    CHECK_RC(mproc_dict_get_alloc(d, "c", 1, NULL, &n), -EINVAL);
    CHECK_RC(mproc_dict_del(d, NULL, 2), -EINVAL);
    CHECK_RC(mproc_dict_contains(d, NULL, 2), -EINVAL);
    CHECK_RC(mproc_dict_len(d, NULL), -EINVAL);
    CHECK_RC(mproc_dict_items(d, false, NULL, &n), -EINVAL);
    CHECK_RC(mproc_dict_items(d, false, &it, NULL), -EINVAL);
    CHECK_RC(mproc_dict_set_many(d, NULL, 1), -EINVAL);
    CHECK_RC(mproc_dict_get_many(d, NULL, 1, &v), -EINVAL);
    CHECK_RC(mproc_dict_get_many(d, &(mproc_dict_item){.key = "c", .klen = 1}, 1, NULL), -EINVAL);
    CHECK_RC(mproc_dict_new(NULL, NULL), -EINVAL);
    mproc_dict_free(d);
}

TEST(bad_handles_are_einval)
{
    mproc_dict *garbage[3];
    long junk[64] = {0};
    garbage[0] = NULL;
    garbage[1] = (mproc_dict *)junk;      /* outside the arena */
    garbage[2] = mproc_shared_alloc(256); /* in the arena, no magic word */
    mproc_dict *freed;
    CHECK_OK(mproc_dict_new(&freed, NULL));
    mproc_dict_free(freed);
    mproc_lock *lock; /* another kind of object */
    CHECK_OK(mproc_lock_new(&lock));
    mproc_dict *all[] = {garbage[0], garbage[1], garbage[2], freed, (mproc_dict *)lock};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        mproc_dict *d = all[i];
        char buf[4];
        size_t n;
        void *v;
        mproc_dict_item item = {.key = "k", .klen = 1, .val = "v", .vlen = 1}, *it;
        CHECK_RC(mproc_dict_set(d, "k", 1, "v", 1), -EINVAL);
        CHECK_RC(mproc_dict_get(d, "k", 1, buf, sizeof buf, &n), -EINVAL);
        CHECK_RC(mproc_dict_get_alloc(d, "k", 1, &v, &n), -EINVAL);
        CHECK_RC(mproc_dict_del(d, "k", 1), -EINVAL);
        CHECK_RC(mproc_dict_contains(d, "k", 1), -EINVAL);
        CHECK_RC(mproc_dict_len(d, &n), -EINVAL);
        CHECK_RC(mproc_dict_clear(d), -EINVAL);
        CHECK_RC(mproc_dict_set_many(d, &item, 1), -EINVAL);
        CHECK_RC(mproc_dict_get_many(d, &item, 1, &v), -EINVAL);
        CHECK_RC(mproc_dict_items(d, false, &it, &n), -EINVAL);
        mproc_dict_free(d); /* ignored */
    }
    CHECK(mproc_lock_acquire(lock, 0) == 0); /* left alone by the dict calls */
    mproc_lock_release(lock);
    mproc_lock_free(lock);
    mproc_shared_free(garbage[2]);
}

TEST(insertion_order_as_python)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    CHECK_OK(set_s(d, "c", "1"));
    CHECK_OK(set_s(d, "a", "2"));
    CHECK_OK(set_s(d, "b", "3"));
    CHECK(strcmp(keys_s(d), "c,a,b") == 0);
    CHECK_OK(set_s(d, "c", "replaced keeps its place"));
    CHECK(strcmp(keys_s(d), "c,a,b") == 0);
    CHECK_OK(mproc_dict_del(d, "c", 1));
    CHECK_OK(set_s(d, "c", "back at the end"));
    CHECK(strcmp(keys_s(d), "a,b,c") == 0);
    mproc_dict_item *it;
    size_t n;
    CHECK_OK(mproc_dict_items(d, false, &it, &n));
    CHECK_EQ(n, 3);
    CHECK(it[2].vlen == 15 && memcmp(it[2].val, "back at the end", 15) == 0);
    CHECK(it[0].vlen == 1 && memcmp(it[0].val, "2", 1) == 0);
    free(it);
    CHECK_OK(mproc_dict_clear(d));
    CHECK_OK(mproc_dict_items(d, false, &it, &n));
    CHECK(it == NULL);
    CHECK_EQ(n, 0);
    CHECK_OK(set_s(d, "z", "after clear"));
    CHECK(strcmp(keys_s(d), "z") == 0);
    mproc_dict_free(d);
}

/* Keys and values of every size class, through growth, deletes and compaction. */
TEST(grows_and_compacts)
{
    size_t before = in_use();
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    enum { N = 20000 };
    char k[32];
    static unsigned char v[3000];
    for (size_t i = 0; i < sizeof v; i++)
        v[i] = (unsigned char)(i * 7);
    for (int i = 0; i < N; i++) {
        int kl = snprintf(k, sizeof k, "key-%d", i);
        CHECK_OK(mproc_dict_set(d, k, (size_t)kl, v + i % 7, (size_t)(i % 2500)));
    }
    CHECK_OK(mproc__dict_check(d));
    for (int i = 0; i < N; i += 2) {
        int kl = snprintf(k, sizeof k, "key-%d", i);
        CHECK_OK(mproc_dict_del(d, k, (size_t)kl));
    }
    /* Churn: deleted entries are compacted away as new ones come. */
    for (int i = N; i < 3 * N; i++) {
        int kl = snprintf(k, sizeof k, "key-%d", i);
        CHECK_OK(mproc_dict_set(d, k, (size_t)kl, v, 5));
        kl = snprintf(k, sizeof k, "key-%d", i);
        CHECK_OK(mproc_dict_del(d, k, (size_t)kl));
    }
    CHECK_OK(mproc__dict_check(d));
    size_t n;
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, N / 2);
    mproc_dict_item *it;
    CHECK_OK(mproc_dict_items(d, false, &it, &n));
    CHECK_EQ(n, N / 2);
    for (size_t j = 0; j < n; j++) {
        int i = (int)(2 * j + 1);
        int kl = snprintf(k, sizeof k, "key-%d", i);
        CHECK(it[j].klen == (size_t)kl && memcmp(it[j].key, k, (size_t)kl) == 0);
        CHECK(it[j].vlen == (size_t)(i % 2500) && memcmp(it[j].val, v + i % 7, it[j].vlen) == 0);
    }
    free(it);
    /* A long key (past the 16 bytes the hash reads at once). */
    static unsigned char longkey[5000];
    memset(longkey, 'L', sizeof longkey);
    CHECK_OK(mproc_dict_set(d, longkey, sizeof longkey, "x", 1));
    longkey[4999] = 'M';
    CHECK_EQ(mproc_dict_contains(d, longkey, sizeof longkey), 0);
    longkey[4999] = 'L';
    CHECK_EQ(mproc_dict_contains(d, longkey, sizeof longkey), 1);
    mproc_dict_free(d);
    CHECK_EQ(in_use(), before);
}

TEST(capacity_hint)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, &(mproc_dict_opts){.capacity = 100000}));
    for (uint32_t i = 0; i < 1000; i++)
        CHECK_OK(mproc_dict_set(d, &i, sizeof i, &i, sizeof i));
    CHECK_OK(mproc__dict_check(d));
    mproc_dict_free(d);
}

TEST(set_many_and_get_many)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, &(mproc_dict_opts){.max_items = 4, .max_value = 16}));
    CHECK_OK(set_s(d, "a", "old"));
    mproc_dict_item in[] = {
        {.key = "b", .klen = 1, .val = "B", .vlen = 1},
        {.key = "a", .klen = 1, .val = "A", .vlen = 1},
        {.key = "c", .klen = 1, .val = "first", .vlen = 5},
        {.key = "c", .klen = 1, .val = "second", .vlen = 6}, /* the later one wins */
    };
    CHECK_OK(mproc_dict_set_many(d, in, 4));
    CHECK(strcmp(keys_s(d), "a,b,c") == 0);
    CHECK(strcmp(get_s(d, "a"), "A") == 0);
    CHECK(strcmp(get_s(d, "c"), "second") == 0);
    CHECK_OK(mproc_dict_set_many(d, in, 0));
    /* All or none: one too many new keys, or one too big a value, and nothing changes. */
    mproc_dict_item over[] = {
        {.key = "a", .klen = 1, .val = "changed", .vlen = 7},
        {.key = "d", .klen = 1, .val = "D", .vlen = 1},
        {.key = "d", .klen = 1, .val = "D again", .vlen = 7}, /* counted once */
        {.key = "e", .klen = 1, .val = "E", .vlen = 1},
    };
    CHECK_RC(mproc_dict_set_many(d, over, 4), -ENOSPC);
    CHECK_OK(mproc_dict_set_many(d, over, 3)); /* d is the 4th: fits */
    CHECK(strcmp(get_s(d, "d"), "D again") == 0);
    CHECK(strcmp(get_s(d, "a"), "changed") == 0);
    mproc_dict_item big[] = {
        {.key = "a", .klen = 1, .val = "A", .vlen = 1},
        {.key = "b", .klen = 1, .val = "0123456789abcdefg", .vlen = 17},
    };
    CHECK_RC(mproc_dict_set_many(d, big, 2), -E2BIG);
    CHECK(strcmp(get_s(d, "a"), "changed") == 0);
    mproc_dict_item bad[] = {{.key = "a", .klen = 1, .val = NULL, .vlen = 1}};
    CHECK_RC(mproc_dict_set_many(d, bad, 1), -EINVAL);

    mproc_dict_item q[] = {{.key = "d", .klen = 1},
                           {.key = "zz", .klen = 2},
                           {.key = "a", .klen = 1},
                           {.key = "", .klen = 0}};
    void *block;
    CHECK_EQ(mproc_dict_get_many(d, q, 4, &block), 2);
    CHECK(block != NULL);
    CHECK(q[0].vlen == 7 && memcmp(q[0].val, "D again", 7) == 0);
    CHECK(q[1].val == NULL && q[1].vlen == 0);
    CHECK(q[2].vlen == 7 && memcmp(q[2].val, "changed", 7) == 0);
    CHECK(q[3].val == NULL);
    free(block);
    mproc_dict_item none[] = {{.key = "nope", .klen = 4}};
    CHECK_EQ(mproc_dict_get_many(d, none, 1, &block), 0);
    CHECK(block == NULL);
    CHECK_EQ(mproc_dict_get_many(d, none, 0, &block), 0);
    CHECK_OK(mproc__dict_check(d));
    mproc_dict_free(d);
}

/* Batches larger than the on-stack hash array, and a batch that grows the table. */
TEST(big_batches)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    enum { N = 5000 };
    mproc_dict_item *it = calloc(N, sizeof *it);
    uint32_t *keys = calloc(N, sizeof *keys);
    for (uint32_t i = 0; i < N; i++) {
        keys[i] = i * 2654435761u;
        it[i] = (mproc_dict_item){.key = &keys[i], .klen = 4, .val = &keys[i], .vlen = 4};
    }
    CHECK_OK(mproc_dict_set_many(d, it, N));
    for (uint32_t i = 0; i < N; i++)
        it[i].val = NULL;
    void *block;
    CHECK_EQ(mproc_dict_get_many(d, it, N, &block), N);
    for (uint32_t i = 0; i < N; i++)
        CHECK(it[i].vlen == 4 && memcmp(it[i].val, &keys[i], 4) == 0);
    free(block);
    CHECK_OK(mproc__dict_check(d));
    free(it);
    free(keys);
    mproc_dict_free(d);
}

/* ---- shared by processes ---- */

enum { WRITERS = 4 };

typedef struct {
    mproc_dict *d;
    int id;
    int ops;
    _Atomic int *stop;
    _Atomic int *bad;
} warg;

static warg *new_warg(mproc_dict *d, int id, int ops, _Atomic int *flags)
{
    warg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    *a = (warg){.d = d, .id = id, .ops = ops, .stop = flags, .bad = flags + 1};
    return a;
}

static int scaled(int n)
{
    return (int)(n / harness_slow());
}

/* Writer id: keys "id:j" for j < 1000, set to "id:j:op" for op = 0, 1, ...; every 3rd op
 * deletes the key instead, every 7th reads it back. Final state: a function of (id, ops). */
static int writer(void *arg)
{
    warg *a = arg;
    char k[32], v[48], got[48];
    for (int op = 0; op < a->ops; op++) {
        int j = op % 1000;
        int kl = snprintf(k, sizeof k, "%d:%d", a->id, j);
        if (op % 3 == 2) {
            /* Present unless the op before on this key (op - 1000) deleted it too. */
            int want = op >= 1000 && (op - 1000) % 3 != 2 ? 0 : -ENOENT;
            if (mproc_dict_del(a->d, k, (size_t)kl) != want) return 1;
            continue;
        }
        int vl = snprintf(v, sizeof v, "%d:%d:%d", a->id, j, op);
        if (mproc_dict_set(a->d, k, (size_t)kl, v, (size_t)vl) != 0) return 2;
        if (op % 7 == 0) {
            size_t n;
            if (mproc_dict_get(a->d, k, (size_t)kl, got, sizeof got, &n) != 0) return 3;
            if (n != (size_t)vl || memcmp(got, v, n) != 0) return 4;
        }
    }
    return 0;
}

TEST_T(concurrent_writers_exact_contents, 120)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    int ops = scaled(100000);
    ops -= ops % 3000; /* whole rounds: each key's last op is known */
    mproc_process *p[WRITERS];
    warg *a[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        p[i] = harness_start(writer, a[i] = new_warg(d, i, ops, NULL));
    for (int i = 0; i < WRITERS; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    /* The last op on key j is op = ops - 1000 + j (rounds of 1000 ops, ops % 3000 == 0): the key
     * exists with that op's value unless that op was a delete. */
    size_t want = 0;
    char k[32], v[48];
    for (int i = 0; i < WRITERS; i++)
        for (int j = 0; j < 1000; j++) {
            int op = ops - 1000 + j;
            int kl = snprintf(k, sizeof k, "%d:%d", i, j);
            if (op % 3 == 2) {
                CHECK_EQ(mproc_dict_contains(d, k, (size_t)kl), 0);
                continue;
            }
            want++;
            snprintf(v, sizeof v, "%d:%d:%d", i, j, op);
            CHECK(strcmp(get_s(d, k), v) == 0);
        }
    size_t n;
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, want);
    CHECK_OK(mproc__dict_check(d));
    for (int i = 0; i < WRITERS; i++)
        mproc_shared_free(a[i]);
    mproc_dict_free(d);
}

/* Writer of pairs: keys "x<id>" and "y<id>" always set together (set_many) to the same counter
 * value, and "seq<id>:<n>" inserted one by one in order. */
static int pair_writer(void *arg)
{
    warg *a = arg;
    char kx[16], ky[16], ks[32];
    int lx = snprintf(kx, sizeof kx, "x%d", a->id), ly = snprintf(ky, sizeof ky, "y%d", a->id);
    for (uint64_t c = 1; !atomic_load(a->stop); c++) {
        mproc_dict_item two[] = {{.key = kx, .klen = (size_t)lx, .val = &c, .vlen = sizeof c},
                                 {.key = ky, .klen = (size_t)ly, .val = &c, .vlen = sizeof c}};
        if (mproc_dict_set_many(a->d, two, 2) != 0) return 1;
        int l = snprintf(ks, sizeof ks, "seq%d:%llu", a->id, (unsigned long long)c);
        if (c < 20000 && mproc_dict_set(a->d, ks, (size_t)l, &c, sizeof c) != 0) return 2;
    }
    return 0;
}

TEST_T(snapshots_and_batches_are_atomic_while_others_write, 120)
{
    mproc_dict *d;
    CHECK_OK(mproc_dict_new(&d, NULL));
    _Atomic int *flags = mproc_shared_alloc(2 * sizeof *flags);
    mproc_process *p[2];
    warg *a[2];
    for (int i = 0; i < 2; i++)
        p[i] = harness_start(pair_writer, a[i] = new_warg(d, i, 0, flags));
    int rounds = scaled(300), moved = 0;
    uint64_t lastx[2] = {0, 0};
    double t0 = harness_now();
    for (int r = 0; r < rounds || moved < 4; r++) {
        CHECK(harness_now() - t0 < 60);
        mproc_dict_item *it;
        size_t n;
        CHECK_OK(mproc_dict_items(d, false, &it, &n));
        uint64_t x[2] = {0, 0}, y[2] = {0, 0}, seq[2] = {0, 0};
        for (size_t i = 0; i < n; i++) {
            const char *k = it[i].key;
            uint64_t v;
            CHECK_EQ(it[i].vlen, sizeof v);
            memcpy(&v, it[i].val, sizeof v);
            int id = k[it[i].klen > 3 && k[0] == 's' ? 3 : 1] - '0';
            CHECK(id == 0 || id == 1);
            if (k[0] == 'x') x[id] = v;
            if (k[0] == 'y') y[id] = v;
            if (k[0] == 's') {
                /* Insertion order: each writer's seq keys appear in the order it made them. */
                CHECK_EQ(v, seq[id] + 1);
                seq[id] = v;
            }
        }
        for (int id = 0; id < 2; id++) {
            CHECK_EQ(x[id], y[id]); /* never half a batch */
            CHECK(x[id] >= lastx[id]);
            moved += x[id] > lastx[id];
            lastx[id] = x[id];
        }
        free(it);
        /* get_many sees both of a batch too. */
        mproc_dict_item q[] = {{.key = "x0", .klen = 2}, {.key = "y0", .klen = 2}};
        void *block;
        int found = mproc_dict_get_many(d, q, 2, &block);
        CHECK(found == 0 || found == 2);
        if (found == 2) CHECK(memcmp(q[0].val, q[1].val, 8) == 0);
        free(block);
    }
    atomic_store(flags, 1);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(harness_join(p[i]), 0);
        mproc_shared_free(a[i]);
    }
    CHECK(moved > 0); /* the writers did write while we looked */
    CHECK_OK(mproc__dict_check(d));
    mproc_shared_free(flags);
    mproc_dict_free(d);
}
