/* Ctrl-C with a handler during a blocking get, put or join: the call returns -EINTR (Python raises
 * KeyboardInterrupt there), and a retry after it neither loses nor duplicates a message. SIGINT is
 * sent to the main thread at random moments by a thread of its own, as a terminal would at any
 * time, while a peer process keeps the queue now empty, now full. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ITEMS 400

static atomic_int handled;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

typedef struct {
    pthread_t target;
    atomic_bool stop;
    unsigned seed;
} pelter;

/* SIGINT to the target thread every 0-3 ms until told to stop. */
static void *pelt(void *arg)
{
    pelter *p = arg;
    while (!atomic_load(&p->stop)) {
        struct timespec ts = {0, (long)(rand_r(&p->seed) % 3000000)};
        nanosleep(&ts, NULL);
        pthread_kill(p->target, SIGINT);
    }
    return NULL;
}

static void start_pelting(pelter *p, pthread_t *th)
{
    /* SA_RESTART on purpose: the queue's wait must still come back with -EINTR. */
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    p->target = pthread_self();
    p->seed = (unsigned)time(NULL);
    atomic_store(&p->stop, false);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the pelter itself never takes the signal */
    pthread_create(th, NULL, pelt, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void stop_pelting(pelter *p, pthread_t th)
{
    atomic_store(&p->stop, true);
    pthread_join(th, NULL);
    signal(SIGINT, SIG_DFL);
}

/* A peer that works in bursts, so the other side blocks often. */
static void pause_a_little(unsigned *seed)
{
    if (rand_r(seed) % 4 == 0) usleep(rand_r(seed) % 4000);
}

static int slow_producer(void *arg)
{
    mproc_queue *q = arg;
    unsigned seed = 7;
    for (uint32_t i = 0; i < ITEMS; i++) {
        pause_a_little(&seed);
        if (mproc_queue_put(q, &i, sizeof i, MPROC_FOREVER) != 0) return 1;
    }
    return 0;
}

/* Gets every item in order, exactly once; 0 when they all came and nothing more. */
static int slow_consumer(void *arg)
{
    mproc_queue *q = arg;
    unsigned seed = 11;
    for (uint32_t i = 0; i < ITEMS; i++) {
        pause_a_little(&seed);
        uint32_t v;
        size_t len;
        if (mproc_queue_get(q, &v, sizeof v, &len, 30.0) != 0) return 1;
        if (len != sizeof v || v != i) return 2;
    }
    uint32_t v;
    return mproc_queue_get(q, &v, sizeof v, NULL, 0.2) == -ETIMEDOUT ? 0 : 3;
}

/* Whether a signal lands while the get sleeps is up to the scheduler: on a loaded machine one
 * round of 400 items can pass with every signal landing outside the waits, so rounds repeat
 * (each checked in full) until one saw -EINTR, at most ROUNDS of them. */
#define ROUNDS 10

TEST(blocking_get_returns_eintr_when_a_handler_ran)
{
    int eintr = 0;
    for (int round = 0; round < ROUNDS && eintr == 0; round++) {
        mproc_queue *q;
        CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = 4}));
        atomic_store(&handled, 0);
        pelter pl;
        pthread_t th;
        start_pelting(&pl, &th);
        mproc_process *p = harness_start(slow_producer, q);
        for (uint32_t next = 0; next < ITEMS;) {
            uint32_t v;
            size_t len;
            int r = mproc_queue_get(q, &v, sizeof v, &len, MPROC_FOREVER);
            if (r == -EINTR) {
                eintr++;
                continue;
            }
            CHECK_OK(r);
            CHECK_EQ(len, sizeof v);
            CHECK_EQ(v, next); /* nothing lost, nothing twice */
            next++;
        }
        stop_pelting(&pl, th);
        CHECK_EQ(harness_join(p), 0);
        CHECK(atomic_load(&handled) >= eintr);
        CHECK_EQ(mproc_queue_size(q), 0);
        mproc_queue_free(q);
    }
    CHECK(eintr > 0);
}

/* Rounds as for get: one round under ASan once saw no signal land in a put's wait. */
TEST(blocking_put_returns_eintr_when_a_handler_ran)
{
    int eintr = 0;
    for (int round = 0; round < ROUNDS && eintr == 0; round++) {
        mproc_queue *q;
        CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.max_items = 2}));
        pelter pl;
        pthread_t th;
        start_pelting(&pl, &th);
        mproc_process *c = harness_start(slow_consumer, q);
        for (uint32_t i = 0; i < ITEMS;) {
            int r = mproc_queue_put(q, &i, sizeof i, MPROC_FOREVER);
            if (r == -EINTR) {
                eintr++;
                continue; /* not queued: put it again */
            }
            CHECK_OK(r);
            i++;
        }
        stop_pelting(&pl, th);
        CHECK_EQ(harness_join(c), 0); /* every item once, in order, and no extra one */
        mproc_queue_free(q);
    }
    CHECK(eintr > 0);
}

static int slow_worker(void *arg)
{
    mproc_queue *q = arg;
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t v;
        if (mproc_queue_get(q, &v, sizeof v, NULL, 30.0) != 0) return 1;
        usleep(5000);
        if (mproc_queue_task_done(q) != 0) return 2;
    }
    return 0;
}

TEST(join_returns_eintr_when_a_handler_ran)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, &(mproc_queue_opts){.joinable = true}));
    for (uint32_t i = 0; i < 20; i++)
        CHECK_OK(mproc_queue_put(q, &i, sizeof i, 0));
    pelter pl;
    pthread_t th;
    start_pelting(&pl, &th);
    mproc_process *w = harness_start(slow_worker, q);
    int eintr = 0, r;
    while ((r = mproc_queue_join(q, MPROC_FOREVER)) == -EINTR)
        eintr++;
    stop_pelting(&pl, th);
    CHECK_OK(r);
    CHECK(eintr > 0);
    CHECK_EQ(harness_join(w), 0);
    mproc_queue_free(q);
}
