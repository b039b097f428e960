/* Who this process (or, under the "thread" start method, this thread) is in the family: its name,
 * the identity its children are numbered under, its logical parent. The bottom layer keeps it
 * because every layer above reads it (log records, process names) and none may own it. */
#ifndef MPROC_PLATFORM_IDENTITY_H
#define MPROC_PLATFORM_IDENTITY_H

#include <sys/types.h>

#define MPROC__IDENTITY_NAME_MAX 64

/* Called in a new child process, before its body, to take on its identity: its name, the identity
 * its own children are numbered under ("1:3"), and its logical parent. */
void mproc__set_identity(const char *name, const char *identity, pid_t parent);
/* The same for a process run as a thread (start method "thread"): per thread; the strings must
 * outlive the thread. */
void mproc__set_thread_identity(const char *name, const char *identity, pid_t parent);
/* The identity children of the caller are numbered under ("" in the main process). */
const char *mproc__identity(void);

#endif
