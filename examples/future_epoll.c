/* A pool future in a plain epoll loop (docs/event-loops.md): mproc_future_fd() is an eventfd that
 * turns readable when the task is done and stays readable, so it goes into the epoll set like a
 * socket. The loop's timeout stands in for its other work; it never blocks on the future. */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static int slow_answer(mproc_task *t)
{
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000 * 1000}, NULL); /* the long work */
    int answer = 42;
    return mproc_task_return(t, &answer, sizeof answer);
}

int main(void)
{
    mproc_pool *pool = NULL;
    mproc_future *f = NULL;
    int rc = mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 1});
    if (rc == 0) rc = mproc_pool_submit(pool, slow_answer, NULL, 0, &f);
    int fd = rc == 0 ? mproc_future_fd(f) : rc;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = f};
    if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fprintf(stderr, "future_epoll: %s\n", mproc_strerror(fd < 0 ? fd : -errno));
        return 1;
    }
    int ticks = 0, answer = 0;
    for (;;) {
        struct epoll_event got;
        int n = epoll_wait(ep, &got, 1, 50);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            ticks++; /* the loop's other work */
            continue;
        }
        if (n < 0) break;
        mproc_future *done = got.data.ptr;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); /* before the future (and its fd) goes */
        rc = mproc_future_get(done, &answer, sizeof answer, NULL, 0); /* done: does not block */
        break;
    }
    if (rc == 0)
        printf("answer %d after %d ticks of the loop\n", answer, ticks);
    else
        fprintf(stderr, "future_epoll: %s\n", mproc_strerror(rc));
    close(ep);
    mproc_future_free(f);
    mproc_pool_free(pool);
    return rc == 0 ? 0 : 1;
}
