/* The talk's Pool + SyncManager pattern, and the same with a plain arena Event, side by side:
 *
 *     with Pool() as pool, SyncManager() as manager:
 *         exit_event = manager.Event()
 *         result = pool.apply_async(calculate_e, (exit_event,))
 *         time.sleep(0.5)
 *         exit_event.set()
 *         print(result.get())
 *
 * Python needs the manager because a plain Event cannot be pickled into a pool task. In mproc both
 * ways work: an arena Event is a pointer every worker can use, and a manager's Event is, in the
 * manager's own family, that same kind of pointer (no round trip per call). A manager earns its
 * keep only for programs outside the family, which reach the same Event by its name and address
 * (mproc_manager_connect); this program prints that address. */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int calculate_e(mproc_task *t)
{
    size_t len;
    mproc_event *const *exit_event = mproc_task_arg(t, &len);
    if (len != sizeof *exit_event) return mproc_task_fail(t, -EINVAL, "expected an Event");
    double e = 0, term = 1.0;
    unsigned long long n = 0;
    do {
        for (int i = 0; i < 1000; i++) {
            e += term;
            term /= (double)++n;
        }
    } while (!mproc_event_is_set(*exit_event));
    return mproc_task_return(t, &e, sizeof e);
}

/* Hand the Event to a task, let it run for half a second, stop it, print its result. */
static int run(const char *how, mproc_pool *pool, mproc_event *exit_event)
{
    mproc_future *result = NULL;
    double e;
    int rc = mproc_pool_submit(pool, calculate_e, &exit_event, sizeof exit_event, &result);
    if (rc == 0) {
        nanosleep(&(struct timespec){.tv_nsec = 500 * 1000 * 1000}, NULL);
        mproc_event_set(exit_event);
        rc = mproc_future_get(result, &e, sizeof e, NULL, MPROC_FOREVER);
    }
    if (rc == 0) printf("%s: e = %.15f\n", how, e);
    mproc_future_free(result);
    return rc;
}

int main(void)
{
    mproc_pool *pool = NULL;
    mproc_manager *manager = NULL;
    mproc_event *managed = NULL, *plain = NULL;
    char address[64]; /* the manager: a server process, on an abstract unix socket, no key */
    snprintf(address, sizeof address, "unix:@mproc-example-manager-%d", (int)getpid());
    int rc = mproc_pool_new(&pool, NULL);
    if (rc == 0) rc = mproc_manager_start(&manager, address, NULL, 0, NULL);
    if (rc == 0) {
        printf("manager at %s\n", mproc_manager_address(manager));
        rc = mproc_manager_event(manager, "exit", &managed);
    }
    if (rc == 0) rc = run("manager Event", pool, managed);
    /* the same without a manager: an Event in the family arena */
    if (rc == 0) rc = mproc_event_new(&plain);
    if (rc == 0) rc = run("arena Event", pool, plain);
    if (rc != 0) fprintf(stderr, "manager_event: %s\n", mproc_strerror(rc));
    mproc_pool_free(pool);
    mproc_event_free(plain);
    mproc_manager_free(manager); /* ends the server, and its Event with it */
    return rc == 0 ? 0 : 1;
}
