/* The e worker: the talk's stand-in for any CPU-bound job that runs until it is told to stop. */
#include "demo.h"

/* Checking the event costs an atomic load; every 1000 terms it is invisible in the profile and the
 * worker still stops within microseconds. */
#define CHECK_EVERY 1000

void e_compute(mproc_event *stop, e_result *out)
{
    double t0 = demo_now();
    double e = 0.0, term = 1.0; /* term = 1/k! */
    uint64_t k = 0;
    MPROC_INFO("computing e until told to stop");
    do {
        for (int i = 0; i < CHECK_EVERY; i++) {
            e += term;
            k++;
            term /= (double)k; /* reaches 0 after ~180 terms: e is exact to a double by then */
        }
    } while (!mproc_event_is_set(stop));
    out->e = e;
    out->iterations = k;
    out->seconds = demo_now() - t0;
    MPROC_INFO("e = %.15f after %llu iterations in %.3f s", e, (unsigned long long)k, out->seconds);
}
