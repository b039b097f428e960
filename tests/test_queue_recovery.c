/* Queues outlive processes killed inside a put or a get: a torn message is skipped, a claimed
 * slot recovered, its bytes refunded, and survivors and newcomers go on, under SIGKILL at random
 * points as well. The API itself is tested in test_queue.c. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "channel/queue.h"
#include "fault_util.h"
#include "harness.h"
#include "queue_util.h"
#include "robust_util.h"

/* Die by SIGKILL on a fault, whoever handles SIGSEGV (sanitizers do): a death mid-copy. */
static void on_fault(int sig)
{
    (void)sig;
    kill(getpid(), SIGKILL);
}

static void die_on_fault(void)
{
    struct sigaction sa = {.sa_handler = on_fault};
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* ---- processes that die inside a put or a get ---- */

/* Dies in the middle of copying a large message in: its slot stays claimed. */
static int die_mid_put(void *arg)
{
    mproc_queue *q = arg;
    if (mproc_queue_put(q, "A", 1, 5) != 0) return 1;
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *m =
        mmap(NULL, 8 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    memset(m, 7, 4 * (size_t)pg);
    mprotect(m + 4 * pg, 4 * (size_t)pg, PROT_NONE);
    die_on_fault();
    mproc_queue_put(q, m, 8 * (size_t)pg, 5);
    return 3;
}

TEST(producer_dying_mid_put_does_not_wedge)
{
    SKIP_IN_THREAD_MODE("processes are threads: a fault would end them all");
    size_t before = arena_in_use();
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = 4, .max_bytes = 1 << 20}));
    mproc_process *p = harness_start(die_mid_put, q);
    CHECK_EQ(harness_join(p), -SIGKILL);
    CHECK_OK(mproc_queue_put(q, "B", 1, 0));
    char c;
    CHECK_OK(mproc_queue_get(q, &c, 1, NULL, 5));
    CHECK_EQ(c, 'A');
    double t0 = harness_now();
    CHECK_OK(mproc_queue_get(q, &c, 1, NULL, 5)); /* the torn message is skipped, never seen */
    CHECK_EQ(c, 'B');
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    CHECK_RC(mproc_queue_get(q, &c, 1, NULL, 0), -EAGAIN);
    /* Its byte charge was refunded: the whole budget is usable. */
    static unsigned char big[1 << 20];
    CHECK_OK(mproc_queue_put(q, big, sizeof big, 0));
    mproc_queue_free(q);
    CHECK_EQ(arena_in_use(), before); /* its block was recovered */
}

/* Dies in the middle of copying a message out into a read-only buffer. */
static int die_mid_get(void *arg)
{
    mproc_queue *q = arg;
    long pg = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, 4 * (size_t)pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    die_on_fault();
    size_t n;
    mproc_queue_get(q, m, 4 * (size_t)pg, &n, 5);
    return 3;
}

TEST(consumer_dying_mid_get_does_not_wedge)
{
    SKIP_IN_THREAD_MODE("processes are threads: a fault would end them all");
    size_t before = arena_in_use();
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = 1, .max_bytes = 8192}));
    unsigned char msg[8192];
    fill(msg, sizeof msg, 3);
    CHECK_OK(mproc_queue_put(q, msg, sizeof msg, 0));
    mproc_process *p = harness_start(die_mid_get, q);
    CHECK_EQ(harness_join(p), -SIGKILL);
    /* The one slot is left half-read: the next put finds its owner dead and recycles it. */
    double t0 = harness_now();
    CHECK_OK(mproc_queue_put(q, msg, sizeof msg, 5));
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    unsigned char out[8192];
    size_t n;
    CHECK_OK(mproc_queue_get(q, out, sizeof out, &n, 0));
    CHECK_EQ(n, sizeof msg);
    CHECK(memcmp(out, msg, n) == 0);
    mproc_queue_free(q);
    CHECK_EQ(arena_in_use(), before);
}

/* ---- SIGKILL at random points ---- */

enum { KT_SURVIVORS = 2, KT_MAX_MSGS = 1 << 22, KT_STOP_ID = 0xffffffffu };

typedef struct {
    mproc_queue *q;
    _Atomic int stop;
    _Atomic int errors;
    _Atomic uint32_t next_id;
    _Atomic uint64_t sent[KT_SURVIVORS];
    _Atomic uint64_t got;
    _Atomic unsigned char seen[KT_SURVIVORS][KT_MAX_MSGS / 8];
} kill_state;

/* Set from the argument in each child: a forkserver child does not inherit what the case set. */
static kill_state *ks;

typedef struct {
    kill_state *ks;
    uint32_t id;
} kt_arg;

static kt_arg *kt_new_arg(uint32_t id)
{
    kt_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    a->ks = ks;
    a->id = id;
    return a;
}

static size_t kt_payload(uint64_t seq, uint32_t id)
{
    uint64_t x = (seq * 2654435761u) ^ id;
    if (x % 16 == 0) return 100 + x % 20000; /* by reference */
    return x % 72;                           /* inline */
}

/* Survivors (id < KT_SURVIVORS) put until told to stop; victims put until killed. */
static int kt_producer(void *arg)
{
    const kt_arg *a = arg;
    ks = a->ks;
    uint32_t id = a->id;
    unsigned char *buf = malloc(sizeof(msg_hdr) + 20200);
    if (!buf) return 5;
    for (uint64_t seq = 0; seq < KT_MAX_MSGS; seq++) {
        if (id < KT_SURVIVORS && atomic_load(&ks->stop)) break;
        size_t len = make_msg(buf, id, seq, kt_payload(seq, id));
        if (mproc_queue_put(ks->q, buf, len, 60) != 0) {
            atomic_fetch_add(&ks->errors, 1);
            return 1;
        }
        if (id < KT_SURVIVORS) atomic_store(&ks->sent[id], seq + 1);
    }
    free(buf);
    return 0;
}

/* Every consumer checks each message's checksum and the order of each producer's messages. */
static int kt_consumer(void *arg)
{
    const kt_arg *a = arg;
    ks = a->ks;
    int64_t *last = malloc(4096 * sizeof *last);
    if (!last) return 5;
    for (int i = 0; i < 4096; i++)
        last[i] = -1;
    for (;;) {
        void *m;
        size_t n;
        int r = mproc_queue_get_alloc(ks->q, &m, &n, 60);
        if (r != 0) {
            atomic_fetch_add(&ks->errors, 1);
            return 1;
        }
        msg_hdr h;
        int bad = check_msg(m, n, &h);
        free(m);
        if (bad) {
            atomic_fetch_add(&ks->errors, 1);
            return 2;
        }
        if (h.producer == KT_STOP_ID) {
            free(last);
            return 0;
        }
        if (h.producer >= 4096 || (int64_t)h.seq <= last[h.producer]) {
            atomic_fetch_add(&ks->errors, 1);
            return 3;
        }
        last[h.producer] = (int64_t)h.seq;
        if (h.producer < KT_SURVIVORS) {
            unsigned char bit = (unsigned char)(1u << (h.seq % 8));
            if (atomic_fetch_or(&ks->seen[h.producer][h.seq / 8], bit) & bit) {
                atomic_fetch_add(&ks->errors, 1); /* delivered twice */
                return 4;
            }
        }
        atomic_fetch_add(&ks->got, 1);
    }
}

static uint64_t seen_count(int id)
{
    uint64_t c = 0;
    for (size_t i = 0; i < KT_MAX_MSGS / 8; i++)
        c += (uint64_t)__builtin_popcount(ks->seen[id][i]);
    return c;
}

static void kill_at_random_points(size_t items)
{
    ks = mproc_shared_alloc(sizeof *ks);
    CHECK(ks != NULL);
    size_t before = arena_in_use();
    CHECK_OK(
        mproc_queue_new(&ks->q, &(mproc_queue_opts){.max_items = items, .max_bytes = 128 << 10}));
    atomic_store(&ks->next_id, KT_SURVIVORS);
    mproc_process *prod[KT_SURVIVORS], *cons[2];
    kt_arg *cons_arg = kt_new_arg(0), *prod_arg[KT_SURVIVORS];
    for (int i = 0; i < 2; i++)
        cons[i] = harness_start(kt_consumer, cons_arg);
    for (uint32_t i = 0; i < KT_SURVIVORS; i++)
        prod[i] = harness_start(kt_producer, prod_arg[i] = kt_new_arg(i));

    uint64_t rng = fault_seed("queue kills");
    int consumer_kills = 0, kills = (int)fault_rounds(100);
    for (int k = 0; k < kills; k++) {
        bool consumer = fault_rand(&rng, 2);
        uint32_t id = atomic_fetch_add(&ks->next_id, 1);
        kt_arg *va = kt_new_arg(id);
        mproc_process *v = harness_start(consumer ? kt_consumer : kt_producer, va);
        uint64_t got = atomic_load(&ks->got);
        /* Die at a random instant once busy: mid-put, mid-get, blocked, or between calls. */
        usleep((useconds_t)fault_rand(&rng, 3000));
        CHECK_OK(mproc_process_kill(v));
        int code = harness_join(v);
        if (code != -SIGKILL) {
            printf("victim %u (%s) exited %d\n", id, consumer ? "consumer" : "producer", code);
            CHECK_EQ(code, -SIGKILL);
        }
        mproc_shared_free(va);
        consumer_kills += consumer;
        (void)got;
    }
    /* The survivors keep going after the massacre. */
    uint64_t sent_mid = atomic_load(&ks->sent[0]) + atomic_load(&ks->sent[1]);
    double t0 = harness_now();
    while (atomic_load(&ks->sent[0]) + atomic_load(&ks->sent[1]) < sent_mid + 2000) {
        if (harness_now() - t0 >= 30 * harness_slow()) {
            /* Wedged: say where (for the report). */
            printf("stalled after %d kills: sent %llu+%llu (at the massacre's end %llu), got %llu, "
                   "queue size %zu, full %d, empty %d, errors %d\n",
                   kills, (unsigned long long)atomic_load(&ks->sent[0]),
                   (unsigned long long)atomic_load(&ks->sent[1]), (unsigned long long)sent_mid,
                   (unsigned long long)atomic_load(&ks->got), mproc_queue_size(ks->q),
                   mproc_queue_full(ks->q), mproc_queue_empty(ks->q), atomic_load(&ks->errors));
            CHECK(!"the survivors stalled");
        }
        usleep(1000);
    }
    atomic_store(&ks->stop, 1);
    for (int i = 0; i < KT_SURVIVORS; i++)
        CHECK_EQ(harness_join(prod[i]), 0);
    /* The queue still works for a newcomer: stop the consumers through it. */
    unsigned char stop[sizeof(msg_hdr)];
    size_t sl = make_msg(stop, KT_STOP_ID, 0, 0);
    for (int i = 0; i < 2; i++)
        CHECK_OK(mproc_queue_put(ks->q, stop, sl, 30));
    for (int i = 0; i < 2; i++)
        CHECK_EQ(harness_join(cons[i]), 0);
    CHECK_EQ(atomic_load(&ks->errors), 0);

    uint64_t sent = 0, seen = 0;
    for (int i = 0; i < KT_SURVIVORS; i++) {
        sent += atomic_load(&ks->sent[i]);
        seen += seen_count(i);
    }
    printf("survivors sent %llu, delivered %llu, %d consumer kills; %d kills\n",
           (unsigned long long)sent, (unsigned long long)seen, consumer_kills, kills);
    /* Each killed consumer loses at most the one message it was handling. */
    CHECK(seen <= sent);
    CHECK(seen + (uint64_t)consumer_kills >= sent);
    CHECK(mproc_queue_empty(ks->q));
    /* Nothing of the byte budget leaked: a message of the whole budget still fits. */
    CHECK_OK(queue_budget_round_trip(ks->q, 128 << 10));
    mproc_queue_free(ks->q);
    mproc_shared_free(cons_arg);
    for (int i = 0; i < KT_SURVIVORS; i++)
        mproc_shared_free(prod_arg[i]);
    size_t after = arena_in_use();
    printf("arena bytes leaked by killed processes: %zu\n", after - before);
    mproc_shared_free(ks);
}

/* Small bounds, so processes die while blocked on a full queue as well as mid-copy. */
TEST_T(sigkill_at_random_points, 120)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    kill_at_random_points(64);
}

/* A ring where puts wait for room in batches and prefetch slots ahead. */
TEST_T(sigkill_at_random_points_big_ring, 120)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    kill_at_random_points(256);
}

/* ---- the arena's lock: its dead holder's wake-up lost with a killed waiter ---- */

static int hold_arena_lock(void *arg)
{
    _Atomic int *held = arg;
    pthread_mutex_lock(mproc__arena_mutex());
    atomic_store(held, 1);
    for (;;)
        pause(); /* killed holding it */
    return 0;
}

static int put_big(void *arg)
{
    static unsigned char m[4000];
    fill(m, sizeof m, 9);
    return mproc_queue_put(arg, m, sizeof m, 30) == 0 ? 0 : 1;
}

/* Large messages take their block from the arena, under its robust mutex. A waiter woken for it
 * and killed before it takes it lost the wake-up (platform/robust.h), and the others slept on in
 * pthread_mutex_lock, a producer among them holding the slot it was filling: the big-ring case of
 * sigkill_at_random_points stalled about once in 25 runs at MPROC_FAULT_SCALE=10, its consumers
 * waiting on that live producer's slot. Here a decoy takes the wake-up of the holder's death and
 * dies at once. */
TEST(queue_users_survive_the_arena_waiter_killed_at_wakeup)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = 16}));
    pthread_mutex_t *m = mproc__arena_mutex();
    CHECK(m != NULL);
    _Atomic int *held = mproc_shared_alloc(sizeof *held);
    CHECK(held != NULL);
    mproc__arena_stats st0;
    mproc__arena_get_stats(&st0);
    mproc_process *h = harness_start(hold_arena_lock, (void *)held);
    while (!atomic_load(held))
        usleep(200);
    mproc_process *d = robust_decoy_start(m);
    mproc_process *w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = harness_start(put_big, q);
        CHECK(robust_wait_sleeping(mproc_process_pid(w[i]), m, 10 * harness_slow()));
    }
    CHECK_OK(mproc_process_kill(h));
    CHECK_EQ(harness_join(h), -SIGKILL);
    /* The decoy was first in line: the holder's death woke it, and it died without the mutex. */
    CHECK_EQ(harness_join(d), -SIGKILL);
    double t0 = harness_now();
    unsigned char out[4000];
    size_t n;
    for (int i = 0; i < 2; i++) {
        CHECK_OK(mproc_queue_get(q, out, sizeof out, &n, 5 * harness_slow()));
        CHECK_EQ(n, sizeof out);
    }
    double took = harness_now() - t0;
    printf("both puts done %.1f ms after the decoy died\n", took * 1e3);
    CHECK(took < 1.0 * harness_slow());
    for (int i = 0; i < 2; i++)
        CHECK_EQ(harness_join(w[i]), 0);
    mproc__arena_stats st;
    mproc__arena_get_stats(&st);
    CHECK_EQ(st.rebuilds, st0.rebuilds + 1); /* the next holder repaired the lists */
    CHECK_OK(mproc__arena_check());
    mproc_queue_free(q);
    mproc_shared_free((void *)held);
}

/* ---- the overflow list of an unbounded queue ---- */

#define RING_PART MPROC_QUEUE_DEFAULT_ITEMS

/* Takes the ring's messages, then dies copying the first message of the overflow list out (which
 * it does holding the list's lock). */
static int die_mid_overflow_get(void *arg)
{
    mproc_queue *q = arg;
    for (int i = 0; i < RING_PART; i++) {
        uint32_t v;
        if (mproc_queue_get(q, &v, sizeof v, NULL, 5) != 0 || v != (uint32_t)i) return 1;
    }
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *m =
        mmap(NULL, 8 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    mprotect(m + 4 * pg, 4 * (size_t)pg, PROT_NONE);
    die_on_fault();
    mproc_queue_get(q, m, 8 * (size_t)pg, NULL, 5);
    return 3;
}

TEST(consumer_dying_in_the_overflow_list_does_not_wedge)
{
    SKIP_IN_THREAD_MODE("processes are threads: a fault would end them all");
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = MPROC_QUEUE_UNBOUNDED}));
    for (uint32_t i = 0; i < RING_PART; i++)
        CHECK_OK(mproc_queue_put(q, &i, sizeof i, 0));
    size_t big = 8 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *msg = malloc(big), *got = malloc(big);
    fill(msg, big, 42);
    CHECK_OK(mproc_queue_put(q, msg, big, 0)); /* the ring is full: into the list */
    CHECK_OK(mproc_queue_put(q, "tail", 4, 0));
    mproc_process *c = harness_start(die_mid_overflow_get, q);
    CHECK_EQ(harness_join(c), -SIGKILL);
    /* The lock of a dead holder is taken over and the list repaired: the message it was copying
     * out is still there, whole, then the next. */
    size_t n;
    double t0 = harness_now();
    CHECK_OK(mproc_queue_get(q, got, big, &n, 5));
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    CHECK_EQ(n, big);
    CHECK(memcmp(got, msg, big) == 0);
    CHECK_OK(mproc_queue_get(q, got, big, &n, 0));
    CHECK_EQ(n, 4);
    CHECK_OK(mproc_queue_put(q, "x", 1, 0));
    CHECK_OK(mproc_queue_get(q, got, big, &n, 0));
    CHECK_EQ(mproc_queue_size(q), 0);
    mproc_queue_free(q);
    free(msg);
    free(got);
}
