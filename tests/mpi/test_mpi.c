#define _GNU_SOURCE
/* The "mpi" pool backend under a real mpirun (tests/mpi/run_mpi.sh runs one launch per mode and
 * fails when a process of the run survives it). Each launch batches many cases: mpirun costs
 * about half a second. Rank 0 checks every result against what the function computes here. The
 * harness (tests/harness.c) is not used: its per-case process groups and supervisor would put the
 * cases outside the MPI job.
 *
 * Modes: all (results, payloads, functions, failures, pools in sequence and at once),
 * queued (rank 0 returns with tasks queued), killrank (a worker rank is SIGKILLed: fail-stop),
 * idle (CPU of an idle pool), fallback (no launcher: the local backend). */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>
#include <mproc/log.h>
#include <mproc/mpi.h>

int mpi_lib_triple(mproc_task *t); /* mpi_lib.c, a shared library */

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- task functions ---- */

static int square(mproc_task *t)
{
    const int64_t *x = mproc_task_arg(t, NULL);
    int64_t r = *x * *x + 1;
    return mproc_task_return(t, &r, sizeof r);
}

/* Returns its argument reversed (any size, 0 included). */
static int reverse(mproc_task *t)
{
    size_t n;
    const unsigned char *a = mproc_task_arg(t, &n);
    unsigned char *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = a[n - 1 - i];
    int r = mproc_task_return(t, b, n);
    free(b);
    return r;
}

/* Where a task runs, written to a file before it crashes: the error record must say the same. */
static void where_path(char *path, size_t cap)
{
    const char *run = getenv("MPROC_TEST_RUN");
    snprintf(path, cap, "%s/%s.where", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             run ? run : "x");
}

static void note_where(void)
{
    char path[256], h[64] = "";
    where_path(path, sizeof path);
    gethostname(h, sizeof h - 1);
    const char *rk = getenv("OMPI_COMM_WORLD_RANK");
    if (!rk) rk = getenv("PMI_RANK");
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%s %d %s\n", rk ? rk : "-1", (int)getpid(), h);
    fclose(f);
}

/* The rank, pid and host the error record of a crashed task must name. */
static void check_where(const mproc_error *e, const char *name)
{
    char path[256], h[64] = "";
    int rank = -2, pid = 0;
    where_path(path, sizeof path);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "%s: %s not written", name, path);
    if (!f) return;
    CHECK(fscanf(f, "%d %d %63s", &rank, &pid, h) == 3, "%s: %s unreadable", name, path);
    fclose(f);
    unlink(path);
    CHECK(rank >= 0 && e->rank == rank, "%s: rank %d, the task ran on %d", name, e->rank, rank);
    CHECK(e->worker == pid, "%s: pid %d, the task ran in %d", name, (int)e->worker, pid);
    CHECK(strcmp(e->host, h) == 0, "%s: host '%s', the task ran on '%s'", name, e->host, h);
}

static int fails(mproc_task *t)
{
    return mproc_task_fail(t, -EDOM, "no good: %d", 42);
}

static int crash_segv(mproc_task *t)
{
    (void)t;
    volatile int *p = NULL;
    note_where();
    raise(SIGSEGV); /* first: under UBSan the store below would end the worker another way */
    *p = 1;
    return 0;
}

static int crash_abort(mproc_task *t)
{
    (void)t;
    note_where();
    abort();
}

static int crash_exit(mproc_task *t)
{
    (void)t;
    note_where();
    _exit(3);
}

static int sleeper(mproc_task *t)
{
    const double *s = mproc_task_arg(t, NULL);
    struct timespec ts = {(time_t)*s, (long)((*s - (double)(time_t)*s) * 1e9)};
    nanosleep(&ts, NULL);
    return mproc_task_return(t, "slept", 5);
}

static int noted_sleeper(mproc_task *t)
{
    note_where();
    return sleeper(t);
}

/* Says it started, then runs until cancelled (stopping on it), or for *arg seconds when told to
 * ignore the cancel (arg[1] != 0) and returns "done". */
static int until_cancelled(mproc_task *t)
{
    const double *a = mproc_task_arg(t, NULL);
    note_where();
    double t0 = now_s();
    while (a[1] != 0 || !mproc_task_cancelled(t)) {
        if (now_s() - t0 > a[0])
            return a[1] != 0 ? mproc_task_return(t, "done", 4)
                             : mproc_task_fail(t, -ETIME, "never cancelled");
        usleep(1000);
    }
    return mproc_task_fail(t, MPROC_ECANCELLED, "saw the cancel");
}

/* The task of note_where has written its file (it runs): true, the file removed. */
static bool wait_noted(double timeout)
{
    char path[256];
    where_path(path, sizeof path);
    for (double t0 = now_s(); now_s() - t0 < timeout; usleep(1000))
        if (unlink(path) == 0) return true;
    return false;
}

static int host_of(mproc_task *t)
{
    char h[64] = "";
    gethostname(h, sizeof h - 1);
    return mproc_task_return(t, h, strlen(h));
}

static int logs_error(mproc_task *t)
{
    MPROC_ERROR("hello from a worker: %d", 7);
    return mproc_task_return(t, NULL, 0);
}

static char seen_process[160];
static _Atomic int seen_records;

static void on_error_cb(const mproc_log_record *rec, void *arg)
{
    (void)arg;
    if (strstr(rec->message, "hello from a worker: 7")) {
        snprintf(seen_process, sizeof seen_process, "%s", rec->process);
        seen_records++;
    }
}

static int map_add(const void *in, void *out, void *arg)
{
    const int32_t *k = arg;
    *(int64_t *)out = (int64_t) * (const int32_t *)in * 2 + (k ? *k : 0);
    return 0;
}

static int map_fail_at(const void *in, void *out, void *arg)
{
    (void)arg;
    *(int64_t *)out = 0;
    return *(const int32_t *)in == 777 ? -EDOM : 0;
}

static const int32_t map_offset = 5; /* a map arg in the program's data: named by address */

/* ---- the rank a task's worker belongs to (worker -> forkserver helper -> rank) ---- */

static pid_t ppid_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *c = strrchr(buf, ')');
    int pp = 0;
    if (c) sscanf(c + 2, "%*c %d", &pp);
    return pp;
}

static pid_t rank_pid(void)
{
    return ppid_of(getppid());
}

static int64_t cpu_ticks_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *c = strrchr(buf, ')');
    long long ut = 0, st = 0;
    if (c) sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st);
    return ut + st;
}

static int rank_cpu(mproc_task *t)
{
    int64_t v[2] = {rank_pid(), cpu_ticks_of(rank_pid())};
    return mproc_task_return(t, v, sizeof v);
}

static int kill_rank(mproc_task *t)
{
    (void)t;
    const char *run = getenv("MPROC_TEST_RUN");
    char path[256];
    snprintf(path, sizeof path, "%s/%s.kill", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             run ? run : "x");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        fclose(f);
    }
    kill(rank_pid(), SIGKILL);
    return 0;
}

/* ---- cases ---- */

static mproc_pool *new_pool(int workers)
{
    mproc_pool *p = NULL;
    int r = mproc_pool_new(&p, &(mproc_pool_opts){.workers = workers, .backend = "mpi"});
    CHECK(r == 0, "mproc_pool_new: %d", r);
    return p;
}

static void case_submit_apply(mproc_pool *p)
{
    enum { N = 5000 };
    mproc_future **fs = calloc(N, sizeof *fs);
    for (int64_t i = 0; i < N; i++)
        CHECK(mproc_pool_submit(p, square, &i, sizeof i, &fs[i]) == 0, "submit %" PRId64, i);
    int bad = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t out = 0;
        size_t len = 0;
        int r = mproc_future_get(fs[i], &out, sizeof out, &len, 60);
        if (r != 0 || len != sizeof out || out != i * i + 1) bad++;
        mproc_future_free(fs[i]);
    }
    CHECK(bad == 0, "%d of %d submit results wrong", bad, N);
    free(fs);
    for (int64_t i = 0; i < 200; i++) {
        int64_t out = 0;
        size_t len;
        int r = mproc_pool_apply(p, square, &i, sizeof i, &out, sizeof out, &len);
        if (r != 0 || out != i * i + 1) {
            CHECK(0, "apply %" PRId64 ": %d %" PRId64, i, r, out);
            break;
        }
    }
    printf("ok submit/apply\n");
}

static void case_payloads(mproc_pool *p)
{
    size_t sizes[] = {0, 1, 39, 40, 41, 4096, 65536, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *a = malloc(n + 1), *b = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            a[i] = (unsigned char)(i * 7 + k);
        size_t len = 12345;
        int r = mproc_pool_apply(p, reverse, a, n, b, n + 1, &len);
        bool same = r == 0 && len == n;
        for (size_t i = 0; same && i < n; i++)
            same = b[i] == a[n - 1 - i];
        CHECK(same, "payload %zu bytes: r %d len %zu", n, r, len);
        free(a);
        free(b);
    }
    printf("ok payloads\n");
}

static void case_functions(mproc_pool *p)
{
    int64_t x = 14, out = 0;
    size_t len;
    int r = mproc_pool_apply(p, mpi_lib_triple, &x, sizeof x, &out, sizeof out, &len);
    CHECK(r == 0 && out == 42, "shared-library function: %d %" PRId64, r, out);
    /* A library only rank 0 loaded: its function cannot be named elsewhere. */
    const char *dir = getenv("MPI_TEST_LIBDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/libmpi_late.so", dir ? dir : ".");
    void *h = dlopen(path, RTLD_NOW);
    CHECK(h != NULL, "dlopen %s: %s", path, dlerror());
    if (h) {
        mproc_task_fn late = (mproc_task_fn)dlsym(h, "mpi_late_task");
        mproc_future *f;
        CHECK(mproc_pool_submit(p, late, NULL, 0, &f) == 0, "submit late");
        r = mproc_future_get(f, NULL, 0, NULL, 30);
        mproc_error e;
        mproc_future_error(f, &e);
        CHECK(r == MPROC_EPROTO, "late-loaded function: %d (%s)", r, e.message);
        CHECK(strstr(e.message, "libmpi_late") != NULL, "message names the library: %s", e.message);
        mproc_future_free(f);
    }
    /* Task errors travel with their code and message. */
    mproc_future *f;
    mproc_pool_submit(p, fails, NULL, 0, &f);
    r = mproc_future_get(f, NULL, 0, NULL, 30);
    mproc_error e;
    mproc_future_error(f, &e);
    CHECK(r == -EDOM && strcmp(e.message, "no good: 42") == 0, "task error: %d %s", r, e.message);
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    CHECK(e.rank >= 0 && strcmp(e.host, host) == 0, "task error: rank %d host '%s'", e.rank,
          e.host);
    mproc_future_free(f);
    printf("ok functions\n");
}

static void case_crashes(mproc_pool *p)
{
    struct {
        mproc_task_fn fn;
        int sig, status;
        const char *name;
    } cs[] = {{crash_segv, SIGSEGV, -1, "segv"},
              {crash_abort, SIGABRT, -1, "abort"},
              {crash_exit, 0, 3, "_exit"}};
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    for (size_t k = 0; k < 3; k++) {
        mproc_future *f;
        mproc_pool_submit(p, cs[k].fn, NULL, 0, &f);
        int r = mproc_future_get(f, NULL, 0, NULL, 60);
        mproc_error e;
        mproc_future_error(f, &e);
        CHECK(r == MPROC_EWORKERLOST, "%s: %d (%s)", cs[k].name, r, e.message);
        CHECK(e.signal == cs[k].sig, "%s: signal %d (%s)", cs[k].name, e.signal, e.message);
        if (cs[k].status >= 0)
            CHECK(e.exit_status == cs[k].status, "%s: status %d", cs[k].name, e.exit_status);
        CHECK(e.worker > 0, "%s: pid %d", cs[k].name, (int)e.worker);
        CHECK(strstr(e.message, "rank ") && strstr(e.message, host), "%s: where: %s", cs[k].name,
              e.message);
        check_where(&e, cs[k].name);
        mproc_future_free(f);
        /* The pool goes on. */
        int64_t x = 3, out = 0;
        r = mproc_pool_apply(p, square, &x, sizeof x, &out, sizeof out, NULL);
        CHECK(r == 0 && out == 10, "after %s: %d", cs[k].name, r);
    }
    /* A hard time limit. */
    double s = 30;
    mproc_future *f;
    double t0 = now_s();
    mproc_pool_submit_opts(p, noted_sleeper, &s, sizeof s, &(mproc_submit_opts){.timeout = 0.5},
                           &f);
    int r = mproc_future_get(f, NULL, 0, NULL, 60);
    mproc_error e;
    mproc_future_error(f, &e);
    CHECK(r == MPROC_ETIMELIMIT, "time limit: %d (%s)", r, e.message);
    check_where(&e, "time limit");
    CHECK(now_s() - t0 < 10, "time limit took %.1f s", now_s() - t0);
    mproc_future_free(f);
    printf("ok crashes\n");
}

/* mproc_future_cancel of a task running on a worker rank: -EBUSY, as locally, and the future
 * still completes with what the task made of it (it stops: MPROC_ECANCELLED; it goes on: its
 * result); the pool goes on. */
static void case_cancel_running(mproc_pool *p)
{
    for (int ignore = 0; ignore < 2; ignore++) {
        double a[2] = {ignore ? 0.3 : 20, ignore};
        mproc_future *f;
        CHECK(mproc_pool_submit(p, until_cancelled, a, sizeof a, &f) == 0, "submit");
        CHECK(wait_noted(30), "the task never started");
        CHECK(mproc_future_cancel(f) == -EBUSY, "cancel of a running task: %d",
              mproc_future_cancel(f));
        double t0 = now_s();
        char buf[8] = "";
        size_t len = 0;
        int r = mproc_future_get(f, buf, sizeof buf, &len, 10);
        mproc_error e;
        memset(&e, 0, sizeof e);
        mproc_future_error(f, &e);
        if (!ignore) {
            CHECK(r == MPROC_ECANCELLED && strstr(e.message, "saw the cancel"),
                  "cancelled running task: %d (%s)", r, e.message);
            CHECK(now_s() - t0 < 5, "the cancel took %.1f s", now_s() - t0);
        } else {
            CHECK(r == 0 && len == 4 && memcmp(buf, "done", 4) == 0,
                  "a running task that ignores the cancel keeps its result: %d (%s)", r, e.message);
        }
        CHECK(mproc_future_done(f), "future not done");
        CHECK(mproc_future_cancel(f) == -EALREADY, "cancel after done: %d", mproc_future_cancel(f));
        mproc_future_free(f);
    }
    /* The pool's accounting survived: a batch still runs to the end. */
    enum { N = 300 };
    mproc_future *fs[N];
    int bad = 0;
    for (int64_t i = 0; i < N; i++)
        mproc_pool_submit(p, square, &i, sizeof i, &fs[i]);
    for (int64_t i = 0; i < N; i++) {
        int64_t out = 0;
        if (mproc_future_get(fs[i], &out, sizeof out, NULL, 30) != 0 || out != i * i + 1) bad++;
        mproc_future_free(fs[i]);
    }
    CHECK(bad == 0, "after the cancels: %d of %d wrong", bad, N);
    printf("ok cancel running\n");
}

static void case_map(mproc_pool *p)
{
    size_t ns[] = {1, 7, 1000, 100000};
    for (size_t k = 0; k < 4; k++) {
        size_t n = ns[k];
        int32_t *in = malloc(n * sizeof *in);
        int64_t *out = calloc(n, sizeof *out);
        for (size_t i = 0; i < n; i++)
            in[i] = (int32_t)(i * 3 + 1);
        int32_t k5 = 5;
        /* arg copied (arg_size), by address (program data), and none */
        for (int mode = 0; mode < 3; mode++) {
            mproc_map_opts o = {0};
            int32_t add = 0;
            if (mode == 0) o.arg = &k5, o.arg_size = sizeof k5, add = 5;
            if (mode == 1) o.arg = (void *)&map_offset, add = map_offset;
            if (mode == 2 && n > 100) o.chunksize = 10;
            memset(out, 0, n * sizeof *out);
            int r = mproc_pool_map(p, map_add, in, sizeof *in, out, sizeof *out, n, &o);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += out[i] != (int64_t)in[i] * 2 + add;
            CHECK(r == 0 && bad == 0, "map n=%zu mode %d: %d, %zu wrong", n, mode, r, bad);
        }
        free(in);
        free(out);
    }
    /* An item that fails names itself. */
    int32_t in[1000];
    int64_t out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    size_t failed = 0;
    mproc_error e;
    int r = mproc_pool_map(p, map_fail_at, in, sizeof *in, out, sizeof *out, 1000,
                           &(mproc_map_opts){.failed_index = &failed, .error = &e});
    CHECK(r == -EDOM && failed == 777, "map failure: %d at %zu (%s)", r, failed, e.message);
    printf("ok map\n");
}

typedef struct {
    int64_t next, end;
} gen;

static int gen_next(const void **data, size_t *len, void *arg)
{
    gen *g = arg;
    static _Thread_local int64_t v;
    if (g->next >= g->end) return 0;
    v = g->next++;
    *data = &v;
    *len = sizeof v;
    return 1;
}

static void case_imap(mproc_pool *p)
{
    for (int unordered = 0; unordered < 2; unordered++) {
        for (size_t cs = 1; cs <= 64; cs *= 64) {
            gen g = {0, 3000};
            mproc_imap *it;
            int r = mproc_imap_new(&it, p, square, gen_next, &g,
                                   &(mproc_imap_opts){.unordered = unordered, .chunksize = cs});
            CHECK(r == 0, "imap_new %d", r);
            if (r) continue;
            int64_t sum = 0, expect = 0;
            size_t count = 0, idx;
            const void *d;
            size_t len;
            bool in_order = true;
            while ((r = mproc_imap_next(it, &d, &len, &idx, 60)) == 0) {
                int64_t v;
                memcpy(&v, d, sizeof v);
                sum += v;
                if (v != (int64_t)idx * (int64_t)idx + 1) in_order = false;
                count++;
            }
            for (int64_t i = 0; i < 3000; i++)
                expect += i * i + 1;
            CHECK(r == MPROC_EEND && count == 3000 && sum == expect && in_order,
                  "imap unordered=%d chunksize=%zu: %d %zu %" PRId64, unordered, cs, r, count, sum);
            mproc_imap_free(it);
        }
    }
    printf("ok imap\n");
}

static pthread_t cb_thread; /* where test_mpi_cb ran */

static void case_callbacks(mproc_pool *p)
{
    static _Atomic int called;
    mproc_future *f;
    int64_t x = 2;
    mproc_pool_submit(p, square, &x, sizeof x, &f);
    extern void test_mpi_cb(mproc_future *, void *);
    mproc_future_on_done(f, test_mpi_cb, (void *)&called);
    mproc_future_wait(f, 30);
    double t0 = now_s();
    while (!called && now_s() - t0 < 10)
        usleep(1000);
    CHECK(called == 1, "callback ran %d times", (int)called);
    /* In the pool's supervisor (the comm thread), even though the waiter ran the rounds that
     * brought the result. */
    CHECK(called == 1 && !pthread_equal(cb_thread, pthread_self()), "callback ran in the waiter");
    mproc_future_free(f);
    /* futures_wait over remote futures */
    mproc_future *fs[8];
    double s = 0.01;
    for (int i = 0; i < 8; i++)
        mproc_pool_submit(p, sleeper, &s, sizeof s, &fs[i]);
    int r = mproc_futures_wait(fs, 8, MPROC_ALL_COMPLETED, 30);
    CHECK(r >= 0, "futures_wait: %d", r);
    for (int i = 0; i < 8; i++) {
        CHECK(mproc_future_done(fs[i]), "future %d not done", i);
        mproc_future_free(fs[i]);
    }
    printf("ok callbacks\n");
}

void test_mpi_cb(mproc_future *f, void *arg)
{
    (void)f;
    _Atomic int *c = arg;
    cb_thread = pthread_self();
    (*c)++;
}

/* WARNING and above from a worker reach rank 0's log, under the worker's name and host. */
static void case_logging(mproc_pool *p)
{
    mproc_log_init(&(mproc_log_config){.on_error = on_error_cb, .file_level = MPROC_LOG_OFF});
    CHECK(mproc_pool_apply(p, logs_error, NULL, 0, NULL, 0, NULL) == 0, "logging task");
    double t0 = now_s();
    while (!seen_records && now_s() - t0 < 10)
        usleep(1000);
    char host[64] = "", want[100];
    gethostname(host, sizeof host - 1);
    snprintf(want, sizeof want, "@%s", host);
    CHECK(seen_records == 1, "records seen: %d", (int)seen_records);
    CHECK(strstr(seen_process, "PoolWorker-r") && strstr(seen_process, want),
          "record's process: %s", seen_process);
    printf("ok logging (%s)\n", seen_process);
}

static void case_pools(void)
{
    /* In sequence */
    for (int k = 0; k < 3; k++) {
        mproc_pool *p = new_pool(1);
        if (!p) return;
        int64_t x = k, out;
        CHECK(mproc_pool_apply(p, square, &x, sizeof x, &out, sizeof out, NULL) == 0 &&
                  out == k * k + 1,
              "pool %d", k);
        mproc_pool_close(p);
        CHECK(mproc_pool_join(p, 30) == 0, "join pool %d", k);
        mproc_pool_free(p);
    }
    /* At once, with tasks of both in flight */
    mproc_pool *a = new_pool(1), *b = new_pool(1);
    if (!a || !b) return;
    mproc_future *fa[100], *fb[100];
    for (int64_t i = 0; i < 100; i++) {
        mproc_pool_submit(a, square, &i, sizeof i, &fa[i]);
        mproc_pool_submit(b, mpi_lib_triple, &i, sizeof i, &fb[i]);
    }
    int bad = 0;
    for (int64_t i = 0; i < 100; i++) {
        int64_t x, y;
        if (mproc_future_get(fa[i], &x, sizeof x, NULL, 30) || x != i * i + 1) bad++;
        if (mproc_future_get(fb[i], &y, sizeof y, NULL, 30) || y != 3 * i) bad++;
        mproc_future_free(fa[i]);
        mproc_future_free(fb[i]);
    }
    CHECK(bad == 0, "two pools: %d wrong", bad);
    /* Terminate one with work running: its tasks fail, the other goes on. */
    double s = 20;
    mproc_future *lf;
    mproc_pool_submit(a, sleeper, &s, sizeof s, &lf);
    usleep(200000);
    double t0 = now_s();
    mproc_pool_terminate(a);
    int r = mproc_future_get(lf, NULL, 0, NULL, 30);
    CHECK(r == MPROC_ECANCELLED, "terminated task: %d", r);
    CHECK(now_s() - t0 < 5, "terminate took %.1f s", now_s() - t0);
    mproc_future_free(lf);
    CHECK(mproc_pool_join(a, 30) == 0, "join terminated");
    mproc_pool_free(a);
    int64_t x = 4, y;
    CHECK(mproc_pool_apply(b, square, &x, sizeof x, &y, sizeof y, NULL) == 0 && y == 17,
          "other pool after terminate");
    CHECK(strcmp(mproc_pool_backend(b), "mpi") == 0, "backend %s", mproc_pool_backend(b));
    mproc_pool_free(b);
    printf("ok pools\n");
}

static int mode_all(void)
{
    mproc_pool *p = new_pool(2);
    if (!p) return 1;
    CHECK(strcmp(mproc_pool_backend(p), "mpi") == 0, "backend %s", mproc_pool_backend(p));
    CHECK(mproc_pool_size(p) >= 2, "size %d", mproc_pool_size(p));
    CHECK(mproc_mpi_active() == 1, "mproc_mpi_active");
    /* Open MPI's own yield inside every probe is off (src/mpi/mpi.c): 3 ranks on 2 cores
     * oversubscribe this machine, which turns it on otherwise. */
    const char *y = getenv("OMPI_MCA_mpi_yield_when_idle");
    CHECK(y && strcmp(y, "0") == 0, "mpi_yield_when_idle %s", y ? y : "unset");
    case_submit_apply(p);
    case_payloads(p);
    case_functions(p);
    case_crashes(p);
    case_cancel_running(p);
    case_map(p);
    case_imap(p);
    case_callbacks(p);
    case_logging(p);
    mproc_pool_close(p);
    CHECK(mproc_pool_join(p, 60) == 0, "join");
    mproc_pool_free(p);
    case_pools();
    printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}

/* Rank 0 returns from main with tasks queued and running: the job still ends, cleanly. The
 * handles are dropped at exit, before the library stops the pool (so that a leak checker sees
 * only the library's own memory). */
static mproc_future *queued_fs[50];

static void drop_queued(void)
{
    for (int i = 0; i < 50; i++)
        mproc_future_free(queued_fs[i]);
}

static int mode_queued(void)
{
    /* run_mpi.sh sets it for this launch: the user's setting stays. */
    const char *y = getenv("OMPI_MCA_mpi_yield_when_idle");
    if (!y || strcmp(y, "1") != 0) {
        printf("FAIL: mpi_yield_when_idle %s, set 1\n", y ? y : "unset");
        return 1;
    }
    mproc_pool *p = new_pool(1);
    if (!p) return 1;
    double s = 30;
    for (int i = 0; i < 50; i++)
        mproc_pool_submit(p, sleeper, &s, sizeof s, &queued_fs[i]);
    atexit(drop_queued);
    usleep(300000);
    printf("returning with tasks queued\n");
    return 0;
}

static int mode_killrank(void)
{
    mproc_pool *p = new_pool(1);
    if (!p) return 1;
    mproc_future *f;
    mproc_pool_submit(p, kill_rank, NULL, 0, &f);
    mproc_future_wait(f, 60); /* the job ends under us */
    printf("FAIL: the job went on after a worker rank was killed\n");
    return 0;
}

/* Ctrl-C: the wrapper sends SIGINT to mpirun once this says ready. */
static int mode_sigint(void)
{
    mproc_pool *p = new_pool(1);
    if (!p) return 1;
    double s = 60;
    mproc_future *f;
    mproc_pool_submit(p, sleeper, &s, sizeof s, &f);
    usleep(200000);
    printf("ready\n");
    mproc_future_wait(f, 60);
    printf("FAIL: still running after SIGINT\n");
    return 0;
}

static int mode_idle(void)
{
    mproc_pool *p = new_pool(1);
    if (!p) return 1;
    int64_t before[8][2], after[8][2];
    int n = 0;
    /* One probe per worker: pin nothing, just ask enough times to see each rank's pid. */
    mproc_future *fs[8];
    for (n = 0; n < 8; n++)
        mproc_pool_submit(p, rank_cpu, NULL, 0, &fs[n]);
    for (int i = 0; i < 8; i++) {
        mproc_future_get(fs[i], before[i], sizeof before[i], NULL, 30);
        mproc_future_free(fs[i]);
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now_s();
    sleep(3);
    double el = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    for (int i = 0; i < 8; i++)
        mproc_pool_submit(p, rank_cpu, NULL, 0, &fs[i]);
    for (int i = 0; i < 8; i++) {
        mproc_future_get(fs[i], after[i], sizeof after[i], NULL, 30);
        mproc_future_free(fs[i]);
    }
    double self = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
                           r0.ru_stime.tv_sec) +
                  (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
                           r0.ru_stime.tv_usec) *
                      1e-6;
    printf("rank 0 idle: %.1f %% of a core\n", 100 * self / el);
    CHECK(self / el < 0.10, "rank 0 idle CPU %.1f %%", 100 * self / el);
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 8; j++) {
            if (after[j][0] != before[i][0]) continue;
            /* after was read after the sleep (plus a few tasks): an upper bound. */
            double used = (double)(after[j][1] - before[i][1]) / (double)hz;
            printf("rank pid %lld idle: %.1f %% of a core\n", (long long)before[i][0],
                   100 * used / el);
            CHECK(used / el < 0.10, "worker rank idle CPU %.1f %%", 100 * used / el);
            break;
        }
    }
    mproc_pool_free(p);
    printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}

/* No launcher: the same program runs its pool here, with one warning. */
static int mode_fallback(void)
{
    mproc_pool *p = new_pool(2);
    if (!p) return 1;
    CHECK(strcmp(mproc_pool_backend(p), "local") == 0, "backend %s", mproc_pool_backend(p));
    case_submit_apply(p);
    int64_t x = 5, out = 0;
    CHECK(mproc_pool_apply(p, mpi_lib_triple, &x, sizeof x, &out, sizeof out, NULL) == 0 &&
              out == 15,
          "fallback apply");
    CHECK(mproc_mpi_active() == 0, "mproc_mpi_active without a launcher");
    mproc_pool_free(p);
    printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
    return failures != 0;
}

#ifdef MPI_TEST_OTHER_BUILD
const char *test_mpi_build = "other"; /* changes the build-id */
#endif

/* A program that runs MPI itself: MPI_Init first, then mproc_init (which leaves the ranks
 * alone), then mproc_mpi_serve with root 1 (not 0: the ranks are renumbered). */
static int mode_serve(void)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    mproc_pool *p = (mproc_pool *)1;
    int r = mproc_mpi_serve(MPI_COMM_WORLD, 1, &p);
    CHECK(r == 0, "rank %d: mproc_mpi_serve: %d", rank, r);
    if (rank != 1) {
        CHECK(p == NULL, "rank %d: a pool outside the root", rank);
    } else if (p) {
        CHECK(strcmp(mproc_pool_backend(p), "mpi") == 0, "backend %s", mproc_pool_backend(p));
        case_submit_apply(p);
        case_crashes(p);
        case_map(p);
        mproc_pool_free(p);
    }
    /* The program's MPI goes on after the service. */
    int one = 1, sum = 0;
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(sum == size, "allreduce after the service: %d", sum);
    printf("rank %d: %s: %d failures\n", rank, failures ? "FAILED" : "PASSED", failures);
    MPI_Finalize();
    return failures != 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "serve") == 0) {
        int level;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level);
        if (mproc_init(NULL) < 0) return 1;
        return mode_serve();
    }
    int r = mproc_init(NULL); /* worker ranks never return from it */
    if (r < 0) {
        printf("FAIL: mproc_init: %d\n", r);
        return 1;
    }
    const char *mode = argc > 1 ? argv[1] : "all";
    (void)host_of;
    if (strcmp(mode, "all") == 0) return mode_all();
    if (strcmp(mode, "queued") == 0) return mode_queued();
    if (strcmp(mode, "killrank") == 0) return mode_killrank();
    if (strcmp(mode, "idle") == 0) return mode_idle();
    if (strcmp(mode, "sigint") == 0) return mode_sigint();
    if (strcmp(mode, "mismatch") == 0) {
        printf("FAIL: rank 0 went on with ranks of another build\n");
        return 1;
    }
    if (strcmp(mode, "fallback") == 0) return mode_fallback();
    printf("unknown mode %s\n", mode);
    return 2;
}
