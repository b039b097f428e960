/* The top of the library: mproc_init() configures the layers below before their first use.
 * Nothing below calls it; each layer sets itself up on first use with defaults (the arena maps
 * itself, the process layer registers its exit handler), so mproc_init is optional. */
#include <errno.h>
#include <pthread.h>

#include "arena/arena.h"
#include "mproc/common.h"
#include "mproc/log.h"
#include "pool/remote/remote.h"
#include "process/start_method.h"

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;

static int init_locked(const mproc_config *cfg)
{
    /* Already in use (a first call, or an earlier mproc_init, set a layer up): too late to
     * configure. An arena adopted from a manager (a program that connected first) is already
     * what this process uses, so only a size of its own is too late. */
    bool adopted = mproc__arena_adopted() && !(cfg && cfg->arena_size);
    if ((mproc__arena_ready() && !adopted) || mproc__process_layer_started()) return -EALREADY;
    mproc__start_method m;
    int r = mproc__start_method_resolve(cfg ? cfg->start_method : NULL, &m);
    if (r < 0) return r;
    if (!adopted && (r = mproc__arena_create(cfg ? cfg->arena_size : 0)) < 0) return r;
    mproc__start_method_configure(m);
    return 0;
}

int mproc_init(const mproc_config *cfg)
{
    pthread_mutex_lock(&init_mu);
    int r = init_locked(cfg);
    pthread_mutex_unlock(&init_mu);
    /* Outside the lock: the log set-up allocates its family state in the arena. */
    if (r == 0 && cfg && cfg->log) r = mproc_log_init(cfg->log);
    /* The forkserver helper is forked here, while the program is (hopefully) still
     * single-threaded, and outside init_mu so that the helper's children do not inherit it. */
    if (r == 0) mproc__process_layer_setup();
    /* Under mpirun with libmproc_mpi linked: rank 0 starts MPI and returns; the other ranks serve
     * the pools of rank 0 from here on and never return (pool/remote/). After the forkserver
     * helper: the workers of those ranks are forked from it, before MPI exists. */
    if (r == 0 || r == -EALREADY) mproc__remote_setup();
    return r;
}
