/* Ctrl-C at random moments, for the suites that check that blocking calls return -EINTR
 * (test_pool_waits.c, test_process_waits.c): a SIGINT handler, and a sender thread that signals
 * the calling thread a random short time after it is about to enter the call. */
#ifndef MPROC_TESTS_INTR_UTIL_H
#define MPROC_TESTS_INTR_UTIL_H

#include <stdint.h>

/* Install a SIGINT handler (SA_RESTART on purpose: the calls must still return -EINTR). */
void intr_install(void);
/* How many times the handler has run. */
int intr_count(void);

typedef struct intr_shot intr_shot;
/* Arm a shot at this thread for round `round`: a thread that, once intr_go is called, waits a
 * random delay (mostly 5-60 µs, when a wait is about to sleep; else up to 3 ms, when it sleeps)
 * and sends SIGINT. Call intr_go right before the call, intr_end after it. */
intr_shot *intr_arm(unsigned round);
void intr_go(intr_shot *s);
/* Join the sender; the delay it used, in µs (for failure messages). */
double intr_end(intr_shot *s);

#endif
