#include "robust_util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"

int robust_sleeps_on(pid_t pid, pthread_mutex_t *m)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return n < 0 && errno == EACCES ? -1 : 0;
    buf[n] = 0;
    /* "nr arg1 ...": a sleeper in a system call; "running" or "-1 ..." otherwise. */
    char *end;
    long nr = strtol(buf, &end, 10);
    if (end == buf || nr != SYS_futex) return 0;
    unsigned long long addr = strtoull(end, NULL, 16);
    return addr == (unsigned long long)(uintptr_t)&m->__data.__lock;
}

bool robust_wait_sleeping(pid_t pid, pthread_mutex_t *m, double timeout)
{
    double until = harness_now() + timeout;
    for (;;) {
        int r = robust_sleeps_on(pid, m);
        if (r < 0) harness_skip("/proc/PID/syscall is not readable here");
        if (r > 0) return true;
        if (harness_now() >= until) return false;
        usleep(500);
    }
}

static int decoy_run(void *arg)
{
    _Atomic uint32_t *w = (_Atomic uint32_t *)&((pthread_mutex_t *)arg)->__data.__lock;
    for (;;) {
        uint32_t v = atomic_load(w);
        if ((v & FUTEX_TID_MASK) == 0) return 1; /* not held: the case is set up wrong */
        /* The waiters bit tells the kernel there is someone to wake when the holder dies. */
        if (!(v & FUTEX_WAITERS) && !atomic_compare_exchange_strong(w, &v, v | FUTEX_WAITERS))
            continue;
        v |= FUTEX_WAITERS;
        if (syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0) == 0) raise(SIGKILL);
        if (errno != EAGAIN && errno != EINTR) return 2;
    }
}

mproc_process *robust_decoy_start(pthread_mutex_t *m)
{
    mproc_process *d = harness_start(decoy_run, m);
    CHECK(robust_wait_sleeping(mproc_process_pid(d), m, 10 * harness_slow()));
    return d;
}
