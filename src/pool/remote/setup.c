/* Which side of a remote pool this process is (remote.h): the registered transport, the
 * launcher's environment, and mproc_init's hook. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/log.h"
#include "pool/remote/remote.h"

static _Atomic bool setup_done;
static bool warned_local;

const mproc__transport *mproc__transport_get(void)
{
    const mproc__transport *t = dlsym(RTLD_DEFAULT, MPROC__MPI_TRANSPORT_SYMBOL);
    if (t && t->abi != MPROC__TRANSPORT_ABI) {
        static _Atomic bool said;
        if (!atomic_exchange(&said, true))
            MPROC_ERROR("libmproc_mpi is of another build than libmproc: the \"mpi\" backend is "
                        "off (install the two from the same release)");
        return NULL;
    }
    return t;
}

static bool env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (!v || !*v) return false;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 24) return false;
    *out = (int)x;
    return true;
}

bool mproc__launcher_detect(mproc__launcher *out)
{
    /* Open MPI's mpirun, then PMI-1/2 (MPICH's hydra, Slurm --mpi=pmi2), then PMIx (Slurm
     * --mpi=pmix, prterun). */
    static const struct {
        const char *rank, *size;
    } vars[] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                {"PMI_RANK", "PMI_SIZE"},
                {"PMIX_RANK", "PMIX_SIZE"},
                {"PMIX_RANK", "SLURM_NTASKS"}};
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int r, n;
        if (env_int(vars[i].rank, &r) && env_int(vars[i].size, &n) && r < n) {
            *out = (mproc__launcher){true, r, n, vars[i].rank};
            return true;
        }
    }
    return false;
}

/* MPROC_POOL_BACKEND names another backend: the ranks stay plain copies of the program. */
static bool wanted(void)
{
    const char *b = getenv("MPROC_POOL_BACKEND");
    return !b || !*b || strcmp(b, "mpi") == 0;
}

void mproc__remote_setup(void)
{
    if (atomic_exchange(&setup_done, true)) return;
    const mproc__transport *t = mproc__transport_get();
    mproc__launcher l;
    if (!t || !mproc__launcher_detect(&l) || l.size < 2 || !wanted()) return;
    if (t->initialized && t->initialized()) return; /* the program runs MPI: mproc_mpi_serve */
    if (l.rank != 0) mproc__remote_serve(t, &l);
    mproc__remote_rank0_start(t, &l);
}

/* mproc_mpi_serve's pool on its root is "mpi" whatever MPROC_POOL_BACKEND says. */
static _Thread_local bool forced;

bool mproc__remote_forced(void)
{
    return forced;
}

int mproc_mpi_serve_transport(const void *transport, int rank, int size, mproc_pool **out)
{
    const mproc__transport *t = transport;
    if (!out || !t || t->abi != MPROC__TRANSPORT_ABI || rank < 0 || rank >= size) return -EINVAL;
    *out = NULL;
    mproc__launcher l = {true, rank, size, "mproc_mpi_serve"};
    if (rank != 0) return mproc__remote_serve_comm(t, &l);
    if (size < 2) return mproc_pool_new(out, &(mproc_pool_opts){.backend = "local"});
    if (mproc__remote_rank0_active()) return -EALREADY;
    int r = mproc__remote_rank0_start(t, &l);
    if (r < 0) return r;
    forced = true;
    r = mproc_pool_new(out, &(mproc_pool_opts){.backend = "mpi"});
    forced = false;
    if (r == 0)
        mproc__remote_serve_pool(*out);
    else
        mproc__remote_rank0_stop();
    return r;
}

int mproc__remote_select(const mproc__pool_backend **out)
{
    const mproc__transport *t = mproc__transport_get();
    if (!t) {
        MPROC_ERROR("pool backend \"mpi\" needs libmproc_mpi: link the program with "
                    "`pkg-config --libs mproc-mpi` (CMake: mproc::mpi) and run it under mpirun");
        return -ENOTSUP;
    }
    if (mproc__remote_rank0_active()) {
        *out = &mproc__pool_remote_backend;
        return 0;
    }
    mproc__launcher l;
    if (mproc__launcher_detect(&l) && l.size > 1) {
        MPROC_ERROR("pool backend \"mpi\" under a launcher (%s) needs mproc_init() as the first "
                    "call of main, on every rank",
                    l.how);
        return -ENOTSUP;
    }
    if (!warned_local) {
        warned_local = true;
        MPROC_WARNING("pool backend \"mpi\": %s; running the pool on this machine (backend "
                      "\"local\")",
                      mproc__launcher_detect(&l) ? "the job has one rank"
                                                 : "not started by mpirun/mpiexec/srun");
    }
    *out = &mproc__pool_local_backend;
    return 0;
}
