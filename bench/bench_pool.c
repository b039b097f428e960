/* Pool benchmarks: mproc's process pool against a plain pthread pool ("threads") on the same
 * workloads; bench/py/bench_pool.py runs multiprocessing.Pool on them. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"

enum {
    ONE_N = 100000,
    MANY_N = 100000,
    APPLY_N = 50000,
    MAP_N = 10000000,
    IDLE_N = 2000,
    IMAP_N = 5000000,
    IMAP_CHUNK = 1000
};
#define IDLE_PAUSE 200e-6 /* longer than any wait's spin: the workers are asleep */

/* ---- mproc ---- */

static int trivial(mproc_task *t)
{
    const int *x = mproc_task_arg(t, NULL);
    int y = *x + 1;
    return mproc_task_return(t, &y, sizeof y);
}

static int twice(const void *in, void *out, void *arg)
{
    (void)arg;
    *(int *)out = *(const int *)in * 2;
    return 0;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, mproc_strerror(r));
    exit(1);
}

/* imap of tiny items: an int each, doubled through a pointer as a pool taking the caller's
 * function must (the peer is bench/peers' MPI master/worker, 1000 items per message). */
static int (*volatile imap_item_fn)(const void *, void *, void *) = twice;

static int imap_gen(const void **data, size_t *len, void *arg)
{
    int *next = arg;
    if (*next >= IMAP_N) return 0;
    static int item;
    item = (*next)++;
    *data = &item;
    *len = sizeof item;
    return 1;
}

static int imap_task(mproc_task *t)
{
    int y;
    imap_item_fn(mproc_task_arg(t, NULL), &y, NULL);
    return mproc_task_return(t, &y, sizeof y);
}

static void imap_check(size_t index, const void *data, size_t len, size_t want)
{
    if (index != want || len != sizeof(int) || *(const int *)data != (int)want * 2)
        die("imap result", -1);
}

/* Items per second over IMAP_N, every result checked; batch: mproc_imap_next_batch. */
static double imap_once(mproc_pool *p, bool batch)
{
    int next = 0, r;
    mproc_imap *it;
    double t0 = bench_now();
    r = mproc_imap_new(&it, p, imap_task, imap_gen, &next,
                       &(mproc_imap_opts){.chunksize = IMAP_CHUNK});
    if (r < 0) die("imap_new", r);
    size_t want = 0;
    if (batch) {
        mproc_imap_item items[IMAP_CHUNK];
        while ((r = mproc_imap_next_batch(it, items, IMAP_CHUNK, MPROC_FOREVER)) > 0)
            for (int i = 0; i < r; i++, want++)
                imap_check(items[i].index, items[i].data, items[i].len, want);
    } else {
        const void *data;
        size_t len, index;
        while ((r = mproc_imap_next(it, &data, &len, &index, MPROC_FOREVER)) == 0)
            imap_check(index, data, len, want++);
    }
    double dt = bench_now() - t0;
    if (r != MPROC_EEND || want != IMAP_N) die("imap end", r);
    mproc_imap_free(it);
    return IMAP_N / dt;
}

static void mproc_rows(int *in, int *out)
{
    double t0 = bench_now();
    mproc_pool *p;
    int r = mproc_pool_new(&p, NULL);
    if (r < 0) die("pool_new", r);
    int x = 1, y = 0;
    r = mproc_pool_apply(p, trivial, &x, sizeof x, &y, sizeof y, NULL);
    if (r < 0 || y != 2) die("first apply", r);
    bench_row("pool start + first result", "mproc", (bench_now() - t0) * 1e3, "ms", "lower");

    t0 = bench_now();
    for (int i = 0; i < ONE_N; i++) {
        mproc_future *f;
        if ((r = mproc_pool_submit(p, trivial, &i, sizeof i, &f)) < 0) die("submit", r);
        if ((r = mproc_future_get(f, &y, sizeof y, NULL, MPROC_FOREVER)) < 0 || y != i + 1)
            die("get", r);
        mproc_future_free(f);
    }
    bench_row("submit+get throughput, 1 in flight", "mproc", ONE_N / (bench_now() - t0), "tasks/s",
              "higher");

    static mproc_future *fs[MANY_N];
    t0 = bench_now();
    for (int i = 0; i < MANY_N; i++)
        if ((r = mproc_pool_submit(p, trivial, &i, sizeof i, &fs[i])) < 0) die("submit", r);
    for (int i = 0; i < MANY_N; i++) {
        if ((r = mproc_future_get(fs[i], &y, sizeof y, NULL, MPROC_FOREVER)) < 0 || y != i + 1)
            die("get", r);
        mproc_future_free(fs[i]);
    }
    bench_row("submit+get throughput, 100k in flight", "mproc", MANY_N / (bench_now() - t0),
              "tasks/s", "higher");

    imap_once(p, false); /* warm, as the map rows are */
    bench_row("imap tiny items, chunksize 1000", "mproc", imap_once(p, false), "items/s", "higher");
    bench_row("imap tiny items, chunksize 1000, next_batch", "mproc", imap_once(p, true), "items/s",
              "higher");

    t0 = bench_now();
    for (int i = 0; i < APPLY_N; i++)
        if ((r = mproc_pool_apply(p, trivial, &i, sizeof i, &y, sizeof y, NULL)) < 0)
            die("apply", r);
    bench_row("apply round trip", "mproc", (bench_now() - t0) / APPLY_N * 1e6, "us", "lower");

    /* A sporadic apply: the pool has gone idle before each one. */
    static double idle_t[IDLE_N];
    for (int i = 0; i < IDLE_N; i++) {
        nanosleep(&(struct timespec){.tv_nsec = (long)(IDLE_PAUSE * 1e9)}, NULL);
        t0 = bench_now();
        if ((r = mproc_pool_apply(p, trivial, &i, sizeof i, &y, sizeof y, NULL)) < 0)
            die("apply", r);
        idle_t[i] = bench_now() - t0;
    }
    bench_row("apply round trip, pool idle", "mproc", bench_median(idle_t, IDLE_N) * 1e6, "us",
              "lower");

    /* once to warm the staging block, as a long-running program would be */
    if ((r = mproc_pool_map(p, twice, in, sizeof *in, out, sizeof *out, MAP_N, NULL)) < 0)
        die("map", r);
    t0 = bench_now();
    if ((r = mproc_pool_map(p, twice, in, sizeof *in, out, sizeof *out, MAP_N, NULL)) < 0)
        die("map", r);
    double dt = bench_now() - t0;
    for (int i = 0; i < MAP_N; i += 9973)
        if (out[i] != in[i] * 2) die("map result", -1);
    bench_row("map trivial fn over 10M ints", "mproc", MAP_N / dt, "items/s", "higher");

    /* The same map with input and output in the family arena: workers read and write them in
     * place, as the threads of a thread pool do, so no staging copy. */
    int *ain = mproc_shared_alloc(MAP_N * sizeof *ain),
        *aout = mproc_shared_alloc(MAP_N * sizeof *aout);
    if (!ain || !aout) die("shared alloc", -ENOMEM);
    memcpy(ain, in, MAP_N * sizeof *ain);
    if ((r = mproc_pool_map(p, twice, ain, sizeof *ain, aout, sizeof *aout, MAP_N, NULL)) < 0)
        die("map", r);
    t0 = bench_now();
    if ((r = mproc_pool_map(p, twice, ain, sizeof *ain, aout, sizeof *aout, MAP_N, NULL)) < 0)
        die("map", r);
    dt = bench_now() - t0;
    for (int i = 0; i < MAP_N; i += 9973)
        if (aout[i] != ain[i] * 2) die("map result", -1);
    bench_row("map trivial fn over 10M ints, arrays in the arena", "mproc", MAP_N / dt, "items/s",
              "higher");
    mproc_shared_free(ain);
    mproc_shared_free(aout);
    mproc_pool_free(p);
}

/* ---- a plain pthread pool: one locked queue, a condition variable per future ---- */

typedef struct job {
    int (*fn)(int);
    int arg, result;
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *next;
    /* map chunk: the item function is called through a pointer, per item, as a pool library
     * that takes the caller's function must (inlining it would compare a compiler's loop
     * vectorisation with a pool) */
    mproc_map_fn mapfn;
    const int *in;
    int *out;
    size_t n;
} job;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    bool stop;
    int nthreads;
    pthread_t th[64];
} tpool;

static int inc1(int x)
{
    return x + 1;
}

static void *tworker(void *arg)
{
    tpool *tp = arg;
    for (;;) {
        pthread_mutex_lock(&tp->mu);
        while (!tp->head && !tp->stop)
            pthread_cond_wait(&tp->cv, &tp->mu);
        job *j = tp->head;
        if (!j) {
            pthread_mutex_unlock(&tp->mu);
            return NULL;
        }
        tp->head = j->next;
        if (!tp->head) tp->tail = NULL;
        pthread_mutex_unlock(&tp->mu);
        if (j->fn) {
            j->result = j->fn(j->arg);
        } else {
            for (size_t i = 0; i < j->n; i++)
                j->mapfn(&j->in[i], &j->out[i], NULL);
        }
        pthread_mutex_lock(&j->mu);
        j->done = true;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
}

static void tsubmit(tpool *tp, job *j)
{
    j->done = false;
    j->next = NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_mutex_lock(&tp->mu);
    if (tp->tail)
        tp->tail->next = j;
    else
        tp->head = j;
    tp->tail = j;
    pthread_cond_signal(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
}

static int tget(job *j)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    return j->result;
}

static void tpool_start(tpool *tp, int n)
{
    memset(tp, 0, sizeof *tp);
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->nthreads = n;
    for (int i = 0; i < n; i++)
        pthread_create(&tp->th[i], NULL, tworker, tp);
}

static void tpool_stop(tpool *tp)
{
    pthread_mutex_lock(&tp->mu);
    tp->stop = true;
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->nthreads; i++)
        pthread_join(tp->th[i], NULL);
}

static void thread_rows(int *in, int *out)
{
    int n = mproc_cpu_count();
    if (n > 64) n = 64;
    tpool tp;
    double t0 = bench_now();
    tpool_start(&tp, n);
    job one = {.fn = inc1, .arg = 1};
    tsubmit(&tp, &one);
    if (tget(&one) != 2) die("thread pool", -1);
    bench_row("pool start + first result", "threads", (bench_now() - t0) * 1e3, "ms", "lower");

    t0 = bench_now();
    for (int i = 0; i < ONE_N; i++) {
        job j = {.fn = inc1, .arg = i};
        tsubmit(&tp, &j);
        if (tget(&j) != i + 1) die("thread pool", -1);
    }
    bench_row("submit+get throughput, 1 in flight", "threads", ONE_N / (bench_now() - t0),
              "tasks/s", "higher");

    job *js = malloc(MANY_N * sizeof *js);
    t0 = bench_now();
    for (int i = 0; i < MANY_N; i++) {
        js[i].fn = inc1;
        js[i].arg = i;
        tsubmit(&tp, &js[i]);
    }
    for (int i = 0; i < MANY_N; i++)
        if (tget(&js[i]) != i + 1) die("thread pool", -1);
    bench_row("submit+get throughput, 100k in flight", "threads", MANY_N / (bench_now() - t0),
              "tasks/s", "higher");
    free(js);

    t0 = bench_now();
    for (int i = 0; i < APPLY_N; i++) {
        job j = {.fn = inc1, .arg = i};
        tsubmit(&tp, &j);
        tget(&j);
    }
    bench_row("apply round trip", "threads", (bench_now() - t0) / APPLY_N * 1e6, "us", "lower");

    int chunks = n * 4;
    job *cj = calloc((size_t)chunks, sizeof *cj);
    t0 = bench_now();
    size_t per = (MAP_N + (size_t)chunks - 1) / (size_t)chunks;
    for (int c = 0; c < chunks; c++) {
        size_t first = (size_t)c * per;
        cj[c].mapfn = twice;
        cj[c].in = in + first;
        cj[c].out = out + first;
        cj[c].n = first >= MAP_N ? 0 : (MAP_N - first < per ? MAP_N - first : per);
        tsubmit(&tp, &cj[c]);
    }
    for (int c = 0; c < chunks; c++)
        tget(&cj[c]);
    double tdt = bench_now() - t0;
    bench_row("map trivial fn over 10M ints, arrays in the arena", "threads", MAP_N / tdt,
              "items/s", "higher");
    bench_row("map trivial fn over 10M ints", "threads", MAP_N / tdt, "items/s", "higher");
    free(cj);
    tpool_stop(&tp);
}

/* The floor for pool start: fork as many children as the pool has workers, each reporting back
 * through a pipe at once; what starting processes costs on this machine before any pool work. */
static void fork_floor_row(void)
{
    int n = mproc_cpu_count(), fds[2];
    if (pipe(fds) < 0) die("pipe", -errno);
    pid_t pids[64];
    if (n > 64) n = 64;
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char c = 1;
            _exit(write(fds[1], &c, 1) == 1 ? 0 : 1);
        }
        if (pids[i] < 0) die("fork", -errno);
    }
    for (int got = 0; got < n;) {
        char c[64];
        ssize_t k = read(fds[0], c, (size_t)(n - got));
        if (k <= 0) die("read", -errno);
        got += (int)k;
    }
    bench_row("pool start + first result", "floor", (bench_now() - t0) * 1e3, "ms", "lower");
    for (int i = 0; i < n; i++)
        waitpid(pids[i], NULL, 0);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    int *in = malloc(MAP_N * sizeof *in), *out = malloc(MAP_N * sizeof *out);
    for (int i = 0; i < MAP_N; i++)
        in[i] = i;
    memset(out, 0, MAP_N * sizeof *out);
    fork_floor_row(); /* in the same state as the pool's start below: 80 MB of arrays touched */
    mproc_rows(in, out);
    bench_row("apply round trip, pool idle", "floor",
              bench_futex_round_trip(IDLE_PAUSE, IDLE_N) * 1e6, "us", "lower");
    thread_rows(in, out);
    free(in);
    free(out);
    return 0;
}
