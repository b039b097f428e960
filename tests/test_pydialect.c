/* The manager's Python dialect (src/manager/pydialect.c): unmodified CPython SyncManager clients
 * (tests/python/mproc_client.py) against the mproc-manager command, with a C client of the same
 * objects on the other side: dict semantics and values both ways, Event both ways, Queue with
 * timeouts, a Lock whose Python holder is killed, shutdown from Python, other CPythons, and the
 * cost of a Python connection and op beside Python's own manager. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel/pickle.h"
#include "channel/pymanager.h"
#include "harness.h"
#include "mproc.h"
#include "py_util.h"
#include "tool_util.h"

#define KEY "py key"
#define KEYHEX "7079206b6579"

typedef struct {
    pid_t pid;
    char address[128];
    char keyfile[64];
    mproc_manager *m;
} server;

static server serve_at(const char *address, const char *key);

static server serve(void)
{
    return serve_at("tcp:127.0.0.1:0", KEY);
}

static server serve_at(const char *address, const char *key)
{
    py_need();
    server s = {.keyfile = "/tmp/mproc-pyd-key-XXXXXX"};
    int kfd = mkstemp(s.keyfile);
    CHECK(kfd >= 0);
    CHECK_EQ(write(kfd, key, strlen(key)), (ssize_t)strlen(key));
    close(kfd);
    /* a fixed port another run of this suite (another build) may hold: wait for it, up to 60 s */
    for (int attempt = 0;; attempt++) {
        char *argv[] = {(char *)MPROC_MANAGER_TOOL,
                        "--address",
                        (char *)address,
                        "--authkey-file",
                        s.keyfile,
                        "--foreground",
                        NULL};
        s.pid = tool_spawn_first_line(MPROC_MANAGER_TOOL, argv, s.address, sizeof s.address);
        if (s.address[0]) break;
        int st; /* it ended without listening */
        CHECK_EQ(waitpid(s.pid, &st, 0), s.pid);
        size_t al = strlen(address);
        CHECK(strcmp(address + al - 2, ":0") != 0 && attempt < 300); /* port 0 never clashes */
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    }
    CHECK_OK(mproc_manager_connect(&s.m, s.address, key, strlen(key)));
    return s;
}

static int reap(pid_t pid)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void stop(server *s)
{
    mproc_manager_free(s->m);
    CHECK_EQ(kill(s->pid, SIGTERM), 0);
    CHECK_EQ(reap(s->pid), 0);
    unlink(s->keyfile);
}

static py_helper client_with(const char *python, const server *s, const char *mode, const char *arg)
{
    const char *args[] = {mode, s->address, KEYHEX, arg, NULL};
    return py_spawn(python, "mproc_client.py", args);
}

static int run_client(const server *s, const char *mode)
{
    py_helper h = client_with("python3", s, mode, NULL);
    return py_reap(&h);
}

static py_helper ready_client(const server *s, const char *mode, const char *arg)
{
    py_helper h = client_with("python3", s, mode, arg);
    char rest[8];
    py_await_ready(&h, rest, sizeof rest);
    return h;
}

/* The pickle a Python value is stored as (what a C client uses for non-bytes keys and values). */
static void *pickled_str(const char *s, size_t *len)
{
    mproc__pk_doc *d;
    CHECK_OK(mproc__pk_doc_new(&d));
    void *out;
    CHECK_OK(mproc__pickle_write(mproc__pk_cstr(d, s), &out, len));
    mproc__pk_doc_free(d);
    return out;
}

/* The Python value behind stored bytes, as its repr. */
static void stored_repr(const void *p, size_t len, char *buf, size_t cap)
{
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(mproc__pickle_read(p, len, NULL, &d, &v));
    mproc__pk_repr(v, buf, cap);
    mproc__pk_doc_free(d);
}

TEST_T(python_dict_semantics_and_values_both_ways, 120)
{
    server s = serve();
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "from_c", 6, "world", 5)); /* Python reads b'from_c' */
    CHECK_EQ(run_client(&s, "dict"), 0);
    /* Python bytes are C bytes */
    char buf[256], text[256];
    size_t n;
    CHECK_OK(mproc_dict_get(d, "raw", 3, buf, sizeof buf, &n));
    CHECK(n == 4 && memcmp(buf, "\0bin", 4) == 0);
    /* anything else is its pickle: the key 'from_py' and the value {'n': 1} */
    size_t klen;
    void *k = pickled_str("from_py", &klen);
    CHECK_OK(mproc_dict_get(d, k, klen, buf, sizeof buf, &n));
    stored_repr(buf, n, text, sizeof text);
    CHECK(strcmp(text, "{'n': 1}") == 0);
    free(k);
    /* bytes that look like a pickle were kept as a pickle of bytes: Python got them back intact */
    size_t len = 0;
    CHECK_OK(mproc_dict_len(d, &len));
    CHECK_EQ(len, 4u);
    stop(&s);
}

TEST_T(event_set_in_python_is_waited_in_c_and_the_reverse, 120)
{
    server s = serve();
    mproc_event *ev;
    CHECK_OK(mproc_manager_event(s.m, "ev", &ev));
    /* Python waits, C sets */
    py_helper w = ready_client(&s, "wait_event", "30");
    CHECK_OK(mproc_event_set(ev));
    CHECK_EQ(py_reap(&w), 0);
    /* C waits, Python sets */
    CHECK_OK(mproc_event_clear(ev));
    py_helper st = ready_client(&s, "set_event", NULL);
    CHECK_RC(mproc_event_wait(ev, 0), -EAGAIN);
    double t0 = harness_now();
    py_write_all(&st, "go\n", 3);
    CHECK_OK(mproc_event_wait(ev, 30));
    CHECK(harness_now() - t0 < 10 * harness_slow());
    CHECK_EQ(py_reap(&st), 0);
    /* a Python wait that times out answers False */
    CHECK_OK(mproc_event_clear(ev));
    py_helper w2 = client_with("python3", &s, "wait_event", "0.2");
    char rest[8];
    py_await_ready(&w2, rest, sizeof rest);
    CHECK_EQ(py_reap(&w2), 1);
    stop(&s);
}

TEST_T(queue_timeouts_and_items_both_ways, 120)
{
    server s = serve();
    mproc_queue *q, *replies;
    CHECK_OK(mproc_manager_queue(s.m, "q", NULL, &q));
    CHECK_OK(mproc_manager_queue(s.m, "replies", NULL, &replies));
    /* the helper checks queue.Empty after its 0.3 s timeout and get_nowait first */
    py_helper h = ready_client(&s, "queue", NULL);
    CHECK_OK(mproc_queue_put(q, "job", 3, 5));
    char buf[256], text[64];
    size_t n;
    /* The reply comes on a queue of its own: a get on q could take back the job itself, when it
     * reaches the server before the helper's blocking get does. */
    CHECK_OK(mproc_queue_get(replies, buf, sizeof buf, &n, 30));
    stored_repr(buf, n, text, sizeof text);
    CHECK(strcmp(text, "('done', 1.5)") == 0);
    CHECK_EQ(py_reap(&h), 0);
    stop(&s);
}

TEST_T(lock_of_a_killed_python_client_is_owner_dead_for_c, 120)
{
    server s = serve();
    mproc_lock *lk;
    CHECK_OK(mproc_manager_lock(s.m, "lk", &lk));
    py_helper h = ready_client(&s, "hold_lock", NULL);
    CHECK_RC(mproc_lock_acquire(lk, 0), -EAGAIN); /* Python holds it */
    CHECK_EQ(kill(h.pid, SIGKILL), 0);
    CHECK_EQ(py_reap(&h), -SIGKILL);
    CHECK_RC(mproc_lock_acquire(lk, 30), MPROC_EOWNERDEAD);
    CHECK_OK(mproc_lock_release(lk));
    /* and a Python acquirer after it: a normal acquire */
    CHECK_EQ(run_client(&s, "take_lock"), 0);
    CHECK_OK(mproc_lock_acquire(lk, 5));
    CHECK_OK(mproc_lock_release(lk));
    stop(&s);
}

TEST_T(shutdown_from_python_ends_the_manager, 60)
{
    server s = serve();
    CHECK_EQ(run_client(&s, "shutdown"), 0);
    CHECK_EQ(reap(s.pid), 0); /* a clean end */
    mproc_dict *d;
    CHECK_RC(mproc_manager_dict(s.m, "jobs", &d), -EPIPE);
    mproc_manager_free(s.m);
    unlink(s.keyfile);
}

TEST_T(hostile_or_unservable_python_requests_are_refused_in_step, 60)
{
    server s = serve();
    CHECK_EQ(run_client(&s, "bad"), 0);
    /* and the server still serves C and Python */
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "from_c", 6, "world", 5));
    CHECK_EQ(run_client(&s, "dict"), 0);
    stop(&s);
}

/* A server started by mproc_manager_start: this process is in its family and uses the objects
 * directly in the arena while Python goes through the server (a change made in the arena reaches
 * a parked Python wait on the server's tick). */
TEST_T(python_client_of_a_started_server_beside_a_family_member, 120)
{
    py_need();
    server s = {.pid = -1};
    CHECK_OK(mproc_manager_start(&s.m, "tcp:127.0.0.1:0", KEY, strlen(KEY), NULL));
    snprintf(s.address, sizeof s.address, "%s", mproc_manager_address(s.m));
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "from_c", 6, "world", 5)); /* directly in the arena */
    CHECK_EQ(run_client(&s, "dict"), 0);
    char buf[16];
    size_t n;
    CHECK_OK(mproc_dict_get(d, "raw", 3, buf, sizeof buf, &n));
    CHECK(n == 4 && memcmp(buf, "\0bin", 4) == 0);
    mproc_event *ev;
    CHECK_OK(mproc_manager_event(s.m, "ev", &ev));
    py_helper w = ready_client(&s, "wait_event", "30");
    CHECK_OK(mproc_event_set(ev));
    CHECK_EQ(py_reap(&w), 0);
    CHECK_OK(mproc_event_clear(ev));
    py_helper st = ready_client(&s, "set_event", NULL);
    py_write_all(&st, "go\n", 3);
    CHECK_OK(mproc_event_wait(ev, 30));
    CHECK_EQ(py_reap(&st), 0);
    CHECK_EQ(run_client(&s, "shutdown"), 0);
    mproc_manager_free(s.m);
}

TEST_T(other_cpython_versions_are_served, 120)
{
    int ran = 0;
    static const char *versions[] = {"3.12", "3.13"};
    server s = serve();
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "from_c", 6, "world", 5));
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        const char *py = py_find(versions[i]);
        if (!py) continue;
        static const char *modes[] = {"dict", "condition", "barrier"};
        for (size_t j = 0; j < sizeof modes / sizeof *modes; j++) {
            py_helper h = client_with(py, &s, modes[j], NULL);
            CHECK_EQ(py_reap(&h), 0);
        }
        ran++;
    }
    stop(&s);
    if (!ran) harness_skip("no CPython 3.12 or 3.13 found");
}

/* A Python client's connection and dict ops against the mproc manager, then against Python's own
 * SyncManager in the same run (tests/python/py_manager.py). Bands are loose (a loaded machine):
 * what is checked is that no delayed-ACK stall happens and that the mproc manager is not slower. */
TEST_T(python_client_cost_beside_python_manager, 180)
{
    server s = serve();
    const char *args[] = {"bench", s.address, KEYHEX, "3000", NULL};
    char ours[128], theirs[128];
    py_helper b = py_spawn("python3", "mproc_client.py", args);
    py_await_ready(&b, ours, sizeof ours);
    CHECK_EQ(py_reap(&b), 0);
    stop(&s);
    const char *sargs[] = {"serve", "tcp:127.0.0.1:0", KEYHEX, NULL};
    py_helper ps = py_spawn("python3", "py_manager.py", sargs);
    char paddr[128];
    py_await_ready(&ps, paddr, sizeof paddr);
    const char *bargs[] = {"bench", paddr, KEYHEX, "3000", NULL};
    py_helper pb = py_spawn("python3", "py_manager.py", bargs);
    py_await_ready(&pb, theirs, sizeof theirs);
    CHECK_EQ(py_reap(&pb), 0);
    mproc__pym *pm;
    CHECK_OK(mproc__pym_connect(&pm, paddr, KEY, strlen(KEY)));
    CHECK_OK(mproc__pym_shutdown(pm));
    mproc__pym_free(pm);
    CHECK_EQ(py_reap(&ps), 0);
    double connect_ms, dict_ms, ops, pdict_ms, pops;
    CHECK_EQ(sscanf(ours, "%lf %lf %lf", &connect_ms, &dict_ms, &ops), 3);
    CHECK_EQ(sscanf(theirs, "%lf %lf", &pdict_ms, &pops), 2);
    printf(
        "    Python client, mproc manager: connect %.2f ms, m.dict()+first op %.2f ms, %.0f ops/s; "
        "Python's manager: m.dict()+first op %.2f ms, %.0f ops/s\n",
        connect_ms, dict_ms, ops, pdict_ms, pops);
    CHECK(connect_ms < 40 * harness_slow());
    CHECK(dict_ms < 80 * harness_slow());
    CHECK(ops > 500 / harness_slow());
}

TEST_T(condition_waits_park_in_the_server_for_python_threads, 120)
{
    server s = serve();
    CHECK_EQ(run_client(&s, "condition"), 0);
    /* nothing left parked or held: the server still serves */
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "k", 1, "v", 1));
    stop(&s);
}

TEST_T(barrier_rounds_abort_reset_and_timeout_for_python_threads, 120)
{
    server s = serve();
    CHECK_EQ(run_client(&s, "barrier"), 0);
    stop(&s);
}

/* The talk's example with the manager in C: its Event handed to a task of a Python Pool. */
TEST_T(c_manager_event_passed_to_a_python_pool_task, 120)
{
    server s = serve();
    mproc_event *ev;
    CHECK_OK(mproc_manager_event(s.m, "ev", &ev));
    py_helper h = ready_client(&s, "pool_event", NULL); /* its task runs until told */
    CHECK_OK(mproc_event_set(ev));
    char line[64];
    py_read_all(&h, line, 20);
    line[20] = 0;
    CHECK(strncmp(line, "E 2.71828182845904", 18) == 0);
    CHECK_EQ(py_reap(&h), 0);
    stop(&s);
}

TEST_T(connect_finds_the_native_dialect_and_python_dialect_works_too, 60)
{
    server s = serve();
    CHECK_EQ(mproc_manager_dialect(s.m), MPROC_MANAGER_DIALECT_NATIVE);
    CHECK_RC(mproc_manager_dialect(NULL), -EINVAL);
    mproc_dict *d, *pd;
    CHECK_OK(mproc_manager_dict(s.m, "jobs", &d));
    CHECK_OK(mproc_dict_set(d, "k", 1, "native", 6));
    /* forced Python against an mproc server: its Python dialect, the same objects */
    mproc_manager *py;
    CHECK_OK(mproc_manager_connect_opts(
        &py, s.address, KEY, strlen(KEY),
        &(mproc_manager_client_opts){.dialect = MPROC_MANAGER_DIALECT_PYTHON, .timeout = 5}));
    CHECK_EQ(mproc_manager_dialect(py), MPROC_MANAGER_DIALECT_PYTHON);
    CHECK_OK(mproc_manager_dict(py, "get_jobs", &pd));
    char buf[16];
    size_t n;
    CHECK_OK(mproc_dict_get(pd, "k", 1, buf, sizeof buf, &n));
    CHECK(n == 6 && memcmp(buf, "native", 6) == 0);
    unsigned char k[16], v[16];
    size_t kl, vl;
    CHECK_OK(mproc_pyvalue_str(k, sizeof k, "s", 1, &kl));
    CHECK_OK(mproc_pyvalue_int(v, sizeof v, -5, &vl));
    CHECK_OK(mproc_dict_set(pd, k, kl, v, vl));
    /* a typed value written through Python's protocol is the bytes the native side reads */
    CHECK_OK(mproc_dict_get(d, k, kl, buf, sizeof buf, &n));
    int64_t i;
    CHECK_OK(mproc_pyvalue_get_int(buf, n, &i));
    CHECK_EQ(i, -5);
    CHECK_RC(mproc_dict_get(pd, "none", 4, buf, sizeof buf, &n), -ENOENT);
    mproc_dict_free(pd);
    mproc_manager_free(py);
    /* forced native: as AUTO found */
    mproc_manager *nat;
    CHECK_OK(mproc_manager_connect_opts(
        &nat, s.address, KEY, strlen(KEY),
        &(mproc_manager_client_opts){.dialect = MPROC_MANAGER_DIALECT_NATIVE}));
    CHECK_EQ(mproc_manager_dialect(nat), MPROC_MANAGER_DIALECT_NATIVE);
    CHECK(strcmp(mproc_manager_remote_error(nat), "") == 0);
    mproc_manager_free(nat);
    stop(&s);
}

/* The Python snippets of docs/manager.md, unmodified, against mproc-manager at the address they
 * name (the test holds the port's resource lock in CMake). */
TEST_T(docs_manager_python_snippets_run_against_mproc_manager, 120)
{
    server s = serve_at("tcp:127.0.0.1:50000", "secret");
    const char *args[] = {NULL};
    py_helper h = py_spawn("python3", "docs_snippets.py", args);
    char out[4096] = {0}; /* what the snippets print, then RAN n */
    size_t n = 0;
    for (ssize_t r; n < sizeof out - 1 && (r = read(h.out, out + n, sizeof out - 1 - n)) > 0;)
        n += (size_t)r;
    CHECK_EQ(py_reap(&h), 0);
    const char *ran = strstr(out, "RAN ");
    CHECK(ran && atoi(ran + 4) >= 2);
    CHECK(strstr(out, "b'loading'") && strstr(out, "main passed the barrier as"));
    stop(&s);
}
