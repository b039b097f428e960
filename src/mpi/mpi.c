/* libmproc_mpi: the MPI transport of the remote pool backend (src/pool/remote/transport.h),
 * found by libmproc under its symbol name once this library is loaded. Every call is non-blocking:
 * the backend polls and sleeps itself, because a blocking MPI call spins and, with more ranks than
 * cores, starves the ranks it waits for. One thread per process makes every call (the one that
 * called init), so MPI_THREAD_SERIALIZED is enough even though the program has other threads. */
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "mproc/mpi.h"
#include "pool/remote/transport.h"

#define TAG 0x6d70 /* "mp" */

/* mproc_mpi_serve: the program's communicator (a duplicate) and its root, which the backend sees
 * as rank 0 (ranks are renumbered from root). Otherwise MPI_COMM_WORLD from rank 0. */
static MPI_Comm serve_comm = MPI_COMM_NULL;
static int serve_root, serve_size;

static MPI_Comm comm(void)
{
    return serve_comm == MPI_COMM_NULL ? MPI_COMM_WORLD : serve_comm;
}

static int to_mpi(int rank)
{
    return serve_comm == MPI_COMM_NULL ? rank : (rank + serve_root) % serve_size;
}

static int from_mpi(int rank)
{
    return serve_comm == MPI_COMM_NULL ? rank : (rank - serve_root + serve_size) % serve_size;
}

static int t_initialized(void)
{
    int flag = 0;
    MPI_Initialized(&flag);
    return flag;
}

static int err_of(int rc)
{
    return rc == MPI_SUCCESS ? 0 : -EIO;
}

static int t_init(int *rank, int *size, char *err, size_t cap)
{
    if (serve_comm != MPI_COMM_NULL) {
        int r;
        MPI_Comm_rank(serve_comm, &r);
        *rank = from_mpi(r);
        *size = serve_size;
        return 0;
    }
    int flag = 0;
    MPI_Initialized(&flag);
    if (flag) {
        snprintf(err, cap, "MPI is already initialized: call mproc_init() before MPI_Init");
        return -EALREADY;
    }
    /* With more ranks on a node than cores, Open MPI makes every progress call yield the CPU
     * (mpi_yield_when_idle). The backend already yields between its looks (link.h); the second
     * yield inside each probe put a context switch in every look: with 3 ranks on 2 cores the apply
     * round trip was 16-25 µs with it, 6-9 µs without (measured). An explicit setting (mpirun
     * --mca, the environment) stays. mproc_init comes before the program's own threads
     * (docs/mpi.md), and its caller waits for this one meanwhile: nobody reads the environment. */
    setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);
    int provided;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
        snprintf(err, cap, "MPI_Init_thread failed (%d)", rc);
        return -EIO;
    }
    if (provided < MPI_THREAD_SERIALIZED) {
        snprintf(err, cap, "the MPI library gives thread level %d, MPI_THREAD_SERIALIZED needed",
                 provided);
        return -ENOTSUP;
    }
    /* Errors come back as codes: a failed send must not abort the job from inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

static int t_isend(int dest, const void *buf, size_t len, void **req)
{
    if (len > INT_MAX) return -EMSGSIZE;
    MPI_Request *r = malloc(sizeof *r);
    if (!r) return -ENOMEM;
    int rc = MPI_Isend(buf, (int)len, MPI_BYTE, to_mpi(dest), TAG, comm(), r);
    if (rc != MPI_SUCCESS) {
        free(r);
        return -EIO;
    }
    *req = r;
    return 0;
}

static int t_test(void *req)
{
    MPI_Request *r = req;
    int done = 0;
    int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(r);
        return -EIO;
    }
    if (done) free(r);
    return done ? 1 : 0;
}

static int t_probe(int *src, size_t *len)
{
    int flag = 0;
    MPI_Status st;
    /* Open MPI's MPI_Iprobe looks for a match first and only then progresses the transport, so
     * a message that arrived since the last call is seen by the next one, a whole poll later (on
     * a worker rank that shares its CPU with its workers, a yield to them and back: 3 µs of the
     * apply round trip, measured). The second look finds what the first one's progress took in. */
    int rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG, comm(), &flag, &st);
    if (rc == MPI_SUCCESS && !flag) rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG, comm(), &flag, &st);
    if (rc != MPI_SUCCESS) return -EIO;
    if (!flag) return 0;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    *src = from_mpi(st.MPI_SOURCE);
    *len = (size_t)n;
    return 1;
}

static int t_recv(int src, void *buf, size_t len)
{
    return err_of(MPI_Recv(buf, (int)len, MPI_BYTE, to_mpi(src), TAG, comm(), MPI_STATUS_IGNORE));
}

static void t_abort(int code)
{
    MPI_Abort(comm(), code);
}

static void t_finalize(void)
{
    if (serve_comm != MPI_COMM_NULL) {
        MPI_Comm_free(&serve_comm); /* the program's MPI goes on */
        serve_comm = MPI_COMM_NULL;
        return;
    }
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

/* Looked up by name (MPROC__MPI_TRANSPORT_SYMBOL): the only thing libmproc needs from here. */
__attribute__((visibility("default"))) extern const mproc__transport mproc__mpi_transport;
const mproc__transport mproc__mpi_transport = {
    .abi = MPROC__TRANSPORT_ABI,
    .name = "mpi",
    .initialized = t_initialized,
    .init = t_init,
    .isend = t_isend,
    .test = t_test,
    .probe = t_probe,
    .recv = t_recv,
    .abort = t_abort,
    .finalize = t_finalize,
    .mpi_rank = to_mpi,
};

int mproc_mpi_active(void)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int mproc_mpi_serve(MPI_Comm c, int root, mproc_pool **out)
{
    if (!out) return -EINVAL;
    *out = NULL;
    int init = 0, fin = 0, rank, size, level;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin || c == MPI_COMM_NULL || serve_comm != MPI_COMM_NULL) return -EINVAL;
    if (MPI_Comm_rank(c, &rank) != MPI_SUCCESS || MPI_Comm_size(c, &size) != MPI_SUCCESS ||
        root < 0 || root >= size)
        return -EINVAL;
    MPI_Query_thread(&level);
    /* Every rank takes part, so that the root's refusal does not leave the others waiting. */
    int ok = rank != root || level >= MPI_THREAD_MULTIPLE, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, c);
    if (!all) {
        if (rank == root)
            fprintf(stderr, "mproc_mpi_serve: the root needs MPI_THREAD_MULTIPLE "
                            "(MPI_Init_thread)\n");
        return -ENOTSUP;
    }
    if (MPI_Comm_dup(c, &serve_comm) != MPI_SUCCESS) return -EIO;
    MPI_Comm_set_errhandler(serve_comm, MPI_ERRORS_RETURN);
    serve_root = root;
    serve_size = size;
    int r =
        mproc_mpi_serve_transport(&mproc__mpi_transport, (rank - root + size) % size, size, out);
    if (r < 0 && serve_comm != MPI_COMM_NULL) MPI_Comm_free(&serve_comm);
    return r;
}
