/* The talk's Pool version:
 *
 *     with Pool() as pool:
 *         exit_event = Manager().Event()
 *         result = pool.apply_async(calculate_e, (exit_event,))
 *         time.sleep(1)
 *         exit_event.set()
 *         print(result.get())
 *
 * Python needs a Manager's Event here because a plain Event cannot be pickled into a pool task.
 * An mproc Event lives in the family arena, so the task gets a plain pointer to it, and it works
 * even though the workers were started before the Event was made. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
    double e;
    unsigned long long iterations;
    char worker[64]; /* which process computed it */
} e_value;

static int calculate_e(mproc_task *t)
{
    size_t len;
    mproc_event *const *exit_event = mproc_task_arg(t, &len);
    if (len != sizeof *exit_event) return mproc_task_fail(t, -EINVAL, "expected an Event");
    e_value v = {0};
    double term = 1.0;
    do {
        for (int i = 0; i < 1000; i++) {
            v.e += term;
            term /= (double)++v.iterations;
        }
    } while (!mproc_event_is_set(*exit_event));
    snprintf(v.worker, sizeof v.worker, "%s", mproc_current_name());
    return mproc_task_return(t, &v, sizeof v);
}

int main(void)
{
    mproc_pool *pool = NULL;
    mproc_event *exit_event = NULL;
    mproc_future *result = NULL;
    e_value v;
    int rc = mproc_pool_new(&pool, NULL); /* one worker per CPU */
    if (rc == 0) rc = mproc_event_new(&exit_event);
    if (rc == 0) rc = mproc_pool_submit(pool, calculate_e, &exit_event, sizeof exit_event, &result);
    if (rc == 0) {
        nanosleep(&(struct timespec){.tv_nsec = 500 * 1000 * 1000}, NULL);
        mproc_event_set(exit_event);
        rc = mproc_future_get(result, &v, sizeof v, NULL, MPROC_FOREVER);
    }
    if (rc == 0)
        printf("e = %.15f after %llu iterations, computed by %s\n", v.e, v.iterations, v.worker);
    else
        fprintf(stderr, "e_pool: %s\n", mproc_strerror(rc));
    if (exit_event) mproc_event_set(exit_event); /* on any failure path too */
    mproc_future_free(result);
    mproc_pool_free(pool);
    mproc_event_free(exit_event);
    return rc == 0 ? 0 : 1;
}
