/* The pool on MPI ranks (docs/mpi.md) against the local pool and mpi4py.futures
 * (bench/py/bench_mpi4py.py): run.py starts this program under mpirun -np 3 (impl "mproc", the
 * "mpi" backend: rank 0 and two worker ranks) and once without a launcher (the same program,
 * falling back to the local backend: impl "mproc local"). Links libmproc_mpi, not the static
 * library, so it is built apart from the other benchmarks (bench/CMakeLists.txt). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int inc(mproc_task *t)
{
    const int64_t *x = mproc_task_arg(t, NULL);
    int64_t r = *x + 1;
    return mproc_task_return(t, &r, sizeof r);
}

static int map_inc(const void *in, void *out, void *arg)
{
    (void)arg;
    *(int32_t *)out = *(const int32_t *)in + 1;
    return 0;
}

int main(void)
{
    if (mproc_init(NULL) < 0) return 1; /* the worker ranks stay in here */
    mproc_pool *p;
    if (mproc_pool_new(&p, &(mproc_pool_opts){.backend = "mpi", .workers = 1}) < 0) return 1;
    const char *impl = strcmp(mproc_pool_backend(p), "mpi") == 0 ? "mproc" : "mproc local";

    /* submit + get, 100000 tasks in flight at most */
    enum { N = 200000, WIN = 100000 };
    mproc_future **fs = malloc(WIN * sizeof *fs);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        for (int64_t base = 0; base < N; base += WIN) {
            for (int64_t i = 0; i < WIN; i++) {
                int64_t x = base + i;
                if (mproc_pool_submit(p, inc, &x, sizeof x, &fs[i]) < 0) abort();
            }
            for (int64_t i = 0; i < WIN; i++) {
                int64_t r;
                if (mproc_future_get(fs[i], &r, sizeof r, NULL, MPROC_FOREVER) < 0 ||
                    r != base + i + 1)
                    abort();
                mproc_future_free(fs[i]);
            }
        }
        double rate = N / (bench_now() - t0);
        if (rate > best) best = rate;
    }
    bench_row("mpi pool: submit+get, trivial tasks", impl, best, "tasks/s", "higher");
    free(fs);

    /* map over 10 M ints */
    size_t n = 10000000;
    int32_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        in[i] = (int32_t)i;
    best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        if (mproc_pool_map(p, map_inc, in, sizeof *in, out, sizeof *out, n, NULL) < 0) abort();
        double rate = (double)n / (bench_now() - t0);
        if (rate > best) best = rate;
    }
    if (out[n - 1] != (int32_t)n) abort();
    bench_row("mpi pool: map 10M ints (chunked)", impl, best, "items/s", "higher");
    free(in);
    free(out);

    /* apply round trip while hot: the median of 2000 */
    enum { A = 2000 };
    static double lat[A];
    for (int i = 0; i < A + 200; i++) {
        int64_t x = i, r;
        double t0 = bench_now();
        if (mproc_pool_apply(p, inc, &x, sizeof x, &r, sizeof r, NULL) < 0) abort();
        if (i >= 200) lat[i - 200] = bench_now() - t0;
    }
    bench_row("mpi pool: apply round trip", impl, bench_median(lat, A) * 1e6, "us", "lower");
    mproc_pool_free(p);
    return 0;
}
