#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena/arena.h"
#include "platform/platform.h"
#include "harness.h"

TEST(alloc_is_zeroed_aligned_and_reused)
{
    mproc__arena_stats st0, st1;
    unsigned char *a = mproc_shared_alloc(100);
    CHECK(a != NULL);
    CHECK_EQ((uintptr_t)a % 64, 0); /* a cache line of its own */
    CHECK(mproc_shared_size(a) >= 100);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(a[i], 0);
    memset(a, 0xab, 100);
    mproc__arena_get_stats(&st0);
    mproc_shared_free(a);
    unsigned char *b = mproc_shared_alloc(100);
    CHECK(b == a); /* same size class: the freed block comes back, zeroed again */
    for (int i = 0; i < 100; i++)
        CHECK_EQ(b[i], 0);
    mproc__arena_get_stats(&st1);
    CHECK_EQ(st1.top, st0.top);
    mproc_shared_free(b);
}

TEST(large_blocks_are_zeroed_after_reuse)
{
    size_t n = 8u << 20;
    unsigned char *a = mproc_shared_alloc(n);
    CHECK(a != NULL);
    memset(a, 0x5a, n);
    mproc_shared_free(a);
    unsigned char *b = mproc_shared_alloc(n);
    CHECK(b == a);
    for (size_t i = 0; i < n; i += 4093)
        CHECK_EQ(b[i], 0);
    CHECK_EQ(b[n - 1], 0);
    mproc_shared_free(b);
}

TEST(frees_balance_in_use)
{
    mproc__arena_stats st0, st1;
    CHECK(mproc_shared_alloc(1) != NULL); /* initialise; the block is left in use on purpose */
    mproc__arena_get_stats(&st0);
    void *p[1000];
    for (int i = 0; i < 1000; i++)
        CHECK((p[i] = mproc_shared_alloc((size_t)(i * 37 % 5000) + 1)));
    for (int i = 0; i < 1000; i++)
        mproc_shared_free(p[i]);
    mproc__arena_get_stats(&st1);
    CHECK_EQ(st1.in_use, st0.in_use);
}

struct handoff {
    _Atomic uint32_t ready;
    int *late;
};

static int fill_child(void *arg)
{
    /* The child writes through a pointer the parent allocated after the fork: same address. */
    struct handoff *h = arg;
    while (!atomic_load(&h->ready))
        mproc__futex_wait(&h->ready, 0, INT64_MAX);
    *h->late = 1234;
    return 0;
}

TEST(block_made_after_child_started_is_shared)
{
    struct handoff *h = mproc_shared_alloc(sizeof *h);
    mproc_process *p = harness_start(fill_child, h);
    int *late = mproc_shared_alloc(sizeof *late);
    h->late = late;
    atomic_store(&h->ready, 1);
    mproc__futex_wake(&h->ready, 1);
    CHECK_EQ(harness_join(p), 0);
    CHECK_EQ(*late, 1234);
    mproc_shared_free(late);
    mproc_shared_free(h);
}

TEST(exhaustion_returns_enomem)
{
    CHECK_OK(mproc_init(&(mproc_config){.arena_size = 16u << 20}));
    errno = 0;
    CHECK(mproc_shared_alloc(64u << 20) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(mproc_shared_alloc(SIZE_MAX) == NULL);
    CHECK_EQ(errno, ENOMEM);
    void *ps[64];
    int n = 0;
    while (n < 64 && (ps[n] = mproc_shared_alloc(1u << 20)))
        n++;
    CHECK(n > 0 && n < 64);
    CHECK_EQ(errno, ENOMEM);
    /* Use up every size class; then constructors of shared objects report -ENOMEM too. */
    static const size_t sizes[] = {4000, 1000, 200, 40, 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        while (mproc_shared_alloc(sizes[i])) {
        }
    mproc_value *v;
    CHECK_RC(mproc_value_new(&v, 8, false), -ENOMEM);
    for (int i = 0; i < n; i++)
        mproc_shared_free(ps[i]);
    CHECK((ps[0] = mproc_shared_alloc(1u << 20)) != NULL);
    mproc_shared_free(ps[0]);
}

TEST(bad_input)
{
    errno = 0;
    CHECK(mproc_shared_alloc(0) == NULL);
    CHECK_EQ(errno, EINVAL);
    mproc_shared_free(NULL);
    int local;
    mproc_shared_free(&local); /* not from the arena: ignored */
    void *p = mproc_shared_alloc(10);
    mproc_shared_free(p);
    mproc_shared_free(p); /* a double free is ignored, not a corrupted free list */
    void *a = mproc_shared_alloc(10), *b = mproc_shared_alloc(10);
    CHECK(a != b);
    mproc_shared_free(a);
    mproc_shared_free(b);
    CHECK_RC(mproc_init(NULL), -EALREADY);
}

TEST(shared_size_refuses_what_is_not_a_live_block)
{
    char *p = mproc_shared_alloc(100);
    CHECK(p != NULL);
    CHECK(mproc_shared_size(p) >= 100);
    int local;
    static char data[256];
    char *heap = malloc(64);
    const void *bad[] = {NULL, &local, data + 64, heap, p + 8, p + 64};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK_EQ(mproc_shared_size(bad[i]), 0);
        CHECK_EQ(errno, EINVAL);
    }
    free(heap);
    mproc_shared_free(p);
    errno = 0;
    CHECK_EQ(mproc_shared_size(p), 0); /* freed */
    CHECK_EQ(errno, EINVAL);
}

TEST(init_rejects_bad_config)
{
    unsetenv("MPROC_START"); /* the environment would win over the config */
    CHECK_RC(mproc_init(&(mproc_config){.start_method = "spawnx"}), -EINVAL);
    CHECK_RC(mproc_init(&(mproc_config){.arena_size = 1000}), -EINVAL);
    CHECK_OK(mproc_init(&(mproc_config){.start_method = "fork"}));
}
