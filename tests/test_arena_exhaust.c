/* Arena exhaustion and recovery (issue 21 item 5): a small arena filled to the last byte with
 * blocks of one size, all freed, must then serve every other size (every power of two from 16 B
 * to the largest block that fits, the sizes just around each, and those around the cache limit)
 * and every object type of the library, for several fill sizes. The arena caches freed blocks
 * per size; if that space stayed bound to the filled size, these allocations would fail with
 * -ENOMEM although the arena is empty. */
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "harness.h"

#define ARENA ((size_t)32 << 20)

static int square_task(mproc_task *t)
{
    const int *x = mproc_task_arg(t, NULL);
    long long y = (long long)*x * *x;
    return mproc_task_return(t, &y, sizeof y);
}

/* Fill the arena with blocks of `size` until it refuses one; free them; return how many fit. */
static size_t fill_and_free(size_t size)
{
    size_t cap = ARENA / size + 16, n = 0;
    void **b = malloc(cap * sizeof *b);
    CHECK(b != NULL);
    while (n < cap && (b[n] = mproc_shared_alloc(size)))
        n++;
    CHECK(n < cap); /* it did run out */
    for (size_t i = 0; i < n; i++)
        mproc_shared_free(b[i]);
    free(b);
    CHECK_OK(mproc__arena_check());
    return n;
}

/* Every size class, one at a time (each as large as the empty arena allows), then all the small
 * ones at once. */
static void every_size(void)
{
    size_t sizes[200], k = 0;
    for (size_t s = 16; s <= ARENA / 2; s *= 2) {
        sizes[k++] = s - 1 > 0 ? s - 1 : s;
        sizes[k++] = s;
        sizes[k++] = s + s / 2;
    }
    /* Around the largest cached block (2 MiB, arena.c CACHE_BLOCK_MAX). */
    sizes[k++] = (2u << 20) - 64;
    sizes[k++] = (2u << 20) + 64;
    for (size_t i = 0; i < k; i++) {
        unsigned char *p = mproc_shared_alloc(sizes[i]);
        if (!p) harness_fail(__FILE__, __LINE__, "alloc of %zu bytes failed", sizes[i]);
        p[0] = 1;
        p[sizes[i] - 1] = 2;
        mproc_shared_free(p);
    }
    void *all[200];
    size_t m = 0;
    for (size_t i = 0; i < k && sizes[i] <= (1u << 20); i++) {
        all[m] = mproc_shared_alloc(sizes[i]);
        if (!all[m]) harness_fail(__FILE__, __LINE__, "alloc of %zu bytes failed", sizes[i]);
        m++;
    }
    for (size_t i = 0; i < m; i++)
        mproc_shared_free(all[i]);
    CHECK_OK(mproc__arena_check());
}

/* One of each object type, used once, then freed. */
static void every_object(void)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, NULL));
    int v = 5, got = 0;
    size_t len;
    CHECK_OK(mproc_queue_put(q, &v, sizeof v, 1));
    CHECK_OK(mproc_queue_get(q, &got, sizeof got, &len, 1));
    CHECK_EQ(got, 5);
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_lock_acquire(l, 1));
    CHECK_OK(mproc_lock_release(l));
    mproc_rlock *rl;
    CHECK_OK(mproc_rlock_new(&rl));
    mproc_semaphore *s;
    CHECK_OK(mproc_semaphore_new(&s, 1, false));
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    mproc_condition *c;
    CHECK_OK(mproc_condition_new(&c, NULL));
    mproc_barrier *b;
    CHECK_OK(mproc_barrier_new(&b, 1, NULL, NULL));
    CHECK(mproc_barrier_wait(b, 1) >= 0);
    mproc_value *val;
    CHECK_OK(mproc_value_new(&val, 64, true));
    mproc_conn *ca, *cb;
    CHECK_OK(mproc_pipe(&ca, &cb, true));
    CHECK_OK(mproc_conn_send(ca, &v, sizeof v));
    CHECK_OK(mproc_conn_recv(cb, &got, sizeof got, &len, 1));
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    int x = 7;
    long long y = 0;
    CHECK_OK(mproc_pool_apply(p, square_task, &x, sizeof x, &y, sizeof y, NULL));
    CHECK_EQ(y, 49);
    CHECK_OK(mproc_log_init(&(mproc_log_config){
        .console_level = MPROC_LOG_OFF, .file_level = MPROC_LOG_OFF, .ring_lines = 64}));
    mproc_log_shutdown();
    mproc_pool_free(p);
    mproc_conn_close(ca);
    mproc_conn_close(cb);
    mproc_value_free(val);
    mproc_barrier_free(b);
    mproc_condition_free(c);
    mproc_event_free(e);
    mproc_semaphore_free(s);
    mproc_rlock_free(rl);
    mproc_lock_free(l);
    mproc_queue_free(q);
    CHECK_OK(mproc__arena_check());
}

static void exhaust_then_everything(size_t fill)
{
    CHECK_OK(mproc_init(&(mproc_config){.arena_size = ARENA}));
    size_t n = fill_and_free(fill);
    printf("filled with %zu blocks of %zu B\n", n, fill);
    every_size();
    every_object();
    /* And the arena can be filled again, to about as many blocks. */
    size_t again = fill_and_free(fill);
    CHECK(again + again / 8 + 2 >= n);
}

TEST(exhausted_by_64_byte_blocks)
{
    exhaust_then_everything(64);
}
TEST(exhausted_by_1000_byte_blocks)
{
    exhaust_then_everything(1000);
}
TEST(exhausted_by_4_kib_blocks)
{
    exhaust_then_everything(4096);
}
TEST(exhausted_by_64_kib_blocks)
{
    exhaust_then_everything(64u << 10);
}
TEST(exhausted_by_1_mib_blocks)
{
    exhaust_then_everything(1u << 20);
}
TEST(exhausted_by_3_mib_blocks)
{
    exhaust_then_everything(3u << 20);
}
