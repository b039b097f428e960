/* mproc_list: every call and error code, Python's indexes, and the list shared by processes.
 * Processes killed inside a call are in test_container_recovery.c. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "container/container.h"
#include "harness.h"

static size_t in_use(void)
{
    mproc__arena_stats st;
    mproc__arena_get_stats(&st);
    return st.in_use;
}

/* The list's items as strings joined by ','. */
static const char *items_s(mproc_list *l)
{
    static char buf[4096];
    size_t n;
    CHECK_OK(mproc_list_len(l, &n));
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char it[256];
        size_t len;
        CHECK_OK(mproc_list_get(l, (ptrdiff_t)i, it, sizeof it - 1, &len));
        it[len] = 0;
        if (i) strcat(buf, ",");
        strcat(buf, it);
    }
    return buf;
}

static int app(mproc_list *l, const char *s)
{
    return mproc_list_append(l, s, strlen(s));
}

TEST(append_get_set_pop_insert_len_clear)
{
    size_t before = in_use();
    mproc_list *l;
    CHECK_OK(mproc_list_new(&l, NULL));
    size_t n = 9;
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, 0);
    CHECK_OK(app(l, "a"));
    CHECK_OK(app(l, "b"));
    CHECK_OK(app(l, "c"));
    CHECK(strcmp(items_s(l), "a,b,c") == 0);
    char buf[64];
    size_t len;
    CHECK_OK(mproc_list_get(l, -1, buf, sizeof buf, &len));
    CHECK(len == 1 && buf[0] == 'c');
    CHECK_OK(mproc_list_get(l, -3, buf, sizeof buf, &len));
    CHECK(buf[0] == 'a');
    CHECK_RC(mproc_list_get(l, 3, buf, sizeof buf, &len), -ERANGE);
    CHECK_RC(mproc_list_get(l, -4, buf, sizeof buf, &len), -ERANGE);
    CHECK_OK(mproc_list_set(l, 1, "bee", 3));
    CHECK_OK(mproc_list_set(l, -1, "sea", 3));
    CHECK_RC(mproc_list_set(l, 3, "x", 1), -ERANGE);
    CHECK(strcmp(items_s(l), "a,bee,sea") == 0);
    /* insert clamps, as list.insert */
    CHECK_OK(mproc_list_insert(l, 0, "first", 5));
    CHECK_OK(mproc_list_insert(l, 100, "last", 4));
    CHECK_OK(mproc_list_insert(l, -100, "zeroth", 6));
    CHECK_OK(mproc_list_insert(l, -1, "penultimate", 11));
    CHECK_OK(mproc_list_insert(l, 2, "mid", 3));
    CHECK(strcmp(items_s(l), "zeroth,first,mid,a,bee,sea,penultimate,last") == 0);
    /* pop: copies out, or just removes; -EMSGSIZE leaves it */
    CHECK_OK(mproc_list_pop(l, -1, buf, sizeof buf, &len));
    CHECK(len == 4 && memcmp(buf, "last", 4) == 0);
    CHECK_RC(mproc_list_pop(l, 0, buf, 3, &len), -EMSGSIZE);
    CHECK_EQ(len, 6);
    CHECK_OK(mproc_list_pop(l, 0, NULL, 0, &len));
    CHECK_EQ(len, 6);
    CHECK_OK(mproc_list_pop(l, 1, NULL, 0, NULL));
    CHECK(strcmp(items_s(l), "first,a,bee,sea,penultimate") == 0);
    CHECK_RC(mproc_list_pop(l, 5, NULL, 0, NULL), -ERANGE);
    CHECK_RC(mproc_list_pop(l, -6, NULL, 0, NULL), -ERANGE);
    void *v;
    CHECK_OK(mproc_list_get_alloc(l, 2, &v, &len));
    CHECK(len == 3 && memcmp(v, "bee", 3) == 0);
    free(v);
    CHECK_RC(mproc_list_get_alloc(l, 9, &v, &len), -ERANGE);
    CHECK(v == NULL);
    /* A size query, and empty items. */
    CHECK_RC(mproc_list_get(l, 4, NULL, 0, &len), -EMSGSIZE);
    CHECK_EQ(len, 11);
    CHECK_OK(mproc_list_append(l, NULL, 0));
    CHECK_OK(mproc_list_get(l, -1, NULL, 0, &len));
    CHECK_EQ(len, 0);
    CHECK_OK(mproc__list_check(l));
    CHECK_OK(mproc_list_clear(l));
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, 0);
    CHECK_RC(mproc_list_pop(l, -1, NULL, 0, NULL), -ERANGE);
    CHECK_OK(app(l, "again"));
    CHECK(strcmp(items_s(l), "again") == 0);
    mproc_list_free(l);
    CHECK_EQ(in_use(), before);
}

TEST(limits_and_bad_arguments)
{
    mproc_list *l;
    CHECK_OK(mproc_list_new(&l, &(mproc_dict_opts){.max_value = 4, .max_items = 2}));
    CHECK_RC(mproc_list_append(l, "12345", 5), -E2BIG);
    CHECK_OK(mproc_list_append(l, "1234", 4));
    CHECK_OK(mproc_list_insert(l, 0, "0", 1));
    CHECK_RC(mproc_list_append(l, "x", 1), -ENOSPC);
    CHECK_RC(mproc_list_insert(l, 0, "x", 1), -ENOSPC);
    CHECK_RC(mproc_list_set(l, 0, "12345", 5), -E2BIG);
    CHECK(strcmp(items_s(l), "0,1234") == 0);
    size_t n;
    CHECK_RC(mproc_list_append(l, NULL, 1), -EINVAL);
    CHECK_RC(mproc_list_insert(l, 0, NULL, 1), -EINVAL);
    CHECK_RC(mproc_list_set(l, 0, NULL, 1), -EINVAL);
    CHECK_RC(mproc_list_get(l, 0, NULL, 1, &n), -EINVAL);
    CHECK_RC(mproc_list_pop(l, 0, NULL, 1, &n), -EINVAL);
    CHECK_RC(mproc_list_get_alloc(l, 0, NULL, &n), -EINVAL);
    CHECK_RC(mproc_list_len(l, NULL), -EINVAL);
    CHECK_RC(mproc_list_new(NULL, NULL), -EINVAL);
    CHECK(strcmp(items_s(l), "0,1234") == 0);
    mproc_list_free(l);
}

/* PTRDIFF_MIN counts back further than any list: out of range, or the front for an insert (its
 * negation overflowed, caught by UBSan from a manager client: fuzz_manager_protocol). */
TEST(the_most_negative_index)
{
    mproc_list *l;
    CHECK_OK(mproc_list_new(&l, NULL));
    CHECK_OK(app(l, "a"));
    size_t n;
    char buf[8];
    CHECK_RC(mproc_list_get(l, PTRDIFF_MIN, buf, sizeof buf, &n), -ERANGE);
    CHECK_RC(mproc_list_set(l, PTRDIFF_MIN, "x", 1), -ERANGE);
    CHECK_RC(mproc_list_pop(l, PTRDIFF_MIN, buf, sizeof buf, &n), -ERANGE);
    CHECK_OK(mproc_list_insert(l, PTRDIFF_MIN, "b", 1));
    CHECK(strcmp(items_s(l), "b,a") == 0);
    mproc_list_free(l);
}

TEST(bad_handles_are_einval)
{
    long junk[64] = {0};
    mproc_list *freed;
    CHECK_OK(mproc_list_new(&freed, NULL));
    mproc_list_free(freed);
    mproc_dict *dict; /* another kind of container */
    CHECK_OK(mproc_dict_new(&dict, NULL));
    void *blank = mproc_shared_alloc(256);
    mproc_list *all[] = {NULL, (mproc_list *)junk, blank, freed, (mproc_list *)dict};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        mproc_list *l = all[i];
        char buf[4];
        size_t n;
        void *v;
        CHECK_RC(mproc_list_append(l, "v", 1), -EINVAL);
        CHECK_RC(mproc_list_insert(l, 0, "v", 1), -EINVAL);
        CHECK_RC(mproc_list_get(l, 0, buf, sizeof buf, &n), -EINVAL);
        CHECK_RC(mproc_list_get_alloc(l, 0, &v, &n), -EINVAL);
        CHECK_RC(mproc_list_set(l, 0, "v", 1), -EINVAL);
        CHECK_RC(mproc_list_pop(l, 0, buf, sizeof buf, &n), -EINVAL);
        CHECK_RC(mproc_list_len(l, &n), -EINVAL);
        CHECK_RC(mproc_list_clear(l), -EINVAL);
        mproc_list_free(l); /* ignored */
    }
    CHECK_OK(mproc_dict_set(dict, "k", 1, "v", 1)); /* left alone by the list calls */
    mproc_dict_free(dict);
    mproc_shared_free(blank);
}

/* Through growth of the array, items of every size class, inserts and pops in the middle. */
TEST(grows_and_shifts)
{
    size_t before = in_use();
    mproc_list *l;
    CHECK_OK(mproc_list_new(&l, NULL));
    enum { N = 3000 };
    static unsigned char v[3000];
    for (size_t i = 0; i < sizeof v; i++)
        v[i] = (unsigned char)(i * 13);
    for (uint32_t i = 0; i < N; i++)
        CHECK_OK(mproc_list_insert(l, i % 2 ? -1 : (ptrdiff_t)(i / 2), v, i));
    /* Python: for i in range(N): l.insert(-1 if i % 2 else i // 2, ...) */
    uint32_t *model = malloc(N * sizeof *model);
    size_t mlen = 0;
    for (uint32_t i = 0; i < N; i++) {
        size_t at = i % 2 ? (mlen ? mlen - 1 : 0) : i / 2;
        if (at > mlen) at = mlen;
        memmove(model + at + 1, model + at, (mlen - at) * sizeof *model);
        model[at] = i;
        mlen++;
    }
    size_t n;
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, N);
    static unsigned char got[3000];
    for (size_t k = 0; k < N; k++) {
        size_t len;
        CHECK_OK(mproc_list_get(l, (ptrdiff_t)k, got, sizeof got, &len));
        CHECK_EQ(len, model[k]);
        CHECK(memcmp(got, v, len) == 0);
    }
    for (size_t k = 0; k < N / 2; k++) {
        size_t len, at = (k * 7) % (N - k);
        CHECK_OK(mproc_list_pop(l, (ptrdiff_t)at, got, sizeof got, &len));
        CHECK_EQ(len, model[at]);
        memmove(model + at, model + at + 1, (N - k - at - 1) * sizeof *model);
    }
    for (size_t k = 0; k < N - N / 2; k++) {
        size_t len;
        CHECK_OK(mproc_list_get(l, (ptrdiff_t)k, got, sizeof got, &len));
        CHECK_EQ(len, model[k]);
    }
    CHECK_OK(mproc__list_check(l));
    free(model);
    mproc_list_free(l);
    CHECK_EQ(in_use(), before);
}

/* ---- shared by processes ---- */

enum { WRITERS = 4 };

typedef struct {
    mproc_list *l;
    uint32_t id, ops;
} larg;

/* Appends (id, seq) for seq < ops; every 4th op also pops the item it finds first and puts it
 * back at the end, so items move while others append. */
static int appender(void *arg)
{
    larg *a = arg;
    for (uint32_t s = 0; s < a->ops; s++) {
        uint32_t item[2] = {a->id, s};
        if (mproc_list_append(a->l, item, sizeof item) != 0) return 1;
        if (s % 4 == 3) {
            uint32_t got[2];
            size_t len;
            if (mproc_list_pop(a->l, 0, got, sizeof got, &len) != 0 || len != sizeof got) return 2;
            if (mproc_list_append(a->l, got, sizeof got) != 0) return 3;
        }
    }
    return 0;
}

TEST_T(concurrent_writers_exact_contents, 120)
{
    mproc_list *l;
    CHECK_OK(mproc_list_new(&l, NULL));
    uint32_t ops = (uint32_t)(25000 / harness_slow());
    mproc_process *p[WRITERS];
    larg *a[WRITERS];
    for (uint32_t i = 0; i < WRITERS; i++) {
        a[i] = mproc_shared_alloc(sizeof *a[i]);
        *a[i] = (larg){.l = l, .id = i, .ops = ops};
        p[i] = harness_start(appender, a[i]);
    }
    for (int i = 0; i < WRITERS; i++)
        CHECK_EQ(harness_join(p[i]), 0);
    size_t n;
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, (size_t)WRITERS * ops);
    /* Every (id, seq) exactly once. */
    unsigned char *seen = calloc((size_t)WRITERS * ops, 1);
    for (size_t k = 0; k < n; k++) {
        uint32_t it[2];
        size_t len;
        CHECK_OK(mproc_list_get(l, (ptrdiff_t)k, it, sizeof it, &len));
        CHECK_EQ(len, sizeof it);
        CHECK(it[0] < WRITERS && it[1] < ops);
        CHECK_EQ(seen[it[0] * ops + it[1]]++, 0);
    }
    free(seen);
    CHECK_OK(mproc__list_check(l));
    for (int i = 0; i < WRITERS; i++)
        mproc_shared_free(a[i]);
    mproc_list_free(l);
}
