/* The signal state a child of the library starts with: the mask and dispositions the program had,
 * never those of the library's own threads (a pool's supervisor blocks every signal) or what the
 * library set on purpose in a worker (SIGINT ignored, crash handlers). */
#ifndef MPROC_PROCESS_SIGNALS_H
#define MPROC_PROCESS_SIGNALS_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define MPROC__SIG_COUNT 65 /* signals 1..64 */

/* The mask a child started from the calling thread gets: the thread's own, or in a service thread
 * (mproc__service_thread_create) the mask of the program thread that made it. */
void mproc__sig_start_mask(sigset_t *mask);
/* Whether this thread is a library service thread (its own mask is not the program's). */
bool mproc__sig_in_service(void);

/* A library thread that takes no signal (they go to the program's threads), whose children start
 * with the mask of the calling thread. 0 or a negative code. */
int mproc__service_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

/* Set a disposition the library wants in this process only (a worker's SIGINT, its crash
 * handlers): the previous one is remembered and put back in every child this process starts. */
void mproc__sig_override(int sig, const struct sigaction *sa);

/* Every disposition as the program set it (overrides undone), to send to the forkserver helper,
 * whose children are forks of the program as it was earlier. */
typedef struct {
    uint64_t handler; /* SIG_DFL, SIG_IGN or the handler's address (the same binary) */
    uint64_t mask;    /* sa_mask, signal s as bit s - 1 */
    int32_t flags;
    int32_t valid;
} mproc__sig_disp;
void mproc__sig_capture(mproc__sig_disp disp[MPROC__SIG_COUNT]);
/* In a forkserver child: take the dispositions the program had when it asked (want), changing
 * only those that differ from what the helper had (have: its mproc__sig_capture at start). */
void mproc__sig_apply(const mproc__sig_disp want[MPROC__SIG_COUNT],
                      const mproc__sig_disp have[MPROC__SIG_COUNT]);

/* In a new child (or the forkserver helper): undo the overrides it inherited; then, when mask is
 * not NULL, set the thread's mask to it. */
void mproc__sig_child_reset(const sigset_t *mask);

#endif
