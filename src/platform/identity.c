/* Process identity; the public half is mproc_current_name() and mproc_parent_pid(). */
#include "platform/identity.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/prctl.h>

#include "mproc/common.h"

static char current_name[MPROC__IDENTITY_NAME_MAX] = "MainProcess";
/* "" in the main process, "1:3" in a grandchild */
static char current_identity[MPROC__IDENTITY_NAME_MAX];
static pid_t parent_pid;
/* A process run as a thread (start method "thread") has its identity per thread. */
static _Thread_local const char *thread_name, *thread_identity;
static _Thread_local pid_t thread_parent;

void mproc__set_identity(const char *name, const char *identity, pid_t parent)
{
    snprintf(current_name, sizeof current_name, "%s", name);
    snprintf(current_identity, sizeof current_identity, "%s", identity);
    parent_pid = parent;
    thread_name = thread_identity = NULL;
    /* The kernel's comm name (15 bytes) makes the process recognisable in ps and top. */
    prctl(PR_SET_NAME, current_name, 0, 0, 0);
}

void mproc__set_thread_identity(const char *name, const char *identity, pid_t parent)
{
    thread_name = name;
    thread_identity = identity;
    thread_parent = parent;
    /* gdb's "info threads" shows it. */
    char comm[16];
    snprintf(comm, sizeof comm, "%s", name);
    pthread_setname_np(pthread_self(), comm);
}

const char *mproc__identity(void)
{
    return thread_identity ? thread_identity : current_identity;
}

const char *mproc_current_name(void)
{
    return thread_name ? thread_name : current_name;
}

pid_t mproc_parent_pid(void)
{
    return thread_name ? thread_parent : parent_pid;
}
