/* Library-wide state of this process: initialisation, identity, start method. */
#ifndef MPROC_INIT_H
#define MPROC_INIT_H

#include <sys/types.h>

#define MPROC__NAME_MAX 64

/* Initialise with defaults unless already done; 0 or a negative code. Thread-safe. */
int mproc__ensure_init(void);

typedef enum { MPROC__START_FORK, MPROC__START_FORKSERVER, MPROC__START_THREAD } mproc__start_method;
mproc__start_method mproc__start_method_get(void);

/* Called in a new child, before its body, to take on its identity. */
void mproc__set_identity(const char *name, pid_t parent);

#endif
