/* The seam between the remote pool backend (remote.c on rank 0, serve.c on the other ranks) and
 * the library that moves bytes between ranks: libmproc_mpi (src/mpi/) exports its MPI transport
 * as the data symbol MPROC__MPI_TRANSPORT_SYMBOL, which libmproc looks up in the process
 * (dlsym) when a pool or mproc_init needs it. So libmproc never links libmpi, and exports
 * nothing for it.
 *
 * The calls of a transport are serialized (one lock on rank 0, one thread on the others; MPI at
 * MPI_THREAD_SERIALIZED), and none of them blocks: the remote backend polls and sleeps itself (an
 * MPI implementation spins inside a blocking call, and 3 ranks on 2 cores then starve each other).
 */
#ifndef MPROC_POOL_REMOTE_TRANSPORT_H
#define MPROC_POOL_REMOTE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#define MPROC__TRANSPORT_ABI 0x6d700002u

typedef struct mproc__transport {
    uint32_t abi; /* MPROC__TRANSPORT_ABI: a libmproc_mpi of another build is refused */
    const char *name;
    /* Whether the program started the runtime itself (MPI_Init before mproc_init): mproc_init
     * then leaves the ranks alone (they may call mproc_mpi_serve). */
    int (*initialized)(void);
    /* Start the runtime (MPI_Init_thread), or attach to it for mproc_mpi_serve: this process's
     * rank (rank 0 being the one that runs the pools) and the number of ranks. 0, or negative
     * with why in err. */
    int (*init)(int *rank, int *size, char *err, size_t cap);
    /* Start sending len bytes to rank dest; the buffer stays untouched until test says done. */
    int (*isend)(int dest, const void *buf, size_t len, void **req);
    /* 1: the send is done (req released); 0: not yet; negative: failed. */
    int (*test)(void *req);
    /* 1 with *src, *len when a message waits; 0 when none does. */
    int (*probe)(int *src, size_t *len);
    /* Receive the message probe announced (src, len) into buf. */
    int (*recv)(int src, void *buf, size_t len);
    /* End every rank of the job now (MPI_Abort). */
    void (*abort)(int code);
    void (*finalize)(void);
    /* The program's number for a backend rank (mproc_mpi_serve renumbers from its root), for
     * error records. No MPI call: any thread may make it. */
    int (*mpi_rank)(int rank);
} mproc__transport;

#define MPROC__MPI_TRANSPORT_SYMBOL "mproc__mpi_transport"

#endif
