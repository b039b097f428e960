/* Pool: what map reports when it fails (error record, failing index, an item's own message and
 * cancel), and arguments workers cannot see: arg_size / initarg_size copies and the
 * MPROC_CHECK_POINTERS debug check. */
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static bool thread_mode(void)
{
    return strcmp(harness_method(), "thread") == 0;
}

static mproc_pool *make_pool(int workers)
{
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = workers}));
    return p;
}

/* ---- error record and failing index ---- */

static int twice(const void *in, void *out, void *arg)
{
    (void)arg;
    *(int *)out = 2 * *(const int *)in;
    return 0;
}

/* Fails item *arg with a message through the item's task. */
static int fail_at(const void *in, void *out, void *arg)
{
    int x = *(const int *)in;
    *(int *)out = x;
    if (x != *(const int *)arg) return 0;
    return mproc_task_fail(mproc_task_current(), -ENOENT, "no row %d", x);
}

/* Returns 5 (no message) at item *arg. */
static int return_5_at(const void *in, void *out, void *arg)
{
    *(int *)out = 0;
    return *(const int *)in == *(const int *)arg ? 5 : 0;
}

static int crash_at(const void *in, void *out, void *arg)
{
    *(int *)out = 0;
    if (*(const int *)in != *(const int *)arg) return 0;
    raise(SIGSEGV);
    *(volatile int *)(uintptr_t)(*(const int *)in - *(const int *)arg) = 1;
    return 0;
}

enum { N = 100 };

static void fill(int *in)
{
    for (int i = 0; i < N; i++)
        in[i] = i;
}

TEST(map_error_record_on_success_and_bad_input)
{
    mproc_pool *p = make_pool(2);
    int in[N], out[N];
    fill(in);
    mproc_error e;
    size_t k = 0;
    e.code = 99;
    CHECK_OK(mproc_pool_map(p, twice, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.error = &e, .failed_index = &k}));
    CHECK_EQ(e.code, 0);
    CHECK_EQ(k, SIZE_MAX);
    CHECK_EQ(out[N - 1], 2 * (N - 1));
    CHECK_RC(mproc_pool_map(p, NULL, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.error = &e, .failed_index = &k}),
             -EINVAL);
    CHECK_EQ(e.code, -EINVAL);
    CHECK_EQ(k, SIZE_MAX);
    CHECK(e.message[0] != '\0');
    mproc_pool_free(p);
}

TEST(map_task_fail_message_and_index_come_through)
{
    mproc_pool *p = make_pool(2);
    int in[N], out[N];
    fill(in);
    const size_t chunks[] = {1, 7, 10, 0};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        int bad = 37;
        mproc_error e;
        size_t k = 0;
        CHECK_RC(mproc_pool_map(p, fail_at, in, sizeof *in, out, sizeof *out, N,
                                &(mproc_map_opts){.chunksize = chunks[c],
                                                  .arg = &bad,
                                                  .arg_size = sizeof bad,
                                                  .error = &e,
                                                  .failed_index = &k}),
                 -ENOENT);
        CHECK_EQ(k, 37);
        CHECK_EQ(e.code, -ENOENT);
        CHECK_EQ(e.signal, 0);
        CHECK(e.worker > 0);
        CHECK(strstr(e.message, "map item 37") != NULL);
        CHECK(strstr(e.message, "no row 37") != NULL);
    }
    /* A plain nonzero return: MPROC_ETASKFAILED, the index, a message saying what it returned. */
    int bad = 61;
    mproc_error e;
    size_t k = 0;
    CHECK_RC(mproc_pool_map(p, return_5_at, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.chunksize = 8,
                                              .arg = &bad,
                                              .arg_size = sizeof bad,
                                              .error = &e,
                                              .failed_index = &k}),
             MPROC_ETASKFAILED);
    CHECK_EQ(k, 61);
    CHECK(strstr(e.message, "map item 61") != NULL);
    CHECK(strstr(e.message, "returned 5") != NULL);
    /* The pool goes on. */
    CHECK_OK(mproc_pool_map(p, twice, in, sizeof *in, out, sizeof *out, N, NULL));
    CHECK_EQ(out[10], 20);
    mproc_pool_free(p);
}

TEST(map_crash_reports_item_signal_and_backtrace)
{
    if (thread_mode()) harness_skip("a crash takes the whole process in thread mode");
    mproc_pool *p = make_pool(2);
    int in[N], out[N];
    fill(in);
    int bad = 53;
    mproc_error e;
    size_t k = 0;
    CHECK_RC(mproc_pool_map(p, crash_at, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.chunksize = 10,
                                              .arg = &bad,
                                              .arg_size = sizeof bad,
                                              .error = &e,
                                              .failed_index = &k}),
             MPROC_EWORKERLOST);
    CHECK_EQ(k, 53);
    CHECK_EQ(e.code, MPROC_EWORKERLOST);
    CHECK_EQ(e.signal, SIGSEGV);
    CHECK(e.worker > 0);
    CHECK(strstr(e.message, "map item 53") != NULL);
    CHECK(strstr(e.message, "SIGSEGV") != NULL);
    CHECK(strstr(e.message, "backtrace") != NULL);
    CHECK_OK(mproc_pool_map(p, twice, in, sizeof *in, out, sizeof *out, N, NULL));
    mproc_pool_free(p);
}

/* In the arena: a map item in one worker signals the other item, which waits to be cancelled. */
typedef struct {
    int started, saw_cancel;
} cancel_flags;

static int fail_or_wait_cancel(const void *in, void *out, void *arg)
{
    cancel_flags *f = arg;
    *(int *)out = 0;
    double until = harness_now() + 20;
    if (*(const int *)in == 0) {
        while (!__atomic_load_n(&f->started, __ATOMIC_SEQ_CST) && harness_now() < until)
            usleep(200);
        return mproc_task_fail(mproc_task_current(), -EIO, "item 0 gives up");
    }
    __atomic_store_n(&f->started, 1, __ATOMIC_SEQ_CST);
    mproc_task *t = mproc_task_current();
    while (!mproc_task_cancelled(t) && harness_now() < until)
        usleep(200);
    if (mproc_task_cancelled(t)) __atomic_store_n(&f->saw_cancel, 1, __ATOMIC_SEQ_CST);
    return 0;
}

TEST(map_item_sees_cancel_after_another_fails)
{
    mproc_pool *p = make_pool(2);
    cancel_flags *f = mproc_shared_alloc(sizeof *f);
    CHECK(f != NULL);
    memset(f, 0, sizeof *f);
    int in[2] = {0, 1}, out[2];
    size_t k = 0;
    CHECK_RC(mproc_pool_map(p, fail_or_wait_cancel, in, sizeof *in, out, sizeof *out, 2,
                            &(mproc_map_opts){.chunksize = 1, .arg = f, .failed_index = &k}),
             -EIO);
    CHECK_EQ(k, 0);
    double until = harness_now() + 10 * harness_slow();
    while (!__atomic_load_n(&f->saw_cancel, __ATOMIC_SEQ_CST) && harness_now() < until)
        usleep(1000);
    CHECK_EQ(__atomic_load_n(&f->saw_cancel, __ATOMIC_SEQ_CST), 1);
    mproc_pool_free(p);
    mproc_shared_free(f);
}

TEST(task_current_is_null_outside_a_task)
{
    CHECK(mproc_task_current() == NULL);
}

/* ---- arguments made after the pool ---- */

static int add_arg(const void *in, void *out, void *arg)
{
    *(int *)out = *(const int *)in + *(const int *)arg;
    return 0;
}

/* A heap int made after the pool, copied with arg_size: right under every start method (without
 * arg_size a fork or forkserver worker reads whatever its copy of the heap holds there). */
TEST(map_arg_size_copies_memory_made_after_the_pool)
{
    mproc_pool *p = make_pool(2);
    int *k = malloc(sizeof *k);
    CHECK(k != NULL);
    *k = 100;
    int in[N], out[N];
    fill(in);
    CHECK_OK(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = k, .arg_size = sizeof *k}));
    for (int i = 0; i < N; i++)
        CHECK_EQ(out[i], i + 100);
    /* Arrays in the arena (no staging): the copy still goes with the map. */
    int *ain = mproc_shared_alloc(sizeof in), *aout = mproc_shared_alloc(sizeof out);
    CHECK(ain && aout);
    memcpy(ain, in, sizeof in);
    *k = 7;
    CHECK_OK(mproc_pool_map(p, add_arg, ain, sizeof *ain, aout, sizeof *aout, N,
                            &(mproc_map_opts){.arg = k, .arg_size = sizeof *k}));
    CHECK_EQ(aout[N - 1], N - 1 + 7);
    CHECK_RC(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = NULL, .arg_size = 4}),
             -EINVAL);
    mproc_shared_free(ain);
    mproc_shared_free(aout);
    free(k);
    mproc_pool_free(p);
}

/* Atomic: in thread mode every worker's initializer writes it (a data race, TSan). */
static _Atomic int init_value;

static int init_copy(void *arg)
{
    atomic_store(&init_value, *(const int *)arg);
    return 0;
}

static int read_init_value(mproc_task *t)
{
    int v = atomic_load(&init_value);
    return mproc_task_return(t, &v, sizeof v);
}

/* initarg_size: the initializer gets an arena copy. The heap int is made after a first pool (so
 * a forkserver helper, started by that pool, does not have it). */
TEST(initarg_size_copies_the_initializer_argument)
{
    mproc_pool *first = make_pool(1);
    mproc_pool_free(first);
    int *v = malloc(sizeof *v);
    CHECK(v != NULL);
    *v = 4242;
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(
        &p, &(mproc_pool_opts){
                .workers = 2, .initializer = init_copy, .initarg = v, .initarg_size = sizeof *v}));
    *v = 0; /* the workers have their copy */
    for (int i = 0; i < 8; i++) {
        int got = 0;
        CHECK_OK(mproc_pool_apply(p, read_init_value, NULL, 0, &got, sizeof got, NULL));
        CHECK_EQ(got, 4242);
    }
    mproc_pool_free(p);
    free(v);
    CHECK_RC(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .initarg_size = 4}), -EINVAL);
}

/* ---- MPROC_CHECK_POINTERS ---- */

static int global_k = 5;

/* A local of a frame made after the pool. */
static __attribute__((noinline)) int map_with_stack_arg(mproc_pool *p, int *in, int *out,
                                                        mproc_error *e)
{
    volatile int local = 3;
    return mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                          &(mproc_map_opts){.arg = (void *)&local, .error = e});
}

TEST(check_pointers_refuses_memory_made_after_the_pool)
{
    CHECK_OK(setenv("MPROC_CHECK_POINTERS", "1", 1));
    mproc_pool *p;
    /* Made here, not through make_pool: the frames above mproc_pool_new count as existing. */
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 2}));
    int *heap = malloc(64 << 10); /* from the heap's top, which was free at pool creation */
    int *small = malloc(sizeof *small);
    CHECK(heap && small);
    *heap = 100;
    *small = 100;
    int in[N], out[N];
    fill(in);
    mproc_error e;
    int want = thread_mode() ? 0 : -EFAULT;
    CHECK_RC(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = heap, .error = &e}),
             want);
    if (want) {
        CHECK_EQ(e.code, -EFAULT);
        CHECK(strstr(e.message, "MPROC_CHECK_POINTERS") != NULL);
        CHECK(strstr(e.message, "map_opts.arg") != NULL);
    }
    CHECK_RC(map_with_stack_arg(p, in, out, &e), want);
    /* The case, a small block: malloc may reuse memory freed before the pool, which
     * the workers have, but with other bytes there. */
    CHECK_RC(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = small, .error = &e}),
             want);
    if (want) CHECK(strstr(e.message, "MPROC_CHECK_POINTERS") != NULL);
    /* What workers have passes: a global, the arena, a copied argument. */
    CHECK_OK(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = &global_k}));
    CHECK_EQ(out[1], 6);
    int *shared = mproc_shared_alloc(sizeof *shared);
    CHECK(shared != NULL);
    *shared = 9;
    CHECK_OK(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = shared}));
    CHECK_EQ(out[1], 10);
    CHECK_OK(mproc_pool_map(p, add_arg, in, sizeof *in, out, sizeof *out, N,
                            &(mproc_map_opts){.arg = heap, .arg_size = sizeof *heap}));
    CHECK_EQ(out[1], 101);
    mproc_shared_free(shared);
    free(heap);
    free(small);
    mproc_pool_free(p);
}

static int init_nop(void *arg)
{
    (void)arg;
    return 0;
}

/* initarg made after the forkserver helper started: the pool is refused. */
TEST(check_pointers_refuses_an_initarg_the_workers_lack)
{
    CHECK_OK(setenv("MPROC_CHECK_POINTERS", "1", 1));
    mproc_pool *first = make_pool(1);
    mproc_pool_free(first);
    int *v = malloc(sizeof *v);
    CHECK(v != NULL);
    *v = 12345;
    mproc_pool *p = NULL;
    int r =
        mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1, .initializer = init_nop, .initarg = v});
    if (strcmp(harness_method(), "forkserver") == 0) {
        CHECK_RC(r, -EFAULT);
        CHECK(p == NULL);
    } else {
        /* fork: the workers are forked now, they have it; thread: shared memory */
        CHECK_OK(r);
        mproc_pool_free(p);
    }
    free(v);
}

/* Chunks large enough to have their pages mapped before they run (map.c PREFAULT_MIN), with
 * arrays that start and end inside a page, in the arena and staged from the heap: every item
 * right, nothing written outside the output, twice (the second map over pages already mapped). */
TEST(prefaulted_chunks_give_the_same_results)
{
    mproc_pool *p = make_pool(2);
    enum { BIG = 300001, PAD = 7 };
    int *ain = mproc_shared_alloc((BIG + PAD) * sizeof *ain);
    int *aout = mproc_shared_alloc((BIG + 2 * PAD) * sizeof *aout);
    int *hin = malloc((BIG + PAD) * sizeof *hin), *hout = malloc((BIG + 2 * PAD) * sizeof *hout);
    CHECK(ain && aout && hin && hout);
    for (int i = 0; i < BIG + PAD; i++)
        ain[i] = hin[i] = i - PAD;
    for (int round = 0; round < 2; round++) {
        int *outs[2] = {aout, hout}, *ins[2] = {ain, hin};
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < BIG + 2 * PAD; i++)
                outs[k][i] = -1;
            CHECK_OK(mproc_pool_map(p, twice, ins[k] + PAD, sizeof(int), outs[k] + PAD, sizeof(int),
                                    BIG, NULL));
            int bad = 0;
            for (int i = 0; i < BIG; i++)
                bad += outs[k][PAD + i] != 2 * i;
            CHECK_EQ(bad, 0);
            for (int i = 0; i < PAD; i++) {
                CHECK_EQ(outs[k][i], -1);
                CHECK_EQ(outs[k][PAD + BIG + i], -1);
            }
        }
    }
    mproc_shared_free(ain);
    mproc_shared_free(aout);
    free(hin);
    free(hout);
    mproc_pool_free(p);
}
