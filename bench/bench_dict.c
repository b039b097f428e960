/* The arena dict: set+get of small keys and values (8 bytes each), one call at a time from 1
 * process and from 2 processes on different keys, and batched (set_many + get_many of 64).
 * Counted in operations per second: a set and a get are two operations. Python's twin
 * (bench/py/bench_dict.py) does the same on a multiprocessing.Manager().dict().
 *
 * BENCH_DICT_OPS=N sets the operations per round (default 2 M): valgrind --tool=callgrind
 * --toggle-collect=one_at_a_time (or batched) then counts the instructions per operation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "mproc.h"

#define ROUNDS 5
#define KEYS 1000
#define BATCH 64

static long ops_per_round = 2000000;

typedef struct {
    mproc_dict *d;
    mproc_barrier *start;
    int id;
} bench_arg;

static void key_of(char k[8], int id, long i)
{
    uint64_t v = ((uint64_t)id << 56) | (uint64_t)(i % KEYS);
    memcpy(k, &v, 8);
}

/* set then get, ops / 2 times, over KEYS keys of its own. */
__attribute__((noinline)) static void one_at_a_time(mproc_dict *d, int id, long ops)
{
    char k[8];
    uint64_t got = 0;
    for (long i = 0; i < ops / 2; i++) {
        key_of(k, id, i);
        uint64_t v = (uint64_t)i;
        if (mproc_dict_set(d, k, 8, &v, 8) != 0) abort();
        if (mproc_dict_get(d, k, 8, &got, sizeof got, NULL) != 0 || got != v) abort();
    }
}

__attribute__((noinline)) static void batched(mproc_dict *d, int id, long ops)
{
    char k[BATCH][8];
    uint64_t v[BATCH];
    mproc_dict_item it[BATCH];
    for (long i = 0; i < ops / (2 * BATCH); i++) {
        for (int j = 0; j < BATCH; j++) {
            key_of(k[j], id, i * BATCH + j);
            v[j] = (uint64_t)(i + j);
            it[j] = (mproc_dict_item){.key = k[j], .klen = 8, .val = &v[j], .vlen = 8};
        }
        if (mproc_dict_set_many(d, it, BATCH) != 0) abort();
        void *block;
        if (mproc_dict_get_many(d, it, BATCH, &block) != BATCH) abort();
        free(block);
    }
}

static int second(void *arg)
{
    bench_arg *a = arg;
    mproc_barrier_wait(a->start, MPROC_FOREVER);
    one_at_a_time(a->d, a->id, ops_per_round);
    return 0;
}

static double rate_one(mproc_dict *d)
{
    double t0 = bench_now();
    one_at_a_time(d, 0, ops_per_round);
    return (double)ops_per_round / (bench_now() - t0);
}

static double rate_batched(mproc_dict *d)
{
    double t0 = bench_now();
    batched(d, 0, ops_per_round);
    return (double)ops_per_round / (bench_now() - t0);
}

static double rate_two(bench_arg *a)
{
    mproc_process *p = bench_start(second, a);
    mproc_barrier_wait(a->start, MPROC_FOREVER);
    double t0 = bench_now();
    one_at_a_time(a->d, 0, ops_per_round);
    bench_join(p);
    return 2.0 * (double)ops_per_round / (bench_now() - t0);
}

int main(void)
{
    if (mproc_init(NULL) < 0) return 1;
    const char *env = getenv("BENCH_DICT_OPS");
    if (env) ops_per_round = atol(env);
    bench_arg *a = mproc_shared_alloc(sizeof *a);
    if (!a || mproc_dict_new(&a->d, NULL) < 0 || mproc_barrier_new(&a->start, 2, NULL, NULL) < 0)
        abort();
    a->id = 1;
    rate_one(a->d); /* warm: the keys exist from here on, so a set replaces */
    double one[ROUNDS], two[ROUNDS], batch[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        one[r] = rate_one(a->d);
        batch[r] = rate_batched(a->d);
        two[r] = env ? 0 : rate_two(a);
    }
    bench_row("dict set+get, one at a time", "mproc", bench_median(one, ROUNDS), "ops/s", "higher");
    if (!env)
        bench_row("dict set+get, one at a time, 2 processes", "mproc", bench_median(two, ROUNDS),
                  "ops/s", "higher");
    bench_row("dict set_many+get_many of 64", "mproc", bench_median(batch, ROUNDS), "ops/s",
              "higher");
    mproc_dict_free(a->d);
    mproc_barrier_free(a->start);
    mproc_shared_free(a);
    return 0;
}
