/* A pool future in a libuv loop (docs/event-loops.md): a uv_poll_t on mproc_future_fd(), the
 * eventfd that turns readable when the task is done. Built when libuv is found. */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c17 */
#include <mproc.h>
#include <stdio.h>
#include <time.h>
#include <uv.h>

static int slow_answer(mproc_task *t)
{
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000 * 1000}, NULL); /* the long work */
    int answer = 42;
    return mproc_task_return(t, &answer, sizeof answer);
}

static uv_timer_t ticker;
static int ticks, answer, rc = -1;

static void on_tick(uv_timer_t *t)
{
    ticks++; /* the loop's other work */
}

/* libuv may poll the fd until the handle is closed: free the future only then. */
static void on_closed(uv_handle_t *h)
{
    mproc_future_free(h->data);
}

static void on_done(uv_poll_t *h, int status, int events)
{
    rc = mproc_future_get(h->data, &answer, sizeof answer, NULL, 0); /* done: does not block */
    uv_close((uv_handle_t *)h, on_closed);
    uv_close((uv_handle_t *)&ticker, NULL);
}

int main(void)
{
    mproc_pool *pool = NULL;
    mproc_future *f = NULL;
    uv_poll_t watch;
    int r = mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 1});
    if (r == 0) r = mproc_pool_submit(pool, slow_answer, NULL, 0, &f);
    int fd = r == 0 ? mproc_future_fd(f) : r;
    if (fd < 0) {
        fprintf(stderr, "future_uv: %s\n", mproc_strerror(fd));
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_poll_init(loop, &watch, fd);
    watch.data = f;
    uv_poll_start(&watch, UV_READABLE, on_done);
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, on_tick, 50, 50);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    if (rc == 0)
        printf("answer %d after %d ticks of the loop\n", answer, ticks);
    else
        fprintf(stderr, "future_uv: %s\n", mproc_strerror(rc));
    mproc_pool_free(pool);
    return rc == 0 ? 0 : 1;
}
