/* The processes this process started and has not reaped yet. */
#ifndef MPROC_PROCESS_REGISTRY_H
#define MPROC_PROCESS_REGISTRY_H

/* Register the exit handler that joins non-daemonic children and ends daemonic ones. */
void mproc__registry_init(void);

#endif
