/* The process handle and what each start method (fork, forkserver, thread) implements for it. */
#ifndef MPROC_PROCESS_INTERNAL_H
#define MPROC_PROCESS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "init.h"
#include "mproc/process.h"

enum { MPROC__ST_NEW, MPROC__ST_STARTED, MPROC__ST_ENDED };

struct mproc_process {
    uint32_t magic;
    int state;
    mproc__start_method method;
    bool daemon;
    bool detached; /* freed by the user while running: reaped and freed by the registry */
    mproc_run_fn run;
    void *arg;
    void *arg_copy;   /* arena copy of arg when opts.arg_size was given; freed once it has ended */
    pid_t pid;        /* the process, or in thread mode the thread's kernel id */
    pid_t owner;      /* the process that started it: only it may wait for it */
    int fd;           /* pidfd (fork, forkserver) or eventfd (thread): readable once it has ended */
    int exitcode;     /* N or -SIGNAL; -ECHILD when the status was lost */
    unsigned n;       /* the N of its identity */
    unsigned kids;    /* thread mode: how many processes this one has made (numbers its children) */
    uint64_t fs_id;   /* forkserver: the helper's id for it (pids can be reused, ids are not) */
    pthread_t thread; /* thread mode */
    _Atomic uint32_t finished; /* thread mode: set when the body has returned */
    mproc_process *prev, *next;
    char name[MPROC__NAME_MAX];
    char identity[MPROC__NAME_MAX]; /* what the child's own children are numbered under */
};

/* In a new child process: forget the parent's children and helpers, take the identity. */
void mproc__child_setup(mproc_process *p, pid_t parent);
/* What a child of the library does when its body returns: flush stdio, end its own children as at
 * exit, and _exit with the code. */
_Noreturn void mproc__child_exit(int code);

/* In a new child (of the caller or of the forkserver helper): guard against orphaning, take the
 * identity, run the body, exit with its code. */
_Noreturn void mproc__run_child(mproc_process *p, pid_t real_parent, pid_t logical_parent);

/* fork: 0 or a negative code; sets p->pid and p->fd. */
int mproc__start_fork(mproc_process *p);

/* forkserver: ask the helper to fork the child (starting or restarting the helper if needed). */
int mproc__forkserver_start_child(mproc_process *p);
/* Exit status of a child of the helper, waiting until the deadline (0: do not wait): 1 known
 * (*code set), 0 not yet, <0 lost (the helper that was its parent is gone). */
int mproc__forkserver_status(uint64_t id, int *code, int64_t deadline);
/* Forget a status once its handle is freed. */
void mproc__forkserver_drop(uint64_t id);
/* Start the helper now (mproc_init does, for the forkserver method, before threads exist). */
int mproc__forkserver_prestart(void);
/* Stop the helper and reap it; the next forkserver start makes a new one. */
void mproc__forkserver_stop(void);
/* The helper's pid, 0 when there is none (for tests). */
pid_t mproc__forkserver_pid(void);
/* In a new child: drop the inherited connection to the parent's helper. */
void mproc__forkserver_forget(void);

/* thread: called first in the new thread, so that the processes it makes are numbered as its own.
 */
void mproc__thread_enter(mproc_process *p);
/* thread: run the body in a new thread of this process. */
int mproc__start_thread(mproc_process *p);
/* Collect a finished thread (pthread_join) once; true when it has ended. */
bool mproc__thread_reap(mproc_process *p);

#endif
