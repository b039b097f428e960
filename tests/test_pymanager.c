/* The client of a Python manager (src/channel/pymanager.c) against a real CPython SyncManager
 * (tests/python/py_manager.py serve), with Python clients of the same objects on the other side:
 * dict get/set/KeyError, Event both ways, Queue with timeouts, a registered name (get_jobs),
 * reference counts, wrong keys, and the cost of a connection and of an op beside Python's own. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/pymanager.h"
#include "mproc.h"
#include "harness.h"
#include "py_util.h"

#define KEY "manager key"
#define KEYHEX "6d616e61676572206b6579"

typedef struct {
    py_helper h;
    char address[256];
    mproc__pym *m;
} server;

static server serve_with(const char *python, const char *address)
{
    server s;
    const char *args[] = {"serve", address, KEYHEX, NULL};
    s.h = py_spawn(python, "py_manager.py", args);
    py_await_ready(&s.h, s.address, sizeof s.address);
    CHECK_OK(mproc__pym_connect(&s.m, s.address, KEY, strlen(KEY)));
    return s;
}

static server serve(const char *address)
{
    py_need();
    return serve_with("python3", address);
}

static void stop(server *s)
{
    CHECK_OK(mproc__pym_shutdown(s->m));
    mproc__pym_free(s->m);
    CHECK_EQ(py_reap(&s->h), 0);
}

/* A Python client of the same server, started and past its READY line. */
static py_helper client(const server *s, const char *mode, const char *arg)
{
    const char *args[] = {mode, s->address, KEYHEX, arg, NULL};
    py_helper h = py_spawn("python3", "py_manager.py", args);
    char rest[8];
    py_await_ready(&h, rest, sizeof rest);
    return h;
}

static int run_client(const server *s, const char *mode, const char *arg)
{
    const char *args[] = {mode, s->address, KEYHEX, arg, NULL};
    py_helper h = py_spawn("python3", "py_manager.py", args);
    return py_reap(&h);
}

static void dict_ops(server *s)
{
    mproc__pym_proxy *d;
    CHECK_OK(mproc__pym_create(s->m, "dict", NULL, NULL, &d));
    CHECK(strcmp(mproc__pym_typeid(d), "dict") == 0);
    CHECK(mproc__pym_exposes(d, "__getitem__") && mproc__pym_exposes(d, "__setitem__"));
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(d, "__setitem__",
                             mproc__pk_tuple(a, 2, mproc__pk_cstr(a, "k"),
                                             mproc__pk_bytes(a, MPROC__PK_BYTES, "v\0w", 3)),
                             NULL, &res));
    CHECK_EQ(res->kind, MPROC__PK_NONE);
    CHECK_OK(mproc__pym_call(d, "__getitem__", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "k")), NULL,
                             &res));
    CHECK(res->kind == MPROC__PK_BYTES && res->n == 3 && memcmp(res->u.bytes, "v\0w", 3) == 0);
    CHECK_OK(mproc__pym_call(d, "__len__", NULL, NULL, &res));
    CHECK(res->kind == MPROC__PK_INT && res->u.i == 1);
    /* a dict view travels as builtins.list(...) */
    CHECK_OK(mproc__pym_call(d, "items", NULL, NULL, &res));
    char buf[64];
    mproc__pk_repr(res, buf, sizeof buf);
    CHECK(strcmp(buf, "[('k', b'v\\x00w')]") == 0);
    /* KeyError -> -ENOENT, with Python's text */
    CHECK_RC(mproc__pym_call(d, "__getitem__", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "nope")),
                             NULL, &res),
             -ENOENT);
    CHECK(strcmp(mproc__pym_error(d), "KeyError: 'nope'") == 0);
    /* get with a default, as Python's dict.get */
    CHECK_OK(
        mproc__pym_call(d, "get", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "nope")), NULL, &res));
    CHECK_EQ(res->kind, MPROC__PK_NONE);
    CHECK(strcmp(mproc__pym_error(d), "") == 0);
    /* a method the typeid does not expose: the server's traceback */
    CHECK_RC(mproc__pym_call(d, "__class__", NULL, NULL, &res), MPROC_EREMOTE);
    CHECK(strstr(mproc__pym_error(d), "not in exposed") != NULL);
    /* the connection is still in step */
    CHECK_OK(mproc__pym_call(d, "__contains__", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "k")), NULL,
                             &res));
    CHECK(res->kind == MPROC__PK_BOOL && res->u.b);
    mproc__pk_doc_free(a);
    mproc__pym_proxy_free(d);
}

TEST_T(dict_set_get_and_keyerror_over_tcp, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    dict_ops(&s);
    stop(&s);
}

TEST_T(dict_set_get_and_keyerror_over_unix, 60)
{
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-pym-%d", (int)getpid());
    server s = serve(addr);
    dict_ops(&s);
    stop(&s);
}

TEST_T(other_cpython_versions_serve_dict_and_event, 120)
{
    int ran = 0;
    static const char *versions[] = {"3.12", "3.13"};
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        const char *py = py_find(versions[i]);
        if (!py) continue;
        server s = serve_with(py, "tcp:127.0.0.1:0");
        dict_ops(&s);
        mproc__pym_proxy *ev;
        CHECK_OK(mproc__pym_create(s.m, "Event", NULL, NULL, &ev));
        CHECK_RC(mproc__pym_wait(ev, "wait", 0), -EAGAIN);
        CHECK_OK(mproc__pym_call(ev, "set", NULL, NULL, NULL));
        CHECK_OK(mproc__pym_wait(ev, "wait", MPROC_FOREVER));
        mproc__pym_proxy_free(ev);
        stop(&s);
        ran++;
    }
    if (!ran) harness_skip("no CPython 3.12 or 3.13 found");
}

TEST_T(create_holds_one_reference_and_free_drops_it, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    int64_t before = v->u.i;
    mproc__pk_doc_free(d);
    mproc__pym_proxy *p;
    CHECK_OK(mproc__pym_create(s.m, "list", NULL, NULL, &p));
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    CHECK_EQ(v->u.i, before + 1);
    mproc__pk_doc_free(d);
    /* incref + decref leave it alive */
    CHECK_OK(mproc__pym_incref(p));
    CHECK_OK(mproc__pym_decref(p));
    CHECK_RC(mproc__pym_call(p, "append", NULL, NULL, NULL), MPROC_EREMOTE);
    CHECK(strstr(mproc__pym_error(p), "TypeError") != NULL); /* append() takes one argument */
    mproc__pym_proxy_free(p);
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    CHECK_EQ(v->u.i, before);
    mproc__pk_doc_free(d);
    /* an unknown typeid: the server's traceback, on the manager */
    CHECK_RC(mproc__pym_create(s.m, "no_such_type", NULL, NULL, &p), MPROC_EREMOTE);
    CHECK(strstr(mproc__pym_manager_error(s.m), "no_such_type") != NULL);
    stop(&s);
}

TEST_T(wrong_key_is_refused, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym *m;
    CHECK_RC(mproc__pym_connect(&m, s.address, "other key", 9), MPROC_EAUTH);
    CHECK_RC(mproc__pym_connect(&m, NULL, "k", 1), -EINVAL);
    stop(&s);
}

TEST_T(event_set_in_c_is_seen_by_a_python_waiter, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *ev;
    CHECK_OK(mproc__pym_create(s.m, "get_event", NULL, NULL, &ev));
    CHECK_RC(mproc__pym_wait(ev, "wait", 0), -EAGAIN);
    double t0 = harness_now();
    CHECK_RC(mproc__pym_wait(ev, "wait", 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.15, 5 * harness_slow());
    py_helper w = client(&s, "wait_event", "60");
    CHECK_OK(mproc__pym_call(ev, "set", NULL, NULL, NULL));
    CHECK_EQ(py_reap(&w), 0);
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(ev, "is_set", NULL, NULL, &res));
    CHECK(res->kind == MPROC__PK_BOOL && res->u.b);
    mproc__pym_proxy_free(ev);
    stop(&s);
}

TEST_T(event_set_in_python_wakes_a_c_waiter, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *ev;
    CHECK_OK(mproc__pym_create(s.m, "get_event", NULL, NULL, &ev));
    CHECK_RC(mproc__pym_wait(ev, "wait", 0), -EAGAIN);
    py_helper setter = client(&s, "set_event", NULL);
    py_write_all(&setter, "go\n", 3);
    CHECK_OK(mproc__pym_wait(ev, "wait", 60));
    CHECK_OK(mproc__pym_wait(ev, "wait", MPROC_FOREVER));
    CHECK_EQ(py_reap(&setter), 0);
    /* an Event of C's own: clear, set, wait */
    mproc__pym_proxy *mine;
    CHECK_OK(mproc__pym_create(s.m, "Event", NULL, NULL, &mine));
    CHECK_RC(mproc__pym_wait(mine, "wait", 0), -EAGAIN);
    CHECK_OK(mproc__pym_call(mine, "set", NULL, NULL, NULL));
    CHECK_OK(mproc__pym_wait(mine, "wait", 1));
    /* a Lock: acquire, a second acquire times out, release */
    mproc__pym_proxy *lock;
    CHECK_OK(mproc__pym_create(s.m, "Lock", NULL, NULL, &lock));
    CHECK_OK(mproc__pym_wait(lock, "acquire", MPROC_FOREVER));
    CHECK_RC(mproc__pym_wait(lock, "acquire", 0), -EAGAIN);
    CHECK_RC(mproc__pym_wait(lock, "acquire", 0.1), -ETIMEDOUT);
    CHECK_OK(mproc__pym_call(lock, "release", NULL, NULL, NULL));
    CHECK_OK(mproc__pym_wait(lock, "acquire", 0));
    mproc__pym_proxy_free(lock);
    mproc__pym_proxy_free(mine);
    mproc__pym_proxy_free(ev);
    stop(&s);
}

TEST_T(queue_put_get_with_timeouts_and_a_python_peer, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *q;
    CHECK_OK(mproc__pym_create(s.m, "Queue", NULL, NULL, &q));
    const mproc__pk *item;
    CHECK_RC(mproc__pym_queue_get(q, 0, &item), -EAGAIN);
    CHECK(strcmp(mproc__pym_error(q), "Empty") == 0);
    double t0 = harness_now();
    CHECK_RC(mproc__pym_queue_get(q, 0.2, &item), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.15, 5 * harness_slow());
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    CHECK_OK(mproc__pym_queue_put(q, mproc__pk_int(a, 7), MPROC_FOREVER));
    CHECK_OK(mproc__pym_queue_put(q, mproc__pk_cstr(a, "eight"), 0));
    CHECK_OK(mproc__pym_queue_get(q, MPROC_FOREVER, &item));
    CHECK(item->kind == MPROC__PK_INT && item->u.i == 7);
    CHECK_OK(mproc__pym_queue_get(q, 1, &item));
    CHECK(mproc__pk_is_str(item, "eight"));
    CHECK_RC(mproc__pym_queue_get(q, NAN, &item), -EINVAL);
    /* a bounded queue: Full */
    mproc__pym_proxy *b;
    CHECK_OK(mproc__pym_create(s.m, "Queue", mproc__pk_tuple(a, 1, mproc__pk_int(a, 1)), NULL, &b));
    CHECK_OK(mproc__pym_queue_put(b, mproc__pk_int(a, 1), 0));
    CHECK_RC(mproc__pym_queue_put(b, mproc__pk_int(a, 2), 0), -EAGAIN);
    CHECK_RC(mproc__pym_queue_put(b, mproc__pk_int(a, 2), 0.1), -ETIMEDOUT);
    CHECK(strcmp(mproc__pym_error(b), "Full") == 0);
    mproc__pym_proxy_free(b);
    /* across languages: C puts, a Python client takes it and answers */
    mproc__pym_proxy *shared;
    CHECK_OK(mproc__pym_create(s.m, "get_queue", NULL, NULL, &shared));
    py_helper echo = client(&s, "echo_queue", NULL);
    CHECK_OK(mproc__pym_queue_put(shared, mproc__pk_cstr(a, "ping"), MPROC_FOREVER));
    CHECK_EQ(py_reap(&echo), 0);
    CHECK_OK(mproc__pym_queue_get(shared, 30, &item));
    char buf[64];
    mproc__pk_repr(item, buf, sizeof buf);
    CHECK(strcmp(buf, "('echo', 'ping')") == 0);
    mproc__pym_proxy_free(shared);
    mproc__pk_doc_free(a);
    mproc__pym_proxy_free(q);
    stop(&s);
}

TEST_T(registered_name_get_jobs_is_the_servers_dict, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *jobs;
    CHECK_OK(mproc__pym_create(s.m, "get_jobs", NULL, NULL, &jobs));
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(jobs, "__getitem__", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "alpha")),
                             NULL, &res));
    CHECK(res->kind == MPROC__PK_INT && res->u.i == 1);
    CHECK_OK(mproc__pym_call(jobs, "copy", NULL, NULL, &res));
    char buf[128];
    mproc__pk_repr(res, buf, sizeof buf);
    CHECK(strcmp(buf, "{'alpha': 1, 'beta': [2, 3]}") == 0);
    CHECK_OK(mproc__pym_call(
        jobs, "__setitem__",
        mproc__pk_tuple(a, 2, mproc__pk_cstr(a, "gamma"), mproc__pk_cstr(a, "from C")), NULL,
        NULL));
    CHECK_EQ(run_client(&s, "check_jobs", NULL), 0);
    mproc__pk_doc_free(a);
    mproc__pym_proxy_free(jobs);
    stop(&s);
}

TEST_T(a_proxy_reply_becomes_a_proxy_holding_its_reference, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    int64_t before = v->u.i;
    mproc__pk_doc_free(d);
    mproc__pym_proxy *box, *child;
    CHECK_OK(mproc__pym_create(s.m, "get_box", NULL, NULL, &box));
    CHECK_RC(mproc__pym_take_proxy(box, &child), -ENOENT);
    CHECK_RC(mproc__pym_call(box, "child", NULL, NULL, NULL), MPROC__PYM_PROXY);
    CHECK_OK(mproc__pym_take_proxy(box, &child));
    CHECK(strcmp(mproc__pym_typeid(child), "dict") == 0);
    CHECK(mproc__pym_exposes(child, "__getitem__"));
    CHECK(strcmp(mproc__pym_id(child), mproc__pym_id(box)) != 0);
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(child, "__getitem__",
                             mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "alpha")), NULL, &res));
    CHECK(res->kind == MPROC__PK_INT && res->u.i == 1);
    mproc__pk_doc_free(a);
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    CHECK_EQ(v->u.i, before + 2);
    mproc__pk_doc_free(d);
    /* a proxy reply nobody takes is let go with its maker */
    CHECK_RC(mproc__pym_call(box, "child", NULL, NULL, NULL), MPROC__PYM_PROXY);
    mproc__pym_proxy_free(box);
    mproc__pym_proxy_free(child);
    CHECK_OK(mproc__pym_request(s.m, "number_of_objects", NULL, NULL, &d, &v));
    CHECK_EQ(v->u.i, before);
    mproc__pk_doc_free(d);
    stop(&s);
}

static void on_alarm(int sig)
{
    (void)sig;
}

TEST_T(an_interrupted_call_never_desynchronises_the_proxy, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *ev;
    CHECK_OK(mproc__pym_create(s.m, "Event", NULL, NULL, &ev));
    struct sigaction sa = {.sa_handler = on_alarm};
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval it = {.it_value = {.tv_usec = 200000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK_RC(mproc__pym_wait(ev, "wait", MPROC_FOREVER), -EINTR);
    /* the server still waits on the old connection; the next call gets its own answer */
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(ev, "is_set", NULL, NULL, &res));
    CHECK(res->kind == MPROC__PK_BOOL && !res->u.b);
    CHECK_OK(mproc__pym_call(ev, "set", NULL, NULL, &res));
    CHECK_EQ(res->kind, MPROC__PK_NONE);
    CHECK_OK(mproc__pym_call(ev, "is_set", NULL, NULL, &res));
    CHECK(res->kind == MPROC__PK_BOOL && res->u.b);
    mproc__pym_proxy_free(ev);
    stop(&s);
}

TEST_T(a_dead_server_fails_calls_cleanly, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc__pym_proxy *d;
    CHECK_OK(mproc__pym_create(s.m, "dict", NULL, NULL, &d));
    CHECK_OK(mproc__pym_call(d, "__len__", NULL, NULL, NULL));
    kill(s.h.pid, SIGKILL);
    CHECK_EQ(py_reap(&s.h), -SIGKILL);
    int r = mproc__pym_call(d, "__len__", NULL, NULL, NULL);
    CHECK(r == MPROC_ECLOSED || r == -EPIPE || r == -ECONNRESET);
    /* and again: now nothing listens */
    CHECK_RC(mproc__pym_call(d, "__len__", NULL, NULL, NULL), -ECONNREFUSED);
    mproc__pk_doc *doc;
    mproc__pk *v;
    CHECK_RC(mproc__pym_request(s.m, "dummy", NULL, NULL, &doc, &v), -ECONNREFUSED);
    mproc__pym_proxy_free(d); /* its decref fails quietly */
    mproc__pym_free(s.m);
}

TEST_T(connection_setup_and_ops_per_second_beside_python, 120)
{
    server s = serve("tcp:127.0.0.1:0");
    enum { N = 2000, ROUNDS = 5 };
    double setup[ROUNDS], first[ROUNDS];
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    mproc__pym_proxy *d = NULL;
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = harness_now();
        mproc__pym *m;
        CHECK_OK(mproc__pym_connect(&m, s.address, KEY, strlen(KEY)));
        setup[i] = harness_now() - t0;
        t0 = harness_now();
        mproc__pym_proxy_free(d);
        CHECK_OK(mproc__pym_create(m, "dict", NULL, NULL, &d));
        CHECK_OK(mproc__pym_call(d, "__len__", NULL, NULL, NULL));
        first[i] = harness_now() - t0; /* create + the proxy's connection + one call */
        mproc__pym_free(m);
    }
    mproc__pk *set = mproc__pk_tuple(a, 2, mproc__pk_cstr(a, "k"), mproc__pk_int(a, 1));
    mproc__pk *get = mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "k"));
    double t0 = harness_now();
    for (int i = 0; i < N; i++) {
        CHECK_OK(mproc__pym_call(d, "__setitem__", set, NULL, NULL));
        CHECK_OK(mproc__pym_call(d, "__getitem__", get, NULL, NULL));
    }
    double ops = 2.0 * N / (harness_now() - t0);
    mproc__pym_proxy_free(d);
    mproc__pk_doc_free(a);
    char n[16];
    snprintf(n, sizeof n, "%d", N);
    const char *args[] = {"bench", s.address, KEYHEX, n, NULL};
    py_helper b = py_spawn("python3", "py_manager.py", args);
    char line[128];
    py_await_ready(&b, line, sizeof line); /* not READY: the helper prints BENCH */
    CHECK_EQ(py_reap(&b), 0);
    double connect_ms = harness_quantile(setup, ROUNDS, 0.5) * 1000;
    double first_ms = harness_quantile(first, ROUNDS, 0.5) * 1000;
    printf("    C client: connect+dummy %.2f ms, create+proxy connection+call %.2f ms, %.0f ops/s "
           "(dict set/get); Python client: %s\n",
           connect_ms, first_ms, ops, line);
    /* loose bands (a loaded machine): no 40 ms delayed-ACK stall, and a few thousand ops/s */
    CHECK(connect_ms < 40 * harness_slow());
    CHECK(first_ms < 80 * harness_slow());
    CHECK(ops > 500 / harness_slow());
    stop(&s);
}

/* ---- the public API against the same Python SyncManager (mproc_manager_connect) ---- */

static mproc_manager *connect_public(const server *s)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_connect(&m, s->address, KEY, strlen(KEY)));
    CHECK_EQ(mproc_manager_dialect(m), MPROC_MANAGER_DIALECT_PYTHON);
    return m;
}

TEST_T(public_dict_of_a_python_manager_with_keyerror_len_keys, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(m, "dict", &d)); /* a new one, freed with its handle */
    CHECK_OK(mproc_dict_set(d, "k", 1, "v\0w", 3));
    char buf[64];
    size_t n = 0;
    CHECK_OK(mproc_dict_get(d, "k", 1, buf, sizeof buf, &n));
    CHECK(n == 3 && memcmp(buf, "v\0w", 3) == 0);
    CHECK_RC(mproc_dict_get(d, "k", 1, buf, 2, &n), -EMSGSIZE);
    CHECK_EQ(n, 3u);
    CHECK_RC(mproc_dict_get(d, "nope", 4, buf, sizeof buf, &n), -ENOENT);
    CHECK(strcmp(mproc_manager_remote_error(m), "KeyError: b'nope'") == 0);
    CHECK_RC(mproc_dict_del(d, "nope", 4), -ENOENT);
    CHECK_EQ(mproc_dict_contains(d, "k", 1), 1);
    CHECK_EQ(mproc_dict_contains(d, "nope", 4), 0);
    CHECK(strcmp(mproc_manager_remote_error(m), "") == 0);
    CHECK_OK(mproc_dict_set(d, "k2", 2, "x", 1));
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, 2u);
    mproc_dict_item *items;
    CHECK_OK(mproc_dict_items(d, false, &items, &n));
    CHECK_EQ(n, 2u);
    CHECK(items[0].klen == 1 && memcmp(items[0].key, "k", 1) == 0 && items[0].vlen == 3);
    CHECK(items[1].klen == 2 && items[1].vlen == 1 && memcmp(items[1].val, "x", 1) == 0);
    free(items);
    CHECK_OK(mproc_dict_items(d, true, &items, &n));
    CHECK(n == 2 && items[1].val == NULL && memcmp(items[1].key, "k2", 2) == 0);
    free(items);
    mproc_dict_item many[3] = {{.key = "a", .klen = 1, .val = "1", .vlen = 1},
                               {.key = "b", .klen = 1, .val = "22", .vlen = 2}};
    CHECK_OK(mproc_dict_set_many(d, many, 2));
    many[2] = (mproc_dict_item){.key = "zz", .klen = 2};
    void *block;
    CHECK_EQ(mproc_dict_get_many(d, many, 3, &block), 2);
    CHECK(many[1].vlen == 2 && memcmp(many[1].val, "22", 2) == 0 && many[2].val == NULL);
    free(block);
    void *v;
    CHECK_OK(mproc_dict_get_alloc(d, "b", 1, &v, &n));
    CHECK(n == 2 && memcmp(v, "22", 2) == 0);
    free(v);
    CHECK_OK(mproc_dict_del(d, "a", 1));
    CHECK_OK(mproc_dict_clear(d));
    CHECK_OK(mproc_dict_len(d, &n));
    CHECK_EQ(n, 0u);
    /* kinds: a dict typeid is not a queue; calls Python lacks; unknown names */
    mproc_queue *q;
    CHECK_RC(mproc_manager_queue(m, "dict", NULL, &q), -EEXIST);
    mproc_value *val;
    CHECK_RC(mproc_manager_value(m, "Value", 8, false, &val), -ENOTSUP);
    CHECK_OK(mproc_manager_reconnect(m));
    CHECK_RC(mproc_manager_delete(m, "jobs"), -ENOTSUP);
    mproc_dict *none;
    CHECK_RC(mproc_manager_dict(m, "get_nothing", &none), MPROC_EREMOTE);
    CHECK(strstr(mproc_manager_remote_error(m), "get_nothing") != NULL);
    mproc_dict_free(d);
    mproc_manager_free(m);
    stop(&s);
}

TEST_T(public_typed_values_reach_python_as_str_int_float, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_dict *jobs;
    CHECK_OK(mproc_manager_dict(m, "get_jobs", &jobs));
    unsigned char k[32], v[64];
    size_t kl, vl;
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "s", 1, &kl));
    CHECK_OK(mproc_pyvalue_str(v, sizeof v, "text", 4, &vl));
    CHECK_OK(mproc_dict_set(jobs, k, kl, v, vl));
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "i", 1, &kl));
    CHECK_OK(mproc_pyvalue_int(v, sizeof v, 42, &vl));
    CHECK_OK(mproc_dict_set(jobs, k, kl, v, vl));
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "f", 1, &kl));
    CHECK_OK(mproc_pyvalue_float(v, sizeof v, 2.5, &vl));
    CHECK_OK(mproc_dict_set(jobs, k, kl, v, vl));
    CHECK_OK(mproc_dict_set(jobs, "raw", 3, "\0raw", 4));
    CHECK_EQ(run_client(&s, "check_typed", NULL), 0);
    /* and back: Python's str, int and list, read as their pickles */
    char text[32];
    size_t n;
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "from_py", 7, &kl));
    CHECK_OK(mproc_dict_get(jobs, k, kl, v, sizeof v, &vl));
    CHECK_OK(mproc_pyvalue_get_str(v, vl, text, sizeof text, &n));
    CHECK(n == 7 && strcmp(text, "py text") == 0);
    CHECK_RC(mproc_pyvalue_get_str(v, vl, text, 4, &n), -EMSGSIZE);
    int64_t i;
    CHECK_RC(mproc_pyvalue_get_int(v, vl, &i), -EINVAL);
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "alpha", 5, &kl));
    CHECK_OK(mproc_dict_get(jobs, k, kl, v, sizeof v, &vl));
    CHECK_OK(mproc_pyvalue_get_int(v, vl, &i));
    CHECK_EQ(i, 1);
    double f;
    CHECK_OK(mproc_pyvalue_get_float(v, vl, &f));
    CHECK(f == 1.0);
    /* beta is [2, 3]: opaque, but it goes back intact */
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "beta", 4, &kl));
    CHECK_OK(mproc_dict_get(jobs, k, kl, v, sizeof v, &vl));
    CHECK_RC(mproc_pyvalue_get_int(v, vl, &i), -EINVAL);
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "beta2", 5, &kl));
    CHECK_OK(mproc_dict_set(jobs, k, kl, v, vl));
    mproc__pk_doc *a;
    CHECK_OK(mproc__pk_doc_new(&a));
    mproc__pym_proxy *raw;
    CHECK_OK(mproc__pym_create(s.m, "get_jobs", NULL, NULL, &raw));
    const mproc__pk *res;
    CHECK_OK(mproc__pym_call(raw, "__getitem__", mproc__pk_tuple(a, 1, mproc__pk_cstr(a, "beta2")),
                             NULL, &res));
    char repr[32];
    mproc__pk_repr(res, repr, sizeof repr);
    CHECK(strcmp(repr, "[2, 3]") == 0);
    mproc__pym_proxy_free(raw);
    mproc__pk_doc_free(a);
    CHECK_RC(mproc_pyvalue_str(k, 2, "long text", 9, &kl), -EMSGSIZE);
    CHECK_RC(mproc_pyvalue_str(k, sizeof k, "\xff", 1, &kl), -EINVAL);
    mproc_dict_free(jobs);
    mproc_manager_free(m);
    stop(&s);
}

TEST_T(public_queue_of_a_python_manager_with_timeouts, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_queue *q;
    CHECK_OK(mproc_manager_queue(m, "Queue", &(mproc_queue_opts){.max_items = 1}, &q));
    char buf[16];
    size_t n;
    CHECK_RC(mproc_queue_get(q, buf, sizeof buf, &n, 0), -EAGAIN);
    CHECK(strcmp(mproc_manager_remote_error(m), "Empty") == 0);
    double t0 = harness_now();
    CHECK_RC(mproc_queue_get(q, buf, sizeof buf, &n, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.15, 5 * harness_slow());
    CHECK_OK(mproc_queue_put(q, "one", 3, 0));
    CHECK_RC(mproc_queue_put(q, "two", 3, 0), -EAGAIN);
    CHECK_RC(mproc_queue_put(q, "two", 3, 0.1), -ETIMEDOUT);
    CHECK(strcmp(mproc_manager_remote_error(m), "Full") == 0);
    CHECK_EQ(mproc_queue_size(q), 1u);
    CHECK(mproc_queue_full(q));
    /* too small a buffer: the item stays for the next get */
    CHECK_RC(mproc_queue_get(q, buf, 2, &n, 1), -EMSGSIZE);
    CHECK_EQ(n, 3u);
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &n, 1));
    CHECK(n == 3 && memcmp(buf, "one", 3) == 0);
    CHECK_RC(mproc_queue_close(q), -ENOTSUP);
    mproc_queue_free(q);
    /* across languages: C puts, Python takes it and answers ("echo", item) */
    mproc_queue *shared;
    CHECK_OK(mproc_manager_queue(m, "get_queue", NULL, &shared));
    py_helper echo = client(&s, "echo_queue", NULL);
    CHECK_OK(mproc_queue_put(shared, "ping", 4, MPROC_FOREVER));
    CHECK_EQ(py_reap(&echo), 0);
    void *item;
    CHECK_OK(mproc_queue_get_alloc(shared, &item, &n, 30));
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(mproc__pickle_read(item, n, NULL, &d, &v));
    char repr[32];
    mproc__pk_repr(v, repr, sizeof repr);
    CHECK(strcmp(repr, "('echo', b'ping')") == 0);
    mproc__pk_doc_free(d);
    free(item);
    mproc_queue_free(shared);
    mproc_manager_free(m);
    stop(&s);
}

TEST_T(public_event_both_ways_and_lock_of_a_python_manager, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_event *ev;
    CHECK_OK(mproc_manager_event(m, "get_event", &ev));
    CHECK_RC(mproc_event_wait(ev, 0), -EAGAIN);
    CHECK(!mproc_event_is_set(ev));
    /* set in Python, waited in C */
    py_helper setter = client(&s, "set_event", NULL);
    py_write_all(&setter, "go\n", 3);
    CHECK_OK(mproc_event_wait(ev, 60));
    CHECK_EQ(py_reap(&setter), 0);
    CHECK(mproc_event_is_set(ev));
    /* set in C, waited in Python */
    CHECK_OK(mproc_event_clear(ev));
    py_helper waiter = client(&s, "wait_event", "60");
    CHECK_OK(mproc_event_set(ev));
    CHECK_EQ(py_reap(&waiter), 0);
    /* a Lock held from C is held for Python too */
    mproc_lock *lk;
    CHECK_OK(mproc_manager_lock(m, "get_lock", &lk));
    CHECK_OK(mproc_lock_acquire(lk, MPROC_FOREVER));
    CHECK_RC(mproc_lock_acquire(lk, 0), -EAGAIN);
    CHECK_RC(mproc_lock_acquire(lk, 0.1), -ETIMEDOUT);
    CHECK_EQ(run_client(&s, "lock_held", NULL), 0);
    CHECK_OK(mproc_lock_release(lk));
    CHECK_EQ(run_client(&s, "lock_held", NULL), 1);
    mproc_lock_free(lk);
    mproc_event_free(ev);
    mproc_manager_free(m);
    stop(&s);
}

typedef struct {
    mproc_event *ev;
    mproc_event *started;
} blocked_arg;

static void *wait_in_thread(void *p)
{
    blocked_arg *a = p;
    mproc_event_set(a->started);
    return (void *)(intptr_t)mproc_event_wait(a->ev, 60);
}

TEST_T(public_handle_serves_threads_at_once, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_event *ev, *started;
    CHECK_OK(mproc_manager_event(m, "Event", &ev));
    CHECK_OK(mproc_event_new(&started));
    blocked_arg a = {ev, started};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, wait_in_thread, &a), 0);
    CHECK_OK(mproc_event_wait(started, 30));
    /* the other thread waits in Python on one connection; this set takes another */
    CHECK_OK(mproc_event_set(ev));
    void *rc;
    CHECK_EQ(pthread_join(t, &rc), 0);
    CHECK_EQ((int)(intptr_t)rc, 0);
    mproc_event_free(started);
    mproc_event_free(ev);
    mproc_manager_free(m);
    stop(&s);
}

TEST_T(forced_native_against_python_fails_in_bounded_time, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m;
    double t0 = harness_now();
    CHECK_RC(
        mproc_manager_connect_opts(
            &m, s.address, KEY, strlen(KEY),
            &(mproc_manager_client_opts){.dialect = MPROC_MANAGER_DIALECT_NATIVE, .timeout = 0.5}),
        -EPROTONOSUPPORT);
    CHECK_BETWEEN(harness_now() - t0, 0.4, 5 * harness_slow());
    CHECK(m == NULL);
    /* forced Python works; a bad dialect is refused */
    CHECK_OK(mproc_manager_connect_opts(
        &m, s.address, KEY, strlen(KEY),
        &(mproc_manager_client_opts){.dialect = MPROC_MANAGER_DIALECT_PYTHON}));
    CHECK_EQ(mproc_manager_dialect(m), MPROC_MANAGER_DIALECT_PYTHON);
    mproc_manager_free(m);
    CHECK_RC(mproc_manager_connect_opts(&m, s.address, KEY, strlen(KEY),
                                        &(mproc_manager_client_opts){.dialect = 7}),
             -EINVAL);
    CHECK_RC(mproc_manager_connect(&m, s.address, "other", 5), MPROC_EAUTH);
    stop(&s);
}

/* The talk's pool task: compute e until the Event is set. */
static int calculate_e(mproc_task *t)
{
    size_t len;
    mproc_event *const *ev = mproc_task_arg(t, &len);
    double e = 0, term = 1.0;
    unsigned long long n = 0;
    do {
        for (int i = 0; i < 1000; i++) {
            e += term;
            term /= (double)++n;
        }
    } while (!mproc_event_is_set(*ev));
    return mproc_task_return(t, &e, sizeof e);
}

TEST_T(python_manager_event_passed_to_an_mproc_pool_task, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_event *ev;
    CHECK_OK(mproc_manager_event(m, "Event", &ev));
    /* workers made after the handle have it (and open their own connections) */
    mproc_pool *pool;
    CHECK_OK(mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 1}));
    mproc_future *f;
    CHECK_OK(mproc_pool_submit(pool, calculate_e, &ev, sizeof ev, &f));
    CHECK_RC(mproc_future_wait(f, 0.3), -ETIMEDOUT); /* it runs until told */
    CHECK_OK(mproc_event_set(ev));
    double e = 0;
    CHECK_OK(mproc_future_get(f, &e, sizeof e, NULL, 30));
    CHECK(fabs(e - M_E) < 1e-12);
    mproc_future_free(f);
    mproc_pool_free(pool);
    mproc_event_free(ev);
    mproc_manager_free(m);
    stop(&s);
}

/* A peer that passes the handshake and then never answers. */
typedef struct {
    mproc_listener *l;
    mproc_event *done;
} silent_arg;

static void *silent_peer(void *p)
{
    silent_arg *a = p;
    mproc_conn *c;
    if (mproc_listener_accept(a->l, &c, 30) == 0) {
        mproc_event_wait(a->done, 30); /* reads nothing, answers nothing */
        mproc_conn_close(c);
    }
    return NULL;
}

TEST_T(a_server_that_never_answers_fails_connect_in_bounded_time, 60)
{
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-silent-%d", (int)getpid());
    silent_arg a;
    CHECK_OK(mproc_listener_new(&a.l, addr, KEY, strlen(KEY)));
    CHECK_OK(mproc_event_new(&a.done));
    static const mproc_dialect dialects[] = {
        MPROC_MANAGER_DIALECT_AUTO, MPROC_MANAGER_DIALECT_NATIVE, MPROC_MANAGER_DIALECT_PYTHON};
    static const int codes[] = {-ETIMEDOUT, -EPROTONOSUPPORT, -ETIMEDOUT};
    for (int i = 0; i < 3; i++) {
        pthread_t t;
        CHECK_OK(mproc_event_clear(a.done));
        CHECK_EQ(pthread_create(&t, NULL, silent_peer, &a), 0);
        mproc_manager *m;
        double t0 = harness_now();
        CHECK_RC(mproc_manager_connect_opts(
                     &m, addr, KEY, strlen(KEY),
                     &(mproc_manager_client_opts){.dialect = dialects[i], .timeout = 0.3}),
                 codes[i]);
        CHECK_BETWEEN(harness_now() - t0, 0.25, 5 * harness_slow());
        CHECK_OK(mproc_event_set(a.done));
        CHECK_EQ(pthread_join(t, NULL), 0);
    }
    mproc_event_free(a.done);
    mproc_listener_free(a.l);
}

TEST_T(public_list_of_a_python_manager, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_list *l;
    CHECK_OK(mproc_manager_list(m, "list", &l));
    CHECK_OK(mproc_list_append(l, "b", 1));
    CHECK_OK(mproc_list_append(l, "ccc", 3));
    CHECK_OK(mproc_list_insert(l, 0, "a", 1));
    size_t n;
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, 3u);
    char buf[8];
    CHECK_OK(mproc_list_get(l, -1, buf, sizeof buf, &n));
    CHECK(n == 3 && memcmp(buf, "ccc", 3) == 0);
    CHECK_RC(mproc_list_get(l, 5, buf, sizeof buf, &n), -ERANGE); /* IndexError */
    CHECK(strstr(mproc_manager_remote_error(m), "IndexError") != NULL);
    CHECK_OK(mproc_list_set(l, 1, "B", 1));
    /* a pop that does not fit leaves the item */
    CHECK_RC(mproc_list_pop(l, -1, buf, 2, &n), -EMSGSIZE);
    CHECK_EQ(n, 3u);
    CHECK_OK(mproc_list_pop(l, -1, buf, sizeof buf, &n));
    CHECK(n == 3 && memcmp(buf, "ccc", 3) == 0);
    CHECK_OK(mproc_list_pop(l, 0, NULL, 0, NULL));
    void *v;
    CHECK_OK(mproc_list_get_alloc(l, 0, &v, &n));
    CHECK(n == 1 && memcmp(v, "B", 1) == 0);
    free(v);
    CHECK_OK(mproc_list_clear(l));
    CHECK_OK(mproc_list_len(l, &n));
    CHECK_EQ(n, 0u);
    mproc_dict *d;
    CHECK_RC(mproc_manager_dict(m, "list", &d), -EEXIST);
    mproc_list_free(l);
    mproc_manager_free(m);
    stop(&s);
}

static void *try_rlock(void *p)
{
    mproc_lock *lk = p;
    int r = mproc_lock_acquire(lk, 0);
    if (r == 0) r = mproc_lock_release(lk) == 0 ? 1 : -1;
    return (void *)(intptr_t)r;
}

/* A Python RLock belongs to the server thread of the connection that took it: each C thread keeps
 * its own connection, so another thread's acquire is not mistaken for a reentrant one. */
TEST_T(public_rlock_of_a_python_manager_is_per_thread, 60)
{
    server s = serve("tcp:127.0.0.1:0");
    mproc_manager *m = connect_public(&s);
    mproc_lock *lk;
    CHECK_OK(mproc_manager_lock(m, "RLock", &lk));
    CHECK_OK(mproc_lock_acquire(lk, MPROC_FOREVER));
    CHECK_OK(mproc_lock_acquire(lk, 0)); /* reentrant for this thread */
    pthread_t t;
    void *rc;
    CHECK_EQ(pthread_create(&t, NULL, try_rlock, lk), 0);
    CHECK_EQ(pthread_join(t, &rc), 0);
    CHECK_EQ((int)(intptr_t)rc, -EAGAIN); /* held by the other thread */
    CHECK_OK(mproc_lock_release(lk));
    CHECK_OK(mproc_lock_release(lk));
    CHECK_EQ(pthread_create(&t, NULL, try_rlock, lk), 0);
    CHECK_EQ(pthread_join(t, &rc), 0);
    CHECK_EQ((int)(intptr_t)rc, 1); /* free: taken and given back */
    mproc_lock_free(lk);
    mproc_manager_free(m);
    stop(&s);
}
