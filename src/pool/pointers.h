/* The MPROC_CHECK_POINTERS debug check (pointers.c): does a pointer handed to the workers point
 * at memory they have? */
#ifndef MPROC_POOL_POINTERS_H
#define MPROC_POOL_POINTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mproc__ptr_snapshot mproc__ptr_snapshot;

/* Whether MPROC_CHECK_POINTERS asks for the check (any value but empty and "0"). */
bool mproc__ptr_check_enabled(void);
/* The address ranges worker `worker` has, narrowed to what existed in this process now: the main
 * heap below malloc's top chunk, and in the stack that holds stack_floor (mproc_pool_new's frame)
 * the part above it. 0 or -errno/-ENOMEM. */
int mproc__ptr_snapshot_take(pid_t worker, const void *stack_floor, mproc__ptr_snapshot **out);
void mproc__ptr_snapshot_free(mproc__ptr_snapshot *s);
/* 0 if ptr is NULL, in the arena, or in the snapshot (s NULL: no check) with the same first
 * bytes in worker `worker` (0: not compared); else -EFAULT, with a message naming `what` in msg
 * (and logged). */
int mproc__ptr_check(const mproc__ptr_snapshot *s, pid_t worker, const void *ptr, const char *what,
                     char *msg, size_t cap);

#endif
