/* The talk's long computation: e as the sum of 1/k!, for a given time rather than until an Event
 * is set, publishing its progress to the arena every 1000 terms (two relaxed stores: cheap next
 * to 1000 divisions). Runs in a pool worker, a separate process: a crash here kills only the
 * worker, and the pool tells the main loop how it died. */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include "longtask.h"

double lt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double lt_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The computation is background work: the window should win the CPU when there is one to
 * share, as a desktop program's worker would be niced. */
int lt_lower_priority(void *arg)
{
    (void)arg;
    return setpriority(PRIO_PROCESS, 0, 10) == 0 ? 0 : -errno;
}

int lt_calculate_e(mproc_task *t)
{
    size_t len;
    const lt_arg *argp = mproc_task_arg(t, &len);
    if (len != sizeof *argp) return mproc_task_fail(t, -EINVAL, "expected an lt_arg");
    const lt_arg arg = *argp;
    lt_progress *p = arg.progress;
    lt_result r = {0};
    double term = 1.0, t0 = lt_now(), now;
    do {
        for (int i = 0; i < 1000; i++) {
            r.e += term;
            term /= (double)++r.iterations;
        }
        now = lt_now();
        atomic_store_explicit(&p->iterations, r.iterations, memory_order_relaxed);
        atomic_store_explicit(&p->elapsed_ns, (long long)((now - t0) * 1e9), memory_order_relaxed);
        if (arg.crash && now - t0 >= arg.duration / 2) raise(SIGSEGV); /* the talk's 1 / 0 */
        if (mproc_task_cancelled(t))
            return mproc_task_fail(t, MPROC_ECANCELLED, "stopped after %llu iterations",
                                   r.iterations);
    } while (now - t0 < arg.duration);
    r.seconds = now - t0;
    return mproc_task_return(t, &r, sizeof r);
}
