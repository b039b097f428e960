/* Counting primes on the ranks of an MPI job: the same program runs on one machine or on many.
 *
 *   mpirun -n 3 ./mpi_pool 10000000           (rank 0 runs main, ranks 1-2 run the tasks)
 *   MPROC_POOL_BACKEND=mpi srun --mpi=pmix -n 9 ./mpi_pool 1000000000
 *   ./mpi_pool 1000000                        (no launcher: a local pool, and one warning)
 *
 * Build: cc mpi_pool.c $(pkg-config --cflags --libs mproc-mpi) (CMake: mproc::mpi). The map's
 * items are self-contained bytes (a block number), as every task's argument must be on MPI. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <mproc.h>

#define BLOCK 100000

static bool is_prime(uint64_t n)
{
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

/* One block [b * BLOCK, (b + 1) * BLOCK) below the limit given in arg (copied to the workers). */
static int count_block(const void *in, void *out, void *arg)
{
    uint64_t b = *(const uint64_t *)in, limit = *(const uint64_t *)arg, n = 0;
    for (uint64_t x = b * BLOCK; x < (b + 1) * BLOCK && x < limit; x++)
        n += is_prime(x);
    *(uint64_t *)out = n;
    return 0;
}

int main(int argc, char **argv)
{
    /* First: on the worker ranks it serves rank 0's pools and never returns. */
    int r = mproc_init(NULL);
    if (r < 0) return 1;
    uint64_t limit = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    mproc_pool *p;
    r = mproc_pool_new(&p, &(mproc_pool_opts){.backend = "mpi"});
    if (r < 0) {
        fprintf(stderr, "mproc_pool_new: %s\n", mproc_strerror(r));
        return 1;
    }
    size_t nb = (size_t)((limit + BLOCK - 1) / BLOCK);
    uint64_t *blocks = malloc(nb * sizeof *blocks), *counts = malloc(nb * sizeof *counts);
    for (size_t i = 0; i < nb; i++)
        blocks[i] = i;
    r = mproc_pool_map(p, count_block, blocks, sizeof *blocks, counts, sizeof *counts, nb,
                       &(mproc_map_opts){.arg = &limit, .arg_size = sizeof limit, .chunksize = 1});
    if (r < 0) {
        fprintf(stderr, "mproc_pool_map: %s\n", mproc_strerror(r));
        return 1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < nb; i++)
        total += counts[i];
    printf("%" PRIu64 " primes below %" PRIu64 " (%d workers, backend %s)\n", total, limit,
           mproc_pool_size(p), mproc_pool_backend(p));
    free(blocks);
    free(counts);
    mproc_pool_free(p);
    return 0;
}
