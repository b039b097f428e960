/* Dicts and lists outlive processes killed inside a call: at every store of every kind of change
 * (each kill point in turn, deterministically), and by SIGKILL at random points while others
 * write. After a kill the container is consistent, the change the dead process was making has
 * happened entirely or not at all, and at most one block leaked. The API itself is tested in
 * test_dict.c and test_list.c. */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* ---- every kill point of every change ---- */

/* A scenario: a container made with `setup`, then one call `op` on it. */
typedef struct {
    const char *name;
    bool list;
    void (*setup)(void *c);
    int (*op)(void *c);
    size_t leak_max; /* bytes one leaked block may take: the largest block the scenario has */
} scenario;

static char val_big[3000];

static void setup_dict(void *c)
{
    mproc_dict *d = c;
    const char *k[] = {"a", "b", "c", "d", "e", "f"};
    for (int i = 0; i < 6; i++)
        CHECK_OK(mproc_dict_set(d, k[i], 1, val_big, (size_t)(1 + i * 500)));
    CHECK_OK(mproc_dict_del(d, "d", 1));
}
/* Eight entries used in a table of eight: the next new key rebuilds the table. */
static void setup_dict_full(void *c)
{
    mproc_dict *d = c;
    for (uint32_t i = 0; i < 8; i++)
        CHECK_OK(mproc_dict_set(d, &i, sizeof i, &i, sizeof i));
    uint32_t three = 3;
    CHECK_OK(mproc_dict_del(d, &three, sizeof three));
}
static int op_set_new(void *c)
{
    return mproc_dict_set(c, "new", 3, "value", 5);
}
static int op_set_replace(void *c)
{
    return mproc_dict_set(c, "b", 1, "replaced", 8);
}
static int op_del(void *c)
{
    return mproc_dict_del(c, "c", 1);
}
static int op_dict_clear(void *c)
{
    return mproc_dict_clear(c);
}
static int op_set_many(void *c)
{
    mproc_dict_item it[] = {{.key = "b", .klen = 1, .val = "B", .vlen = 1},
                            {.key = "n1", .klen = 2, .val = val_big, .vlen = 2000},
                            {.key = "n1", .klen = 2, .val = "again", .vlen = 5},
                            {.key = "a", .klen = 1, .val = "A", .vlen = 1},
                            {.key = "n2", .klen = 2, .val = "two", .vlen = 3}};
    return mproc_dict_set_many(c, it, 5);
}
static int op_set_grow(void *c)
{
    uint32_t k = 100;
    return mproc_dict_set(c, &k, sizeof k, "grown", 5);
}
static int op_set_many_grow(void *c)
{
    uint32_t k[12];
    mproc_dict_item it[12];
    for (uint32_t i = 0; i < 12; i++) {
        k[i] = i * 2; /* half of them replace */
        it[i] = (mproc_dict_item){.key = &k[i], .klen = 4, .val = "v", .vlen = 1};
    }
    return mproc_dict_set_many(c, it, 12);
}

static void setup_list(void *c)
{
    for (int i = 0; i < 10; i++)
        CHECK_OK(mproc_list_append(c, val_big, (size_t)(1 + i * 300)));
}
static void setup_list_full(void *c)
{
    for (int i = 0; i < 8; i++)
        CHECK_OK(mproc_list_append(c, &i, sizeof i));
}
static int op_append(void *c)
{
    return mproc_list_append(c, "tail", 4);
}
static int op_insert(void *c)
{
    return mproc_list_insert(c, 3, "ins", 3);
}
static int op_pop_mid(void *c)
{
    char buf[4096];
    return mproc_list_pop(c, 2, buf, sizeof buf, NULL);
}
static int op_pop_end(void *c)
{
    return mproc_list_pop(c, -1, NULL, 0, NULL);
}
static int op_list_set(void *c)
{
    return mproc_list_set(c, 4, "set", 3);
}
static int op_list_clear(void *c)
{
    return mproc_list_clear(c);
}

static const scenario scenarios[] = {
    {"dict set new", false, setup_dict, op_set_new, 4096},
    {"dict set replace", false, setup_dict, op_set_replace, 4096},
    {"dict del", false, setup_dict, op_del, 4096},
    {"dict clear", false, setup_dict, op_dict_clear, 4096},
    {"dict set_many", false, setup_dict, op_set_many, 4096},
    {"dict set growing the table", false, setup_dict_full, op_set_grow, 4096},
    {"dict set_many growing the table", false, setup_dict_full, op_set_many_grow, 4096},
    {"list append", true, setup_list, op_append, 4096},
    {"list append growing the array", true, setup_list_full, op_append, 4096},
    {"list insert", true, setup_list, op_insert, 4096},
    {"list pop (middle)", true, setup_list, op_pop_mid, 4096},
    {"list pop (end)", true, setup_list, op_pop_end, 4096},
    {"list set", true, setup_list, op_list_set, 4096},
    {"list clear", true, setup_list, op_list_clear, 4096},
};

static void *make(const scenario *s)
{
    void *c;
    if (s->list)
        CHECK_OK(mproc_list_new((mproc_list **)&c, NULL));
    else
        CHECK_OK(mproc_dict_new((mproc_dict **)&c, NULL));
    s->setup(c);
    return c;
}

static void drop(const scenario *s, void *c)
{
    if (s->list)
        mproc_list_free(c);
    else
        mproc_dict_free(c);
}

static int check(const scenario *s, void *c)
{
    return s->list ? mproc__list_check(c) : mproc__dict_check(c);
}

/* The contents as one malloc'd string: "key=checksum;..." or "checksum;..." (values can be long).
 */
static char *repr(const scenario *s, void *c)
{
    size_t cap = 1 << 16, used = 0;
    char *out = malloc(cap);
    out[0] = 0;
    if (s->list) {
        size_t n;
        CHECK_OK(mproc_list_len(c, &n));
        for (size_t i = 0; i < n; i++) {
            void *v;
            size_t len;
            CHECK_OK(mproc_list_get_alloc(c, (ptrdiff_t)i, &v, &len));
            used += (size_t)snprintf(out + used, cap - used, "%zx:%llx;", len,
                                     (unsigned long long)mproc__chash(v, len, 1));
            free(v);
        }
    } else {
        mproc_dict_item *it;
        size_t n;
        CHECK_OK(mproc_dict_items(c, false, &it, &n));
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(out + used, cap - used, "%llx=%zx:%llx;",
                                     (unsigned long long)mproc__chash(it[i].key, it[i].klen, 1),
                                     it[i].vlen,
                                     (unsigned long long)mproc__chash(it[i].val, it[i].vlen, 1));
        free(it);
    }
    return out;
}

typedef struct {
    const scenario *s;
    void *c;
    int k;
} crash_arg;

static int crash_child(void *arg)
{
    crash_arg *a = arg;
    mproc__container_crash_after = a->k;
    int r = a->s->op(a->c);
    mproc__container_crash_after = 0;
    return r == 0 ? 0 : 100;
}

/* Kill the op at its k-th store, for every k until it completes: each time the container is
 * consistent and holds the before or the after contents. Returns how many kill points left it
 * inconsistent (with the repair on, the case fails at the first). */
static int every_kill_point(const scenario *s, bool expect_clean)
{
    size_t base = in_use();
    void *c = make(s);
    char *before = repr(s, c);
    CHECK_OK(s->op(c));
    char *after = repr(s, c);
    drop(s, c);
    CHECK_EQ(in_use(), base);
    crash_arg *a = mproc_shared_alloc(sizeof *a);
    int bad = 0, k;
    for (k = 1;; k++) {
        CHECK(k < 10000);
        base = in_use();
        c = make(s);
        *a = (crash_arg){.s = s, .c = c, .k = k};
        int code = harness_join(harness_start(crash_child, a));
        if (code == 0) {
            char *now = repr(s, c);
            CHECK(strcmp(now, after) == 0);
            free(now);
            drop(s, c);
            break;
        }
        CHECK_EQ(code, -SIGKILL);
        if (check(s, c) != 0) {
            bad++;
            if (expect_clean)
                harness_fail(__FILE__, __LINE__, "%s: torn at kill point %d", s->name, k);
            continue; /* leave the torn container: freeing it could fault */
        }
        char *now = repr(s, c);
        bool whole = strcmp(now, before) == 0 || strcmp(now, after) == 0;
        free(now);
        if (!whole) {
            bad++;
            if (expect_clean)
                harness_fail(__FILE__, __LINE__, "%s: half done at kill point %d", s->name, k);
            continue;
        }
        /* Still usable, and at most one block lost. */
        if (s->list)
            CHECK_OK(mproc_list_append(c, "more", 4));
        else
            CHECK_OK(mproc_dict_set(c, "more", 4, "x", 1));
        CHECK_OK(check(s, c));
        drop(s, c);
        size_t leak = in_use() - base;
        if (leak > s->leak_max) {
            bad++;
            if (expect_clean)
                harness_fail(__FILE__, __LINE__, "%s: kill point %d leaked %zu bytes", s->name, k,
                             leak);
        }
    }
    if (expect_clean) printf("%s: %d kill points\n", s->name, k - 1);
    mproc_shared_free(a);
    free(before);
    free(after);
    return bad;
}

TEST_T(every_kill_point_of_every_change, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    memset(val_big, 'v', sizeof val_big);
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
        CHECK_EQ(every_kill_point(&scenarios[i], true), 0);
}

/* The same kills with the successor's repair switched off: the test above would fail without it
 * (this is what it catches). */
TEST_T(without_the_repair_kills_leave_torn_containers, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    memset(val_big, 'v', sizeof val_big);
    mproc__container_no_repair = 1;
    int torn = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++) {
        int bad = every_kill_point(&scenarios[i], false);
        printf("%s without repair: %d kill points torn\n", scenarios[i].name, bad);
        /* Every change of more than one store is journalled, so each leaves some torn (or
         * leaking more than a block); those of one store need no repair. */
        if (scenarios[i].op != op_set_replace && scenarios[i].op != op_list_set &&
            scenarios[i].op != op_append && scenarios[i].op != op_pop_end)
            CHECK(bad > 0);
        torn += bad;
    }
    CHECK(torn > 0);
}

/* ---- the repairer killed too ---- */

/* A successor that only takes the lock (and so repairs), killed at its m-th store. */
static int repair_child(void *arg)
{
    crash_arg *a = arg;
    mproc__container_crash_after = a->k;
    size_t n;
    int r = a->s->list ? mproc_list_len(a->c, &n) : mproc_dict_len(a->c, &n);
    mproc__container_crash_after = 0;
    return r == 0 ? 0 : 100;
}

/* Kill the op at its k-th store, then its successor at the m-th store of the repair, for every
 * k and m: a third process finds the container whole (before or after) with at most one block
 * lost per killed process. Catches a repair that is not idempotent (a block given back twice). */
static void every_kill_point_of_the_repair(const scenario *s)
{
    memset(val_big, 'v', sizeof val_big);
    char *before, *after;
    {
        void *c = make(s);
        before = repr(s, c);
        CHECK_OK(s->op(c));
        after = repr(s, c);
        drop(s, c);
    }
    crash_arg *a = mproc_shared_alloc(sizeof *a);
    int pairs = 0;
    for (int k = 1;; k++) {
        CHECK(k < 10000);
        void *c = make(s);
        *a = (crash_arg){.s = s, .c = c, .k = k};
        int code = harness_join(harness_start(crash_child, a));
        drop(s, c);
        if (code == 0) break;
        CHECK_EQ(code, -SIGKILL);
        for (int m = 1;; m++) {
            CHECK(m < 10000);
            size_t base = in_use();
            c = make(s);
            *a = (crash_arg){.s = s, .c = c, .k = k};
            CHECK_EQ(harness_join(harness_start(crash_child, a)), -SIGKILL);
            *a = (crash_arg){.s = s, .c = c, .k = m};
            code = harness_join(harness_start(repair_child, a));
            if (code != 0) CHECK_EQ(code, -SIGKILL);
            if (check(s, c) != 0)
                harness_fail(__FILE__, __LINE__, "%s: torn, op killed at %d, repair at %d", s->name,
                             k, m);
            char *now = repr(s, c);
            if (strcmp(now, before) != 0 && strcmp(now, after) != 0)
                harness_fail(__FILE__, __LINE__, "%s: half done, op killed at %d, repair at %d",
                             s->name, k, m);
            free(now);
            if (s->list)
                CHECK_OK(mproc_list_append(c, "more", 4));
            else
                CHECK_OK(mproc_dict_set(c, "more", 4, "x", 1));
            CHECK_OK(check(s, c));
            drop(s, c);
            size_t leak = in_use() - base;
            if (leak > 2 * s->leak_max)
                harness_fail(__FILE__, __LINE__, "%s: op killed at %d, repair at %d: leaked %zu",
                             s->name, k, m, leak);
            pairs++;
            if (code == 0) break;
        }
    }
    printf("%s: %d pairs of kill points\n", s->name, pairs);
    mproc_shared_free(a);
    free(before);
    free(after);
}

TEST_T(every_kill_point_of_the_repair_dict, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
        if (!scenarios[i].list) every_kill_point_of_the_repair(&scenarios[i]);
}

TEST_T(every_kill_point_of_the_repair_list, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
        if (scenarios[i].list) every_kill_point_of_the_repair(&scenarios[i]);
}

/* ---- SIGKILL at random points ---- */

enum { SURVIVORS = 2, PAIRS = 64, VKEYS = 20000 };

typedef struct {
    mproc_dict *d;
    mproc_list *l;
    _Atomic int stop;
    _Atomic int errors;
    _Atomic uint64_t survivor_ops[SURVIVORS];
    unsigned seed;
} kill_state;

typedef struct {
    kill_state *ks;
    int id;
} karg;

/* A value that checks itself: its length and bytes follow from (key hash, salt). */
static size_t make_val(unsigned char *buf, uint64_t kh, uint32_t salt)
{
    uint64_t x = kh ^ ((uint64_t)salt * 0x9e3779b97f4a7c15ULL);
    size_t len = 16 + (x % 8 == 0 ? x % 3000 : x % 48);
    memcpy(buf, &kh, 8);
    memcpy(buf + 8, &salt, 4);
    uint32_t l32 = (uint32_t)len;
    memcpy(buf + 12, &l32, 4);
    for (size_t i = 16; i < len; i++)
        buf[i] = (unsigned char)(x >> (i % 56)) ^ (unsigned char)i;
    return len;
}

static bool val_ok_kh(uint64_t kh, const void *val, size_t vlen)
{
    static unsigned char want[3100];
    uint32_t salt;
    if (vlen < 16) return false;
    memcpy(&salt, (const unsigned char *)val + 8, 4);
    return make_val(want, kh, salt) == vlen && memcmp(want, val, vlen) == 0;
}

static bool val_ok(const void *key, size_t klen, const void *val, size_t vlen)
{
    return val_ok_kh(mproc__chash(key, klen, 7), val, vlen);
}

static int set_checked(mproc_dict *d, const void *k, size_t kl, uint32_t salt)
{
    static unsigned char v[3100];
    return mproc_dict_set(d, k, kl, v, make_val(v, mproc__chash(k, kl, 7), salt));
}

/* A victim: random sets, deletes, batches and list changes until killed. */
static int victim(void *arg)
{
    karg *a = arg;
    kill_state *ks = a->ks;
    unsigned seed = ks->seed ^ (unsigned)a->id * 2654435761u;
    static unsigned char v[3100];
    char k[32];
    for (uint32_t op = 0;; op++) {
        int what = (int)(rand_r(&seed) % 16);
        int kl = snprintf(k, sizeof k, "v%u", rand_r(&seed) % VKEYS);
        if (what < 6) {
            if (set_checked(ks->d, k, (size_t)kl, op) != 0) return 1;
        } else if (what < 9) {
            int r = mproc_dict_del(ks->d, k, (size_t)kl);
            if (r != 0 && r != -ENOENT) return 2;
        } else if (what < 11) {
            /* A pair: both keys of pair p always hold the same value. */
            char ka[16], kb[16];
            unsigned p = rand_r(&seed) % PAIRS;
            int la = snprintf(ka, sizeof ka, "pa%u", p), lb = snprintf(kb, sizeof kb, "pb%u", p);
            size_t vl = make_val(v, 42, op);
            mproc_dict_item two[] = {{.key = ka, .klen = (size_t)la, .val = v, .vlen = vl},
                                     {.key = kb, .klen = (size_t)lb, .val = v, .vlen = vl}};
            if (mproc_dict_set_many(ks->d, two, 2) != 0) return 3;
        } else {
            size_t n;
            if (mproc_list_len(ks->l, &n) != 0) return 4;
            ptrdiff_t at = n ? (ptrdiff_t)(rand_r(&seed) % n) : 0;
            size_t vl = make_val(v, 9, op);
            int r = what < 13   ? mproc_list_insert(ks->l, at, v, vl)
                    : what < 15 ? mproc_list_pop(ks->l, at, NULL, 0, NULL)
                                : mproc_list_set(ks->l, at, v, vl);
            if (r != 0 && r != -ERANGE) return 5;
        }
    }
}

/* A survivor: its own keys, with an exact model checked at every read and at the end. */
static int survivor(void *arg)
{
    karg *a = arg;
    kill_state *ks = a->ks;
    enum { KEYS = 500 };
    uint32_t *model = calloc(KEYS, sizeof *model); /* salt + 1, 0: absent */
    unsigned seed = ks->seed + (unsigned)a->id;
    char k[32];
    static unsigned char got[3100];
    for (uint32_t op = 1;; op++) {
        bool stopping = atomic_load(&ks->stop);
        unsigned j = rand_r(&seed) % KEYS;
        int kl = snprintf(k, sizeof k, "s%d:%u", a->id, j);
        int what = (int)(rand_r(&seed) % 4);
        if (what < 2) {
            if (set_checked(ks->d, k, (size_t)kl, op) != 0) return 1;
            model[j] = op + 1;
        } else if (what == 2) {
            if (mproc_dict_del(ks->d, k, (size_t)kl) != (model[j] ? 0 : -ENOENT)) return 2;
            model[j] = 0;
        } else {
            size_t n;
            int r = mproc_dict_get(ks->d, k, (size_t)kl, got, sizeof got, &n);
            if (r != (model[j] ? 0 : -ENOENT)) return 3;
            if (r == 0 &&
                (!val_ok(k, (size_t)kl, got, n) || memcmp(got + 8, &(uint32_t){model[j] - 1}, 4)))
                return 4;
        }
        atomic_store(&ks->survivor_ops[a->id], op);
        if (stopping) break;
    }
    for (unsigned j = 0; j < KEYS; j++) {
        int kl = snprintf(k, sizeof k, "s%d:%u", a->id, j);
        size_t n;
        int r = mproc_dict_get(ks->d, k, (size_t)kl, got, sizeof got, &n);
        if (r != (model[j] ? 0 : -ENOENT)) return 5;
    }
    free(model);
    return mproc__dict_check(ks->d) == 0 && mproc__list_check(ks->l) == 0 ? 0 : 6;
}

TEST_T(sigkill_at_random_points, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    kill_state *ks = mproc_shared_alloc(sizeof *ks);
    CHECK_OK(mproc_dict_new(&ks->d, NULL));
    CHECK_OK(mproc_list_new(&ks->l, NULL));
    const char *env = getenv("CONTAINER_SEED");
    ks->seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("seed %u\n", ks->seed);
    srand(ks->seed);
    mproc_process *surv[SURVIVORS];
    karg *sa[SURVIVORS];
    for (int i = 0; i < SURVIVORS; i++) {
        sa[i] = mproc_shared_alloc(sizeof *sa[i]);
        *sa[i] = (karg){.ks = ks, .id = i};
        surv[i] = harness_start(survivor, sa[i]);
    }
    int kills = (int)(150 / harness_slow());
    for (int k = 0; k < kills; k++) {
        karg *va = mproc_shared_alloc(sizeof *va);
        *va = (karg){.ks = ks, .id = 100 + k};
        mproc_process *v = harness_start(victim, va);
        usleep((useconds_t)(rand() % 4000));
        CHECK_OK(mproc_process_kill(v));
        int code = harness_join(v);
        if (code != -SIGKILL) printf("victim %d exited %d\n", k, code);
        fflush(stdout);
        CHECK_EQ(code, -SIGKILL);
        mproc_shared_free(va);
    }
    /* The survivors go on after the massacre, then check their keys and the whole. */
    uint64_t mid = atomic_load(&ks->survivor_ops[0]) + atomic_load(&ks->survivor_ops[1]);
    double t0 = harness_now();
    while (atomic_load(&ks->survivor_ops[0]) + atomic_load(&ks->survivor_ops[1]) < mid + 2000) {
        CHECK(harness_now() - t0 < 30 * harness_slow());
        usleep(1000);
    }
    atomic_store(&ks->stop, 1);
    for (int i = 0; i < SURVIVORS; i++) {
        CHECK_EQ(harness_join(surv[i]), 0);
        mproc_shared_free(sa[i]);
    }
    /* The parent's look: consistent, every value whole, every pair equal, len agrees. */
    CHECK_OK(mproc__dict_check(ks->d));
    CHECK_OK(mproc__list_check(ks->l));
    mproc_dict_item *it;
    size_t n, len;
    CHECK_OK(mproc_dict_items(ks->d, false, &it, &n));
    CHECK_OK(mproc_dict_len(ks->d, &len));
    CHECK_EQ(len, n);
    size_t pairs = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = it[i].key;
        if (k[0] == 'p') {
            char other[16];
            int ol = snprintf(other, sizeof other, "p%c%.*s", k[1] == 'a' ? 'b' : 'a',
                              (int)it[i].klen - 2, k + 2);
            void *ov;
            size_t on;
            CHECK_OK(mproc_dict_get_alloc(ks->d, other, (size_t)ol, &ov, &on));
            CHECK(on == it[i].vlen && memcmp(ov, it[i].val, on) == 0);
            CHECK(val_ok_kh(42, ov, on));
            free(ov);
            pairs++;
            continue;
        }
        CHECK(val_ok(k, it[i].klen, it[i].val, it[i].vlen));
    }
    free(it);
    size_t ln;
    CHECK_OK(mproc_list_len(ks->l, &ln));
    for (size_t i = 0; i < ln; i++) {
        void *v;
        CHECK_OK(mproc_list_get_alloc(ks->l, (ptrdiff_t)i, &v, &len));
        CHECK(val_ok_kh(9, v, len));
        free(v);
    }
    printf("%d kills; dict %zu entries (%zu of pairs), list %zu items\n", kills, n, pairs, ln);
    mproc_dict_free(ks->d);
    mproc_list_free(ks->l);
    mproc_shared_free(ks);
}
