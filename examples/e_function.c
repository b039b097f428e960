/* The talk's first sample: the e worker as a plain function. It sums 1/k! until another process
 * sets an exit Event, looking at the Event every 1000 terms (an atomic load: cheap, but not free).
 *
 * Here the function runs in the main process and a small "timer" process sets the Event after
 * 0.2 s: the Event lives in the family arena, so both processes use it through the same pointer. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <mproc.h>
#include <stdio.h>
#include <time.h>

static double calculate_e(mproc_event *exit_event, unsigned long long *iterations)
{
    double e = 0.0, term = 1.0; /* term = 1/k! */
    unsigned long long k = 0;
    do {
        for (int i = 0; i < 1000; i++) {
            e += term;
            term /= (double)++k;
        }
    } while (!mproc_event_is_set(exit_event));
    *iterations = k;
    return e;
}

static int timer(void *arg)
{
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    return mproc_event_set(arg) == 0 ? 0 : 1;
}

int main(void)
{
    mproc_event *exit_event;
    mproc_process *p;
    int rc;
    if ((rc = mproc_event_new(&exit_event)) < 0 ||
        (rc = mproc_process_new(
             &p, &(mproc_process_opts){.name = "Timer", .run = timer, .arg = exit_event})) < 0 ||
        (rc = mproc_process_start(p)) < 0) {
        fprintf(stderr, "e_function: %s\n", mproc_strerror(rc));
        return 1;
    }
    unsigned long long k;
    double e = calculate_e(exit_event, &k);
    mproc_process_join(p, MPROC_FOREVER);
    printf("e = %.15f after %llu iterations, stopped by %s\n", e, k, mproc_process_name(p));
    mproc_process_free(p);
    mproc_event_free(exit_event);
    return 0;
}
