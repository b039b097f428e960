/* Ctrl-C at random moments, for the suites that check that blocking calls return -EINTR
 * (test_pool_waits.c, test_process_waits.c, test_sync_intr.c, test_conn_intr.c): a SIGINT handler,
 * and a sender thread that signals the calling thread a random short time after it is about to
 * enter the call.
 *
 * A signal whose handler runs before the call has blocked signals came before the call, as far as
 * the call can know: nothing is owed for it. So the sender looks (in /proc) whether the target is
 * inside the call when it sends (intr_blocked_in). If not, it calls `early` (which ends the call
 * another way: the test releases the task) and the round proves nothing; if so, the call must
 * return -EINTR. A suite checks that enough rounds proved something (none do on a call that never
 * blocks). */
#ifndef MPROC_TESTS_INTR_UTIL_H
#define MPROC_TESTS_INTR_UTIL_H

#include <stdbool.h>
#include <sys/types.h>

/* Install a SIGINT handler (SA_RESTART on purpose: the calls must still return -EINTR). */
void intr_install(void);
/* How many times the handler has run. */
int intr_count(void);
/* Whether thread tid of process pid is inside such a call (/proc): SIGINT blocked, or asleep in
 * ppoll, which swaps the caller's mask in only for the sleep. */
bool intr_blocked_in(pid_t pid, pid_t tid);

typedef struct intr_shot intr_shot;
/* Arm a shot at this thread for round `round`: a thread that, once intr_go is called, waits a
 * random delay (mostly 5-60 µs, when a wait is about to sleep; else up to 3 ms, when it sleeps)
 * and sends SIGINT; early(arg) first if the target has not blocked it yet. Call intr_go right
 * before the call, intr_end after it. */
intr_shot *intr_arm(unsigned round, void (*early)(void *arg), void *arg);
void intr_go(intr_shot *s);
typedef struct {
    double delay_us;
    bool blocked; /* the target had SIGINT blocked when it was sent: -EINTR is owed */
} intr_result;
intr_result intr_end(intr_shot *s);

/* After a round: the handler ran once more than `handled_before` (a signal sent before the call
 * may still be on its way: waited for); a round whose signal found the call's signals blocked
 * (res.blocked) must have returned -EINTR, else the case fails naming the round. Returns
 * res.blocked, for the caller to count the rounds that proved something. */
bool intr_check(int r, unsigned round, intr_result res, int handled_before);

#endif
