/* A program outside the family (exec'd by test_manager) that uses a manager's objects, through
 * proxies or, on a unix socket, in the server's arena mapped here (manager/share.c):
 * `manager_peer ADDRESS KEY SCENARIO [ARG]` (KEY "-" for none). PEER_EXPECT_MAPPED=1 or 0 in the
 * environment: each connection checks that it mapped the arena, or did not. Exit 0 when every
 * check of the scenario held; a failed check prints where and exits 1. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mproc.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "manager_peer:%d: CHECK(%s) failed\n", __LINE__, #c);                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK_RC(e, code)                                                                          \
    do {                                                                                           \
        int r_ = (e);                                                                              \
        if (r_ != (code)) {                                                                        \
            fprintf(stderr, "manager_peer:%d: %s = %d (%s), expected %d\n", __LINE__, #e, r_,      \
                    mproc_strerror(r_), (int)(code));                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PEER_TSAN 1
#endif
#endif
#ifndef PEER_TSAN
#define PEER_TSAN 0
#endif

static const char *address, *key;
static size_t keylen;
static bool mapped; /* the objects are the arena's own, not proxies */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static mproc_manager *connect_or_die(void)
{
    mproc_manager *m;
    CHECK_RC(mproc_manager_connect(&m, address, key, keylen), 0);
    /* a value's pointer is NULL through a proxy, the bytes themselves in the arena */
    mproc_value *probe;
    CHECK_RC(mproc_manager_value(m, "peer-probe", 8, false, &probe), 0);
    mapped = mproc_value_ptr(probe) != NULL;
    const char *want = getenv("PEER_EXPECT_MAPPED");
    if (want) CHECK(mapped == (strcmp(want, "1") == 0));
    if (!mapped) mproc_value_free(probe); /* a family member's handle is the object: kept */
    return m;
}

/* Open fds, and mappings of an arena memfd, in this process. */
static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d);
    int n = -1; /* the directory's own */
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int arena_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    CHECK(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, "mproc-arena") != NULL;
    fclose(f);
    return n;
}

static void every_type(mproc_manager *m)
{
    /* dict */
    mproc_dict *d;
    CHECK_RC(mproc_manager_dict(m, "d", &d), 0);
    CHECK_RC(mproc_dict_set(d, "k", 1, "value", 5), 0);
    char buf[64];
    size_t len = 0;
    CHECK_RC(mproc_dict_get(d, "k", 1, buf, sizeof buf, &len), 0);
    CHECK(len == 5 && memcmp(buf, "value", 5) == 0);
    CHECK_RC(mproc_dict_get(d, "k", 1, buf, 2, &len), -EMSGSIZE);
    CHECK(len == 5);
    CHECK_RC(mproc_dict_get(d, "nope", 4, buf, sizeof buf, &len), -ENOENT);
    void *a = NULL;
    CHECK_RC(mproc_dict_get_alloc(d, "k", 1, &a, &len), 0);
    CHECK(len == 5 && memcmp(a, "value", 5) == 0);
    free(a);
    CHECK_RC(mproc_dict_contains(d, "k", 1), 1);
    CHECK_RC(mproc_dict_contains(d, "x", 1), 0);
    size_t n = 0;
    CHECK_RC(mproc_dict_len(d, &n), 0);
    CHECK(n == 1);
    mproc_dict_item it[3] = {{"a", 1, "1", 1}, {"b", 1, "22", 2}, {"c", 1, "", 0}};
    CHECK_RC(mproc_dict_set_many(d, it, 3), 0);
    mproc_dict_item q[3] = {
        {.key = "b", .klen = 1}, {.key = "zz", .klen = 2}, {.key = "c", .klen = 1}};
    void *block = NULL;
    CHECK_RC(mproc_dict_get_many(d, q, 3, &block), 2);
    CHECK(q[0].vlen == 2 && memcmp(q[0].val, "22", 2) == 0 && q[1].val == NULL && q[2].val);
    free(block);
    mproc_dict_item *all = NULL;
    CHECK_RC(mproc_dict_items(d, false, &all, &n), 0);
    CHECK(n == 4 && all[0].klen == 1 && memcmp(all[0].key, "k", 1) == 0 && all[1].vlen == 1);
    free(all);
    CHECK_RC(mproc_dict_del(d, "k", 1), 0);
    CHECK_RC(mproc_dict_del(d, "k", 1), -ENOENT);
    CHECK_RC(mproc_dict_clear(d), 0);
    CHECK_RC(mproc_dict_len(d, &n), 0);
    CHECK(n == 0);

    /* list */
    mproc_list *l;
    CHECK_RC(mproc_manager_list(m, "l", &l), 0);
    CHECK_RC(mproc_list_append(l, "one", 3), 0);
    CHECK_RC(mproc_list_append(l, "three", 5), 0);
    CHECK_RC(mproc_list_insert(l, 1, "two", 3), 0);
    CHECK_RC(mproc_list_len(l, &n), 0);
    CHECK(n == 3);
    CHECK_RC(mproc_list_get(l, -1, buf, sizeof buf, &len), 0);
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    CHECK_RC(mproc_list_set(l, 0, "uno", 3), 0);
    CHECK_RC(mproc_list_get_alloc(l, 0, &a, &len), 0);
    CHECK(len == 3 && memcmp(a, "uno", 3) == 0);
    free(a);
    CHECK_RC(mproc_list_pop(l, 1, buf, 1, &len), -EMSGSIZE);
    CHECK(len == 3);
    CHECK_RC(mproc_list_pop(l, 1, buf, sizeof buf, &len), 0);
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
    CHECK_RC(mproc_list_get(l, 5, buf, sizeof buf, &len), -ERANGE);
    CHECK_RC(mproc_list_pop(l, 0, NULL, 0, NULL), 0);
    CHECK_RC(mproc_list_clear(l), 0);

    /* queue */
    mproc_queue *qu;
    CHECK_RC(
        mproc_manager_queue(m, "q", &(mproc_queue_opts){.max_items = 2, .joinable = true}, &qu), 0);
    CHECK(mproc_queue_empty(qu));
    CHECK_RC(mproc_queue_put(qu, "m1", 2, 0), 0);
    CHECK_RC(mproc_queue_put(qu, "m2", 2, MPROC_FOREVER), 0);
    CHECK(mproc_queue_full(qu) && mproc_queue_size(qu) == 2);
    CHECK_RC(mproc_queue_put(qu, "m3", 2, 0), -EAGAIN);
    CHECK_RC(mproc_queue_get(qu, buf, 1, &len, 0), -EMSGSIZE);
    CHECK(len == 2);
    CHECK_RC(mproc_queue_get(qu, buf, sizeof buf, &len, 0), 0);
    CHECK(len == 2 && memcmp(buf, "m1", 2) == 0);
    CHECK_RC(mproc_queue_get_alloc(qu, &a, &len, 1.0), 0);
    CHECK(len == 2 && memcmp(a, "m2", 2) == 0);
    free(a);
    CHECK_RC(mproc_queue_task_done(qu), 0);
    CHECK_RC(mproc_queue_join(qu, 0), -ETIMEDOUT);
    CHECK_RC(mproc_queue_task_done(qu), 0);
    CHECK_RC(mproc_queue_join(qu, 1.0), 0);
    CHECK(!mproc_queue_closed(qu));
    CHECK_RC(mproc_queue_close(qu), 0);
    CHECK(mproc_queue_closed(qu));
    CHECK_RC(mproc_queue_get(qu, buf, sizeof buf, &len, 1.0), MPROC_ECLOSED);

    /* event */
    mproc_event *e;
    CHECK_RC(mproc_manager_event(m, "e", &e), 0);
    CHECK(!mproc_event_is_set(e));
    CHECK_RC(mproc_event_wait(e, 0), -EAGAIN);
    CHECK_RC(mproc_event_set(e), 0);
    CHECK(mproc_event_is_set(e));
    CHECK_RC(mproc_event_wait(e, MPROC_FOREVER), 0);
    CHECK_RC(mproc_event_clear(e), 0);
    CHECK(!mproc_event_is_set(e));

    /* lock */
    mproc_lock *lk;
    CHECK_RC(mproc_manager_lock(m, "lock", &lk), 0);
    CHECK(!mproc_lock_locked(lk));
    /* Mapped, this releases the arena mutex itself: the deliberate misuse TSan reports, left out
     * there as in test_lock (tests/tsan.supp). */
    if (!(mapped && PEER_TSAN)) CHECK_RC(mproc_lock_release(lk), -EPERM);
    CHECK_RC(mproc_lock_acquire(lk, 1.0), 0);
    CHECK(mproc_lock_locked(lk));
    CHECK_RC(mproc_lock_acquire(lk, 0), -EDEADLK);
    CHECK_RC(mproc_lock_release(lk), 0);

    /* value */
    mproc_value *v;
    CHECK_RC(mproc_manager_value(m, "v", 16, true, &v), 0);
    CHECK(mproc_value_size(v) == 16);
    if (mapped)
        CHECK(mproc_value_ptr(v) != NULL && mproc_value_lock(v) != NULL);
    else
        CHECK(mproc_value_ptr(v) == NULL && mproc_value_lock(v) == NULL);
    CHECK_RC(mproc_value_store(v, "0123456789abcdef", 16), 0);
    CHECK_RC(mproc_value_load(v, buf, 4), 0);
    CHECK(memcmp(buf, "0123", 4) == 0);
    CHECK_RC(mproc_value_load(v, buf, 17), -EINVAL);

    /* kinds and names */
    mproc_event *wrong;
    CHECK_RC(mproc_manager_event(m, "d", &wrong), -EEXIST);
    CHECK_RC(mproc_manager_delete(m, "nothing"), -ENOENT);
    mproc_event *gone;
    CHECK_RC(mproc_manager_event(m, "gone", &gone), 0);
    CHECK_RC(mproc_manager_delete(m, "gone"), 0);
    if (!mapped) { /* mapped, the handle was the object, and the delete freed it */
        CHECK_RC(mproc_event_set(gone), -EIDRM);
        /* a proxy freed, and garbage, are not proxies */
        mproc_event_free(gone);
        CHECK_RC(mproc_event_set(gone), -EINVAL);
    }
    CHECK_RC(mproc_event_set((mproc_event *)buf), -EINVAL);
}

static void on_alarm(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: manager_peer ADDRESS KEY|- SCENARIO [ARG]\n");
        return 2;
    }
    address = argv[1];
    key = strcmp(argv[2], "-") ? argv[2] : NULL;
    keylen = key ? strlen(key) : 0;
    const char *sc = argv[3];
    if (strcmp(sc, "all") == 0) {
        mproc_manager *m = connect_or_die();
        every_type(m);
        mproc_manager_free(m);
    } else if (strcmp(sc, "share") == 0) {
        /* the family's dict, queue and event, from outside */
        mproc_manager *m = connect_or_die();
        mproc_dict *d;
        mproc_queue *q;
        mproc_event *go;
        CHECK_RC(mproc_manager_dict(m, "table", &d), 0);
        CHECK_RC(mproc_manager_queue(m, "results", NULL, &q), 0);
        CHECK_RC(mproc_manager_event(m, "go", &go), 0);
        CHECK_RC(mproc_event_wait(go, 20.0), 0); /* set by the family directly in the arena */
        char buf[32];
        size_t len;
        CHECK_RC(mproc_dict_get(d, "from-family", 11, buf, sizeof buf, &len), 0);
        CHECK(len == 3 && memcmp(buf, "yes", 3) == 0);
        CHECK_RC(mproc_dict_set(d, "from-outside", 12, "hello", 5), 0);
        CHECK_RC(mproc_queue_put(q, "done", 4, 5.0), 0);
        mproc_manager_free(m);
    } else if (strcmp(sc, "timeouts") == 0) {
        mproc_manager *m = connect_or_die();
        mproc_event *e;
        mproc_queue *q;
        mproc_lock *l;
        CHECK_RC(mproc_manager_event(m, "te", &e), 0);
        CHECK_RC(mproc_manager_queue(m, "tq", NULL, &q), 0);
        CHECK_RC(mproc_manager_lock(m, "tl", &l), 0);
        double t0 = now();
        CHECK_RC(mproc_event_wait(e, 0.2), -ETIMEDOUT);
        double dt = now() - t0;
        CHECK(dt >= 0.19 && dt < 2.0);
        char buf[8];
        t0 = now();
        CHECK_RC(mproc_queue_get(q, buf, sizeof buf, NULL, 0.2), -ETIMEDOUT);
        dt = now() - t0;
        CHECK(dt >= 0.19 && dt < 2.0);
        /* held by the test (a family member, directly in the arena) */
        t0 = now();
        CHECK_RC(mproc_lock_acquire(l, 0.2), -ETIMEDOUT);
        dt = now() - t0;
        CHECK(dt >= 0.19 && dt < 2.0);
        CHECK_RC(mproc_lock_acquire(l, 0), -EAGAIN);
        mproc_manager_free(m);
    } else if (strcmp(sc, "intr") == 0) {
        /* a signal handler during a parked wait: -EINTR, and the connection stays in step */
        struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
        sigaction(SIGALRM, &sa, NULL);
        mproc_manager *m = connect_or_die();
        mproc_event *e;
        mproc_dict *d;
        mproc_queue *q;
        CHECK_RC(mproc_manager_event(m, "ie", &e), 0);
        CHECK_RC(mproc_manager_dict(m, "id", &d), 0);
        CHECK_RC(mproc_manager_queue(m, "iq", NULL, &q), 0);
        for (int i = 0; i < 3; i++) {
            ualarm(100000, 0);
            CHECK_RC(mproc_event_wait(e, MPROC_FOREVER), -EINTR);
            char k[8];
            snprintf(k, sizeof k, "k%d", i);
            CHECK_RC(mproc_dict_set(d, k, strlen(k), k, strlen(k)), 0);
            char buf[8];
            size_t len;
            CHECK_RC(mproc_dict_get(d, k, strlen(k), buf, sizeof buf, &len), 0);
            CHECK(len == strlen(k) && memcmp(buf, k, len) == 0);
        }
        /* an interrupted get took nothing: a message put afterwards is there for the next get */
        ualarm(100000, 0);
        char buf[8];
        size_t len;
        CHECK_RC(mproc_queue_get(q, buf, sizeof buf, &len, MPROC_FOREVER), -EINTR);
        CHECK_RC(mproc_queue_put(q, "x", 1, 0), 0);
        CHECK_RC(mproc_queue_get(q, buf, sizeof buf, &len, 1.0), 0);
        CHECK(len == 1 && buf[0] == 'x');
        CHECK_RC(mproc_queue_size(q) == 0, 1);
        mproc_manager_free(m);
    } else if (strcmp(sc, "hold") == 0) {
        /* take the lock, say so, and wait to be killed */
        mproc_manager *m = connect_or_die();
        mproc_lock *l;
        mproc_event *held;
        CHECK_RC(mproc_manager_lock(m, "hl", &l), 0);
        CHECK_RC(mproc_manager_event(m, "held", &held), 0);
        CHECK_RC(mproc_lock_acquire(l, 10.0), 0);
        CHECK_RC(mproc_event_set(held), 0);
        pause();
    } else if (strcmp(sc, "acquire") == 0) {
        /* the next acquirer after a holder died */
        mproc_manager *m = connect_or_die();
        mproc_lock *l;
        CHECK_RC(mproc_manager_lock(m, "hl", &l), 0);
        CHECK_RC(mproc_lock_acquire(l, 10.0), MPROC_EOWNERDEAD);
        CHECK_RC(mproc_lock_release(l), 0);
        CHECK_RC(mproc_lock_acquire(l, 10.0), 0);
        CHECK_RC(mproc_lock_release(l), 0);
        mproc_manager_free(m);
    } else if (strcmp(sc, "block") == 0) {
        /* wait in the server until it dies: a clean error, no hang */
        mproc_manager *m = connect_or_die();
        mproc_event *e, *parked;
        CHECK_RC(mproc_manager_event(m, "never", &e), 0);
        CHECK_RC(mproc_manager_event(m, "parked", &parked), 0);
        /* the test kills the server once it sees the set, maybe before its reply reached us */
        int r = mproc_event_set(parked);
        CHECK(r == 0 || r == -EPIPE);
        if (r == 0) r = mproc_event_wait(e, 30.0);
        CHECK(r == -EPIPE || r == MPROC_ECLOSED);
        r = mproc_event_set(e); /* nobody there any more: fails at once too */
        CHECK(r == -EPIPE || r == MPROC_ECLOSED);
        mproc_manager_free(m);
    } else if (strcmp(sc, "outlive") == 0) {
        /* mapped: the server dies, the objects stay memory this process and the family share */
        mproc_manager *m = connect_or_die();
        CHECK(mapped);
        mproc_dict *d;
        mproc_event *ready, *killed;
        CHECK_RC(mproc_manager_dict(m, "kept", &d), 0);
        CHECK_RC(mproc_manager_event(m, "ready", &ready), 0);
        CHECK_RC(mproc_manager_event(m, "killed", &killed), 0);
        CHECK_RC(mproc_event_set(ready), 0);
        CHECK_RC(mproc_event_wait(killed, 20.0), 0); /* set by the test once the server is gone */
        char buf[8];
        size_t len;
        CHECK_RC(mproc_dict_get(d, "k", 1, buf, sizeof buf, &len), 0);
        CHECK(len == 1 && buf[0] == 'v');
        CHECK_RC(mproc_dict_set(d, "from-peer", 9, "w", 1), 0);
        mproc_dict *other;
        CHECK_RC(mproc_manager_dict(m, "other", &other), -EPIPE); /* names need the server */
        mproc_manager_free(m);
    } else if (strcmp(sc, "init") == 0) {
        /* mproc_init after connecting: the adopted arena is this process's, only its size is
         * too late to choose; processes started then are of the server's family too */
        mproc_manager *m = connect_or_die();
        if (mapped) CHECK_RC(mproc_init(&(mproc_config){.arena_size = 1 << 30}), -EALREADY);
        CHECK_RC(mproc_init(NULL), 0);
        CHECK_RC(mproc_init(NULL), -EALREADY);
        mproc_dict *d;
        CHECK_RC(mproc_manager_dict(m, "d", &d), 0);
        CHECK_RC(mproc_dict_set(d, "after-init", 10, "1", 1), 0);
        mproc_manager_free(m);
    } else if (strcmp(sc, "cycles") == 0) {
        /* connect and free again and again: one mapping, and no fd left over */
        mproc_manager *m = connect_or_die();
        mproc_manager_free(m);
        int fds = fd_count(), maps = arena_mappings();
        CHECK(maps == (mapped ? 1 : 0));
        for (int i = 0; i < 5; i++) {
            m = connect_or_die();
            mproc_dict *d;
            CHECK_RC(mproc_manager_dict(m, "cyc", &d), 0);
            CHECK_RC(mproc_dict_set(d, "k", 1, "v", 1), 0);
            mproc_manager_free(m);
            CHECK(fd_count() == fds);
            CHECK(arena_mappings() == maps);
        }
    } else if (strcmp(sc, "conns") == 0) {
        int n = argc > 4 ? atoi(argv[4]) : 200;
        mproc_manager **ms = calloc((size_t)n, sizeof *ms);
        mproc_dict **ds = calloc((size_t)n, sizeof *ds);
        CHECK(ms && ds);
        for (int i = 0; i < n; i++) {
            ms[i] = connect_or_die();
            CHECK_RC(mproc_manager_dict(ms[i], "many", &ds[i]), 0);
        }
        for (int i = 0; i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "%d", i);
            CHECK_RC(mproc_dict_set(ds[i], k, strlen(k), k, strlen(k)), 0);
        }
        size_t len = 0;
        CHECK_RC(mproc_dict_len(ds[0], &len), 0);
        CHECK(len == (size_t)n);
        for (int i = 0; i < n; i++)
            mproc_manager_free(ms[i]);
        free(ms);
        free(ds);
    } else if (strcmp(sc, "putwait") == 0) {
        /* a put parked on a full queue, completed once the family takes a message */
        mproc_manager *m = connect_or_die();
        mproc_queue *q;
        CHECK_RC(mproc_manager_queue(m, "one", &(mproc_queue_opts){.max_items = 1}, &q), 0);
        CHECK_RC(mproc_queue_put(q, "a", 1, 0), 0);
        CHECK_RC(mproc_queue_put(q, "b", 1, 20.0), 0);
        mproc_manager_free(m);
    } else if (strcmp(sc, "oversize") == 0) {
        /* a request past the server's max_message (ARG) is refused here, and nothing breaks */
        mproc_manager *m = connect_or_die();
        mproc_queue *q;
        CHECK_RC(mproc_manager_queue(m, "big", NULL, &q), 0);
        size_t n = (size_t)atol(argv[4]);
        char *big = calloc(1, n);
        CHECK(big);
        CHECK_RC(mproc_queue_put(q, big, n, 0), -EMSGSIZE);
        CHECK_RC(mproc_queue_put(q, big, 16, 0), 0);
        CHECK(mproc_queue_size(q) == 1);
        free(big);
        mproc_manager_free(m);
    } else if (strcmp(sc, "wrongkey") == 0) {
        mproc_manager *m;
        CHECK_RC(mproc_manager_connect(&m, address, key, keylen), MPROC_EAUTH);
    } else {
        fprintf(stderr, "manager_peer: unknown scenario %s\n", sc);
        return 2;
    }
    return 0;
}
