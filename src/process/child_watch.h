/* Watching one child process: a pollable fd that becomes readable when it ends, a way to signal it
 * that cannot hit a recycled pid, and reaping it by its own identity. A pidfd does all three; where
 * pidfds are missing (see mproc__pidfd_supported) a sentinel pipe stands in for the fd, and
 * waitpid(pid)/kill(pid) are safe because the child is not reaped before we are done with it. */
#ifndef MPROC_PROCESS_CHILD_WATCH_H
#define MPROC_PROCESS_CHILD_WATCH_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    int parent_end; /* the fallback pipe's read end, or -1 */
    int child_end;  /* its write end, held by the child for its whole life, or -1 */
} mproc__watch_prep;

/* Before fork. 0 or a negative code. */
int mproc__watch_prepare(mproc__watch_prep *w);
/* In the child after fork: keep the write end (also across exec), drop the read end and the
 * sentinel inherited from the parent's own watch. */
void mproc__watch_in_child(mproc__watch_prep *w);
/* In the parent after fork: the watch fd for pid (or a negative code, the child then killed and
 * reaped). Undoes the preparation on fork failure when pid < 0. */
int mproc__watch_in_parent(mproc__watch_prep *w, pid_t pid);
/* Close the sentinel this process holds for its parent (so that a helper or grandchild does not
 * keep it looking alive). */
void mproc__watch_forget_own(void);

/* Reap it if it has ended: 1 and *code = N or -SIGNAL, 0 still running, -ECHILD someone else
 * reaped it, other negative codes for errors. */
int mproc__watch_reap(pid_t pid, int fd, int *code);
/* Send a signal; 0 also when it has already ended. */
int mproc__watch_signal(pid_t pid, int fd, int sig);

#endif
