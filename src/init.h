/* Library-wide state of this process: initialisation, identity, start method. */
#ifndef MPROC_INIT_H
#define MPROC_INIT_H

#include <sys/types.h>

#define MPROC__NAME_MAX 64

/* Initialise with defaults unless already done; 0 or a negative code. Thread-safe. */
int mproc__ensure_init(void);

typedef enum {
    MPROC__START_FORK,
    MPROC__START_FORKSERVER,
    MPROC__START_THREAD
} mproc__start_method;
mproc__start_method mproc__start_method_get(void);

/* "fork", "forkserver", "thread" (NULL or "" = fork); -EINVAL for anything else. */
int mproc__parse_start_method(const char *s, mproc__start_method *m);
/* The method for a new process or pool: env MPROC_START wins, then `requested` (may be NULL),
 * then the library's configured method. */
int mproc__start_method_for(const char *requested, mproc__start_method *m);

/* Called in a new child process, before its body, to take on its identity: its name, the identity
 * its own children are numbered under ("1:3"), and its logical parent. */
void mproc__set_identity(const char *name, const char *identity, pid_t parent);
/* The same for a process run as a thread (start method "thread"): per thread; the strings must
 * outlive the thread. */
void mproc__set_thread_identity(const char *name, const char *identity, pid_t parent);
/* The identity children of the caller are numbered under ("" in the main process). */
const char *mproc__identity(void);

#endif
