/* The long-running-task pattern of the talk's companion GUI project: the main loop must keep
 * answering (redraw, input, timers) while a long computation runs. Run the computation in a pool
 * worker and put the future's fd into the loop's poll set: the loop keeps ticking, and wakes up
 * the moment the result is ready, without polling the future or blocking on it.
 *
 * A GUI toolkit or an event library does the same with the fd (g_unix_fd_add, uv_poll_start,
 * epoll_ctl). */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

static int is_prime(unsigned n)
{
    if (n < 2) return 0;
    for (unsigned d = 2; d * d <= n; d++)
        if (n % d == 0) return 0;
    return 1;
}

/* The long task: count the primes below a limit by trial division (about half a second). */
static int count_primes(mproc_task *t)
{
    size_t len;
    const unsigned *limit = mproc_task_arg(t, &len);
    if (len != sizeof *limit) return mproc_task_fail(t, -EINVAL, "expected an unsigned");
    unsigned count = 0;
    for (unsigned n = 0; n < *limit; n++) {
        if (n % 65536 == 0 && mproc_task_cancelled(t)) return MPROC_ECANCELLED;
        count += (unsigned)is_prime(n);
    }
    return mproc_task_return(t, &count, sizeof count);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    const unsigned limit = 3000000;
    mproc_pool *pool = NULL;
    mproc_future *f = NULL;
    int rc = mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 1});
    if (rc == 0) rc = mproc_pool_submit(pool, count_primes, &limit, sizeof limit, &f);
    int fd = rc == 0 ? mproc_future_fd(f) : rc;
    if (fd < 0) {
        fprintf(stderr, "responsive: %s\n", mproc_strerror(fd));
        mproc_future_free(f);
        mproc_pool_free(pool);
        return 1;
    }

    double t0 = now();
    int ticks = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, 100); /* a GUI would also poll its display connection here */
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            perror("poll");
            break;
        }
        if (n == 0) {
            printf("tick %d: the main loop is responsive (%.1f s)\n", ++ticks, now() - t0);
            fflush(stdout);
            continue;
        }
        break; /* the future's fd is readable: the result is there */
    }

    unsigned count = 0;
    rc = mproc_future_get(f, &count, sizeof count, NULL, 0); /* done: does not block */
    if (rc == 0)
        printf("primes below %u: %u (ready after %.2f s and %d ticks)\n", limit, count, now() - t0,
               ticks);
    else
        fprintf(stderr, "responsive: %s\n", mproc_strerror(rc));
    mproc_future_free(f);
    mproc_pool_free(pool);
    return rc == 0 ? 0 : 1;
}
