/* The start-method seam: how a process is started, reaped, signalled and forgotten. fork,
 * forkserver and thread each fill one table (start_fork.c, start_forkserver.c, start_thread.c);
 * the registry in process.c reaches them only through it, so a new start method is one new file
 * and one line in mproc__start_ops_of(). Also where the choice of method is made: the library's
 * configured method, the environment, and a process's or pool's own request. */
#ifndef MPROC_PROCESS_START_METHOD_H
#define MPROC_PROCESS_START_METHOD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mproc_process mproc_process;

typedef enum {
    MPROC__START_FORK,
    MPROC__START_FORKSERVER,
    MPROC__START_THREAD,
    MPROC__START_METHOD_COUNT
} mproc__start_method;

typedef struct mproc__start_ops {
    const char *name; /* as in mproc_config.start_method */
    /* The child is a thread of this process: it cannot be signalled alone and ends with it. */
    bool in_process;
    /* The child starts with the starting thread's signal mask (a fork in that thread). */
    bool inherits_mask;
    /* Start the child (p->pid, p->fd set). 0 or a negative code; nothing left running on error. */
    int (*start)(mproc_process *p);
    /* Collect its exit status if it has ended: 1 (*code = N or -SIGNAL), 0 still running, or a
     * negative code when the status is lost (-ECHILD) or cannot be had yet. */
    int (*reap)(mproc_process *p, int *code);
    /* After its fd turned readable, block until reap can tell (until deadline). May be NULL. */
    void (*await)(mproc_process *p, int64_t deadline);
    /* Send sig: 0 (also when it has ended already) or a negative code. */
    int (*signal)(mproc_process *p, int sig);
    /* The handle is freed: forget what the method keeps for it. May be NULL. */
    void (*release)(mproc_process *p);
    /* In a new child of this process: drop the method's inherited state. May be NULL. */
    void (*forget_in_child)(void);
    /* At exit or mproc_shutdown(), after every child has ended: stop helpers. May be NULL. */
    void (*stop)(void);
} mproc__start_ops;

extern const mproc__start_ops mproc__start_fork_ops;
extern const mproc__start_ops mproc__start_forkserver_ops;
extern const mproc__start_ops mproc__start_thread_ops;
const mproc__start_ops *mproc__start_ops_of(mproc__start_method m);

/* "fork", "forkserver", "thread" (NULL or "" = fork); -EINVAL for anything else. */
int mproc__parse_start_method(const char *s, mproc__start_method *m);
/* The method for `requested` (may be NULL): env MPROC_START wins, then `requested`, then the
 * configured method. No side effect: mproc_init uses it before anything is set up. */
int mproc__start_method_resolve(const char *requested, mproc__start_method *m);
/* The method for a new process or pool, as mproc__start_method_resolve says. Maps the family arena
 * (so that every child inherits it) and sets the process layer up on first use (see
 * mproc__process_layer_setup). */
int mproc__start_method_for(const char *requested, mproc__start_method *m);

/* mproc_init: the method for processes and pools that ask for none (before any has been made). */
void mproc__start_method_configure(mproc__start_method m);
/* Set the process layer up once: the exit handler that joins and ends children, and, when the
 * configured method is forkserver, the helper (forked now, while the program may still be
 * single-threaded). mproc_init calls it; without mproc_init the first process or pool does. */
void mproc__process_layer_setup(void);
/* Whether mproc__process_layer_setup has run in this process or its parent. */
bool mproc__process_layer_started(void);

#endif
