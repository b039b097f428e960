/* libmproc_mpi: the "mpi" pool backend (docs/mpi.md). Link it (pkg-config mproc-mpi, CMake
 * mproc::mpi) and run the program under mpirun/mpiexec/srun with MPROC_POOL_BACKEND=mpi (or
 * mproc_pool_opts.backend = "mpi"): rank 0 runs main; mproc_init(), which must be the first call
 * of main, turns every other rank into a server of rank 0's pools and never returns there. The
 * program needs no other change; tasks' arguments must be self-contained bytes (an arena pointer
 * means nothing on another machine), and every rank must run the same executable.
 *
 * The library registers itself when it is loaded (a constructor), so a program only has to link
 * it: the link flags keep it even with --as-needed. This header declares nothing a program must
 * call. */
#ifndef MPROC_MPI_H
#define MPROC_MPI_H

#include <mpi.h>

#include "mproc/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether libmproc_mpi is linked and this process is rank 0 of a job whose pools run on MPI
 * (mproc_init started it): 1, else 0. */
int mproc_mpi_active(void);

/* For a program that uses MPI itself (as mpi4py's MPICommExecutor): collective over comm, called
 * on every rank of it after MPI_Init. On root it returns 0 with *out a pool (backend "mpi") whose
 * tasks run on the other ranks of comm; freeing that pool ends the service. On every other rank
 * it runs the root's tasks (on workers it forks now: after MPI_Init, unlike mproc_init's ranks)
 * and returns 0 with *out NULL once the root freed its pool. The root needs the thread level
 * MPI_THREAD_MULTIPLE (the pool's thread makes MPI calls beside the program's): -ENOTSUP
 * otherwise. Once per process; -EINVAL for a bad root or comm, or without MPI_Init. The job's
 * own MPI_Init must come before mproc_init, which then leaves the ranks to the program. */
int mproc_mpi_serve(MPI_Comm comm, int root, mproc_pool **out);

/* How mproc_mpi_serve enters libmproc (not for programs): transport is libmproc_mpi's, rank the
 * caller's rank counted from root, size comm's. */
int mproc_mpi_serve_transport(const void *transport, int rank, int size, mproc_pool **out);

#ifdef __cplusplus
}
#endif

#endif
