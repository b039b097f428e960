/* The one timeout rule (docs/conventions.md) across the layers: NaN is refused with -EINVAL,
 * even where the call could return at once; infinity and huge values wait (forever), as a
 * negative one does. */
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "harness.h"

static const double forever[] = {INFINITY, 1e300, 9.3e9, 1e10, -1};
#define NFOREVER (sizeof forever / sizeof *forever)

static void *set_later(void *arg)
{
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    mproc_event_set(arg);
    return NULL;
}

TEST(event_wait_timeout_rule)
{
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK_RC(mproc_event_wait(e, NAN), -EINVAL);
    for (size_t i = 0; i < NFOREVER; i++) {
        mproc_event_clear(e);
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, set_later, e));
        double t0 = harness_now();
        CHECK_OK(mproc_event_wait(e, forever[i]));
        CHECK_BETWEEN(harness_now() - t0, 0.08, 10 * harness_slow());
        pthread_join(th, NULL);
    }
    CHECK_RC(mproc_event_wait(e, NAN), -EINVAL); /* set: still refused */
    mproc_event_free(e);
}

static void *put_later(void *arg)
{
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    int x = 5;
    mproc_queue_put(arg, &x, sizeof x, 1.0);
    return NULL;
}

TEST(queue_timeout_rule)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, NULL));
    int x = 1;
    size_t len;
    CHECK_RC(mproc_queue_put(q, &x, sizeof x, NAN), -EINVAL);
    CHECK_RC(mproc_queue_get(q, &x, sizeof x, &len, NAN), -EINVAL);
    void *data;
    CHECK_RC(mproc_queue_get_alloc(q, &data, &len, NAN), -EINVAL);
    for (size_t i = 0; i < NFOREVER; i++) {
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, put_later, q));
        double t0 = harness_now();
        CHECK_OK(mproc_queue_get(q, &x, sizeof x, &len, forever[i]));
        CHECK_BETWEEN(harness_now() - t0, 0.08, 10 * harness_slow());
        CHECK_EQ(x, 5);
        pthread_join(th, NULL);
    }
    mproc_queue_free(q);
}

TEST(sync_and_channel_refuse_nan)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_RC(mproc_lock_acquire(l, NAN), -EINVAL);
    mproc_lock_free(l);
    mproc_rlock *rl;
    CHECK_OK(mproc_rlock_new(&rl));
    CHECK_RC(mproc_rlock_acquire(rl, NAN), -EINVAL);
    mproc_rlock_free(rl);
    mproc_semaphore *s;
    CHECK_OK(mproc_semaphore_new(&s, 1, false));
    CHECK_RC(mproc_semaphore_acquire(s, NAN), -EINVAL);
    mproc_semaphore_free(s);
    mproc_barrier *b;
    CHECK_OK(mproc_barrier_new(&b, 1, NULL, NULL));
    CHECK_RC(mproc_barrier_wait(b, NAN), -EINVAL);
    mproc_barrier_free(b);
    mproc_conn *c1, *c2;
    CHECK_OK(mproc_pipe(&c1, &c2, true));
    char buf[4];
    size_t len;
    CHECK_RC(mproc_conn_recv(c1, buf, sizeof buf, &len, NAN), -EINVAL);
    CHECK_RC(mproc_conn_poll(c1, NAN), -EINVAL);
    int fd = mproc_conn_fd(c1);
    bool ready;
    CHECK_RC(mproc_wait(&fd, 1, &ready, NAN), -EINVAL);
    mproc_conn_close(c1);
    mproc_conn_close(c2);
}
