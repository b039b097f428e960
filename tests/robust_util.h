/* The waiter that a robust mutex's dead holder wakes, killed before it takes the mutex: the one
 * death the kernel's robust-futex protocol does not report (platform/robust.h). A decoy process
 * queues on the mutex word first, as glibc's waiters do, and dies as soon as it is woken; the
 * waiters queued behind it must still get the mutex. */
#ifndef MPROC_TESTS_ROBUST_UTIL_H
#define MPROC_TESTS_ROBUST_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "mproc.h"

/* Whether process pid sleeps in futex_wait on m's word (read from /proc/pid/syscall); -1 when
 * that file cannot be read here (the caller skips). */
int robust_sleeps_on(pid_t pid, pthread_mutex_t *m);
/* Wait until pid sleeps on m: true, or false after timeout seconds (the caller fails). Skips the
 * case when /proc/pid/syscall is unreadable. */
bool robust_wait_sleeping(pid_t pid, pthread_mutex_t *m, double timeout);
/* Start the decoy on m, which a live process holds, and return once it sleeps on m's word: first
 * in line, so the holder's death wakes it (and only it). It dies by SIGKILL once woken. */
mproc_process *robust_decoy_start(pthread_mutex_t *m);

#endif
