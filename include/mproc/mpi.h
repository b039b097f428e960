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

#include "mproc/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether libmproc_mpi is linked and this process is rank 0 of a job whose pools run on MPI
 * (mproc_init started it): 1, else 0. */
int mproc_mpi_active(void);

#ifdef __cplusplus
}
#endif

#endif
