/* The talk's second sample at work: the CalculateE "subclass" (calculate_e.h) is a process with an
 * exit Event and a result Queue. Its result exists only once the Event is set: until then
 * get_value times out, and the process is alive. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>

#include "calculate_e.h"

int main(void)
{
    calculate_e *ce = NULL;
    e_value v;
    int rc = calculate_e_new(&ce);
    if (rc == 0) rc = calculate_e_start(ce);
    if (rc < 0) {
        fprintf(stderr, "e_process: %s\n", mproc_strerror(rc));
        return 1;
    }
    printf("started %s, alive: %s\n", mproc_process_name(ce->process),
           mproc_process_is_alive(ce->process) ? "yes" : "no");

    rc = calculate_e_get_value(ce, &v, 0.1);
    printf("get_value before the exit event: %s\n",
           rc == -ETIMEDOUT ? "timed out, no result yet" : mproc_strerror(rc));

    mproc_event_set(ce->exit_event);
    rc = calculate_e_get_value(ce, &v, MPROC_FOREVER);
    if (rc < 0) {
        fprintf(stderr, "e_process: %s\n", mproc_strerror(rc));
        calculate_e_free(ce);
        return 1;
    }
    int code = -1;
    mproc_process_join(ce->process, MPROC_FOREVER);
    mproc_process_exitcode(ce->process, &code);
    printf("e = %.15f after %llu iterations in %.3f s\n", v.e, v.iterations, v.seconds);
    printf("%s exited with %d\n", mproc_process_name(ce->process), code);
    calculate_e_free(ce);
    return 0;
}
