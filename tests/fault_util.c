#include "fault_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t fault_seed(const char *what)
{
    const char *e = getenv("MPROC_FAULT_SEED");
    uint64_t s = e && *e ? strtoull(e, NULL, 0) : 0;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        s %= 1000000000000ull; /* short enough to copy */
        if (!s) s = 1;
    }
    printf("fault seed %llu for %s (replay: MPROC_FAULT_SEED=%llu)\n", (unsigned long long)s, what,
           (unsigned long long)s);
    fflush(stdout);
    return s;
}

uint64_t fault_rand(uint64_t *state, uint64_t n)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (x * 0x2545F4914F6CDD1Dull) % n;
}

unsigned fault_rounds(unsigned base)
{
    const char *e = getenv("MPROC_FAULT_SCALE");
    double k = e && *e ? strtod(e, NULL) : 1.0;
    if (!(k > 0)) k = 1.0;
    double r = base * k;
    return r < 1 ? 1 : (unsigned)r;
}
