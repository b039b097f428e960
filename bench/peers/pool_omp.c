/* OpenMP (gcc's libgomp, one thread per CPU): submit+get as 100k tasks created by one thread
 * (`omp task`) and waited for (`omp taskwait`), results checked after; map as `omp parallel for`
 * over 10 M ints, static schedule. Rows: bench/peers/pool.h. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

static double map_once(const int *in, int *out)
{
    double t0 = peer_now();
#pragma omp parallel for schedule(static)
    for (long i = 0; i < PEER_MAP_N; i++)
        peer_item_fn(&in[i], &out[i], NULL);
    double dt = peer_now() - t0;
    peer_check_map("openmp map", in, out, PEER_MAP_N);
    return PEER_MAP_N / dt;
}

int main(void)
{
    int *res = calloc(PEER_SUBMIT_N, sizeof *res);
#pragma omp parallel
    {
    } /* warm: the team exists */
    double t0 = peer_now();
#pragma omp parallel
#pragma omp single
    {
        for (int i = 0; i < PEER_SUBMIT_N; i++) {
#pragma omp task firstprivate(i) shared(res)
            res[i] = peer_task_fn(i);
        }
#pragma omp taskwait
    }
    double dt = peer_now() - t0;
    for (int i = 0; i < PEER_SUBMIT_N; i++)
        if (res[i] != i + 1) peer_fail("openmp tasks");
    peer_row(PEER_SUBMIT_WORKLOAD, "openmp", PEER_SUBMIT_N / dt, "tasks/s", "higher");
    free(res);

    int *in = malloc(PEER_MAP_N * sizeof *in), *out = calloc(PEER_MAP_N, sizeof *out);
    for (int i = 0; i < PEER_MAP_N; i++)
        in[i] = i;
    map_once(in, out);
    memset(out, 0, PEER_MAP_N * sizeof *out);
    peer_map_rows("openmp", map_once(in, out));
    free(in);
    free(out);
    return 0;
}
