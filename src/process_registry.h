/* The processes this process started and has not reaped yet. */
#ifndef MPROC_PROCESS_REGISTRY_H
#define MPROC_PROCESS_REGISTRY_H

/* Register the exit handler that joins non-daemonic children and ends daemonic ones. */
void mproc__registry_init(void);
/* What a child of the library does when its body returns: flush stdio, end its own children as at
 * exit, and _exit with the code. */
_Noreturn void mproc__child_exit(int code);

#endif
