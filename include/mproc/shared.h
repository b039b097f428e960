/* mproc: shared memory.
 *
 * mproc_shared_alloc carves zeroed memory out of the family arena: the same address is valid in
 * every process of the family, including those started before the allocation. mproc_value is
 * Python's Value/Array: a block of bytes with an optional recursive lock. mproc_shm is a named
 * POSIX shared memory segment for unrelated processes (Python's SharedMemory).
 */
#ifndef MPROC_SHARED_H
#define MPROC_SHARED_H

#include "common.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL with errno EINVAL when size is 0, ENOMEM when the arena is exhausted (or the size is
 * larger than it). Constructors of shared objects return -ENOMEM in that case. */
void *mproc_shared_alloc(size_t size);
void mproc_shared_free(void *ptr);
/* Usable size of a live block from mproc_shared_alloc (>= the size asked for); 0 with errno
 * EINVAL for NULL, a freed block, or a pointer that is not the start of an arena block. */
size_t mproc_shared_size(const void *ptr);
/* Give the memory of the arena's cache of recently freed blocks back to the kernel now. Freed
 * blocks of up to 2 MiB are kept with their pages, up to 32 MiB in all (1/16 of a smaller arena),
 * so that a size that keeps coming and going is not faulted in again; a program that is done
 * with a burst of messages calls this to shrink to what is live. 0 (also without an arena), or a
 * negative code. The whole family shares the arena: any process may call it. */
int mproc_shared_trim(void);

typedef struct mproc_value mproc_value;
/* A zeroed block of `size` bytes in the arena; with `lock`, guarded by an RLock. */
int mproc_value_new(mproc_value **out, size_t size, bool lock);
/* The bytes (NULL for a handle from a manager outside its family: use load and store). */
void *mproc_value_ptr(mproc_value *v);
/* Copy the first len bytes out of (load) or into (store) the value, holding its lock if it has
 * one, so a reader never sees half of a store. Works for local values and manager proxies alike.
 * -EINVAL (bad handle, buf NULL with len > 0, len larger than the value), -EINTR never; through a
 * manager also its codes (-EPIPE, ...). */
int mproc_value_load(mproc_value *v, void *buf, size_t len);
int mproc_value_store(mproc_value *v, const void *buf, size_t len);
size_t mproc_value_size(mproc_value *v);
/* NULL when made without a lock (and for a proxy). */
mproc_rlock *mproc_value_lock(mproc_value *v);
void mproc_value_free(mproc_value *v);

typedef struct mproc_shm mproc_shm;
/* Names follow shm_open: an optional leading '/', then up to 250 bytes with no '/'.
 * create: -EEXIST when the name exists; open: -ENOENT when it does not. */
int mproc_shm_create(mproc_shm **out, const char *name, size_t size);
int mproc_shm_open(mproc_shm **out, const char *name);
void *mproc_shm_ptr(mproc_shm *s);
size_t mproc_shm_size(mproc_shm *s);
const char *mproc_shm_name(mproc_shm *s);
/* Remove the name; the memory lives on while mapped. -ENOENT when already removed. */
int mproc_shm_unlink(mproc_shm *s);
/* Unmap and free the handle (Python's close()). NULL-safe. */
void mproc_shm_close(mproc_shm *s);

#ifdef __cplusplus
}
#endif
#endif
