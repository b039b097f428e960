#include "platform/platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t mproc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int mproc__timeout_ns(double timeout, int64_t *ns)
{
    if (isnan(timeout)) return -EINVAL;
    /* Above the bound (31 years) a double to int64 conversion could overflow; nobody means it. */
    *ns = timeout < 0 || timeout > MPROC__TIMEOUT_MAX_S ? INT64_MAX : (int64_t)(timeout * 1e9);
    return 0;
}

int64_t mproc__deadline(double timeout)
{
    int64_t ns;
    if (mproc__timeout_ns(timeout, &ns) < 0) ns = INT64_MAX; /* the caller checked it */
    return mproc__deadline_after(mproc__now_ns(), ns);
}

int64_t mproc__remaining_ns(int64_t deadline)
{
    if (deadline == INT64_MAX) return INT64_MAX;
    return deadline - mproc__now_ns();
}

int mproc__poll_ms(int64_t deadline)
{
    int64_t left = mproc__remaining_ns(deadline);
    if (left == INT64_MAX) return -1;
    if (left <= 0) return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

struct timespec mproc__abs_timespec(int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    return ts;
}

int mproc__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != INT64_MAX) {
        if (deadline <= mproc__now_ns()) return -ETIMEDOUT;
        ts = mproc__abs_timespec(deadline);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so retries never drift. */
    long r =
        syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return 0;
    if (errno == EAGAIN) return 0;
    if (errno == ETIMEDOUT) return -ETIMEDOUT;
    if (errno == EINTR) return -EINTR;
    return -errno;
}

int mproc__futex_wake(_Atomic uint32_t *addr, int n)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

bool mproc__pidfd_supported(void)
{
    static int state; /* 0 unknown, 1 yes, -1 no */
    int st = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (st == 0) {
        const char *env = getenv("MPROC_NO_PIDFD");
        int fd = env && *env && strcmp(env, "0") != 0 ? -ENOSYS : mproc__pidfd_open(getpid());
        if (fd >= 0) close(fd);
        st = fd >= 0 ? 1 : -1;
        __atomic_store_n(&state, st, __ATOMIC_RELAXED);
    }
    return st > 0;
}

int mproc__pidfd_open(pid_t pid)
{
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

int mproc__pidfd_send_signal(int pidfd, int sig)
{
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
}

int mproc__pidfd_wait(int pidfd, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        int r = poll(&pfd, 1, mproc__poll_ms(deadline));
        if (r > 0) return 1;
        if (r == 0) {
            if (mproc__remaining_ns(deadline) <= 0) return 0;
            continue;
        }
        if (errno != EINTR) return -errno;
    }
}

static pid_t cached_pid;

static void pid_forget(void)
{
    __atomic_store_n(&cached_pid, 0, __ATOMIC_RELAXED);
}

static void pid_hook(void)
{
    pthread_atfork(NULL, NULL, pid_forget);
}

pid_t mproc__pid(void)
{
    pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
    if (p) return p;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pid_hook); /* before the getpid: no fork in between goes unseen */
    p = getpid();
    __atomic_store_n(&cached_pid, p, __ATOMIC_RELAXED);
    return p;
}

pid_t mproc__gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}
