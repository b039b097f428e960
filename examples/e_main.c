/* The talk's third sample, the main that drives CalculateE (calculate_e.h):
 *
 *     calculate_e = CalculateE()
 *     calculate_e.start()
 *     time.sleep(1)
 *     calculate_e.exit_event.set()
 *     print(calculate_e.get_value())
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime, poll under -std=c17 */
#include <mproc.h>
#include <stdio.h>
#include <time.h>

#include "calculate_e.h"

int main(void)
{
    calculate_e *ce = NULL;
    e_value v;
    int rc = calculate_e_new(&ce);
    if (rc == 0) rc = calculate_e_start(ce);
    if (rc == 0) {
        nanosleep(&(struct timespec){.tv_sec = 1}, NULL); /* the main process does other work */
        mproc_event_set(ce->exit_event);
        rc = calculate_e_get_value(ce, &v, MPROC_FOREVER);
    }
    if (rc < 0) {
        fprintf(stderr, "e_main: %s\n", mproc_strerror(rc));
        calculate_e_free(ce);
        return 1;
    }
    printf("e = %.15f (%llu iterations in %.2f s)\n", v.e, v.iterations, v.seconds);
    calculate_e_free(ce);
    return 0;
}
