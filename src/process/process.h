/* The process handle, shared by the registry (process.c), the child side (child.c) and the start
 * methods behind the seam of start_method.h. */
#ifndef MPROC_PROCESS_PROCESS_H
#define MPROC_PROCESS_PROCESS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mproc/process.h"
#include "platform/identity.h"
#include "process/start_method.h"

enum { MPROC__PROCESS_NEW, MPROC__PROCESS_STARTED, MPROC__PROCESS_ENDED };

struct mproc_process {
    uint32_t magic;
    int state;
    mproc__start_method method;
    const mproc__start_ops *ops; /* the method's table */
    bool daemon;
    bool detached; /* freed by the user while running: reaped and freed by the registry */
    bool ending;   /* mproc__registry_end_children is waiting for it: a free only detaches it */
    mproc_run_fn run;
    void *arg;
    void *arg_copy;  /* arena copy of arg when opts.arg_size was given; freed once it has ended */
    void *pin;       /* opts.cpus: arena block the child pins itself with (run and arg are its) */
    pid_t pid;       /* the process, or in thread mode the thread's kernel id */
    pid_t owner;     /* the process that started it: only it may wait for it */
    int fd;          /* pidfd (fork, forkserver) or eventfd (thread): readable once it has ended */
    int exitcode;    /* N or -SIGNAL; -ECHILD when the status was lost */
    unsigned number; /* the N of its identity */
    /* thread mode: how many processes this one has made (numbers its children) */
    unsigned children_made;
    /* forkserver: the helper's id for it (pids can be reused, ids are not) */
    uint64_t forkserver_id;
    /* The mask the child starts with: the starting thread's, or the program's for a start from a
     * library thread (signals.h). */
    sigset_t start_mask;
    bool start_mask_set;       /* false: the child has it already (inherited), nothing to set */
    pthread_t thread;          /* thread mode */
    _Atomic uint32_t finished; /* thread mode: set when the body has returned */
    mproc_process *prev, *next;
    char name[MPROC__IDENTITY_NAME_MAX];
    char identity[MPROC__IDENTITY_NAME_MAX]; /* what the child's own children are numbered under */
};

/* ---- registry (process.c) ---- */
/* In a new child process: forget the parent's children and helpers, take the identity. */
void mproc__child_setup(mproc_process *p, pid_t parent);
/* The exit handler, mproc_shutdown() and a child's own end, in this order: run the hooks of
 * mproc__registry_on_end (the pools stop: no worker is replaced from then on), SIGTERM the daemonic
 * children, join the non-daemonic ones, SIGKILL the daemonic ones still alive after 0.5 s, then
 * stop the start methods' helpers. Only the process that started a child acts on it. */
void mproc__registry_end_children(void);
/* Register fn to run first in mproc__registry_end_children, before any child is ended: a layer
 * above that supervises children of its own (the pool, whose supervisor would otherwise replace
 * the workers being ended, and free handles the registry is waiting on) stops them there. Hooks
 * run in the order registered; fn is registered once however often this is called. 0, or -ENOMEM
 * when the table is full. */
int mproc__registry_on_end(void (*fn)(void));

/* ---- child side (child.c) ---- */
/* What a child of the library does when its body returns: flush stdio, end its own children as at
 * exit, and _exit with the code. */
_Noreturn void mproc__child_exit(int code);
/* In a new child (of the caller or of the forkserver helper): guard against orphaning, take the
 * identity, run the body, exit with its code. */
_Noreturn void mproc__run_child(mproc_process *p, pid_t real_parent, pid_t logical_parent);

/* ---- fork (start_fork.c), beyond its table ---- */
/* Signal a child watched through its pidfd or sentinel (fork and forkserver children alike). */
int mproc__signal_watched(mproc_process *p, int sig);

/* ---- forkserver (start_forkserver.c), beyond its table ---- */
/* Start the helper now (mproc__process_layer_setup does, for the forkserver method). */
int mproc__forkserver_prestart(void);
/* The helper's pid, 0 when there is none (for tests). */
pid_t mproc__forkserver_pid(void);
/* Stop the helper and reap it; the next forkserver start makes a new one. */
void mproc__forkserver_stop(void);

/* ---- thread (start_thread.c), beyond its table ---- */
/* Called first in the new thread, so that the processes it makes are numbered as its own. */
void mproc__thread_enter(mproc_process *p);

#endif
