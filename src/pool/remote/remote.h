/* The remote ("mpi") pool backend: rank 0 runs the program and its pools' task records; the other
 * ranks run each pool's tasks on local pools of their own (serve.c) and send the results back.
 * setup.c decides at mproc_init which side this process is (the launcher's environment, the
 * registered transport); remote.c is rank 0's backend and comm thread. */
#ifndef MPROC_POOL_REMOTE_REMOTE_H
#define MPROC_POOL_REMOTE_REMOTE_H

#include <stdbool.h>

#include "pool/backend.h"
#include "pool/remote/link.h"
#include "pool/remote/modules.h"

/* What the launcher says, read from the environment before the transport starts. */
typedef struct {
    bool present;
    int rank, size;
    const char *how; /* the variable that said it */
} mproc__launcher;
bool mproc__launcher_detect(mproc__launcher *out);

/* The registered transport, or NULL. */
const mproc__transport *mproc__transport_get(void);

/* mproc_init's hook (init.c): under a launcher with a registered transport, rank 0 starts its
 * comm thread (and the transport) and returns; other ranks serve and never return. */
void mproc__remote_setup(void);

/* The backend for a pool that asks for "mpi" (pool.c): the remote one when this is rank 0 of a
 * job with several ranks, else the local one with one warning (no launcher, one rank);
 * -ENOTSUP (logged) when no transport is linked or mproc_init did not start it. */
int mproc__remote_select(const mproc__pool_backend **out);

/* Rank 0 (remote.c): start the comm thread, which starts the transport and greets every rank;
 * 0 or negative (logged). */
int mproc__remote_rank0_start(const mproc__transport *t, const mproc__launcher *l);
bool mproc__remote_rank0_active(void);
extern const mproc__pool_backend mproc__pool_remote_backend;

/* mproc_mpi_serve (setup.c): its root's pool ends the service when freed (remote.c). */
void mproc__remote_serve_pool(mproc_pool *p);
void mproc__remote_rank0_stop(void);
bool mproc__remote_forced(void);
/* A worker rank of mproc_mpi_serve (serve.c): serves until the root's pool is freed; 0. */
int mproc__remote_serve_comm(const mproc__transport *t, const mproc__launcher *l);

/* Worker ranks (serve.c): never returns. */
__attribute__((noreturn)) void mproc__remote_serve(const mproc__transport *t,
                                                   const mproc__launcher *l);

/* Wire helpers shared by both sides (remote.c). */
void mproc__wire_put_ref(mproc__modtab *t, const void *addr, wire_ref *out);

#endif
