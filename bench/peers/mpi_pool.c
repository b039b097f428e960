/* Open MPI master/worker, the peer of mproc's chunked imap (pool_mproc.c): rank 0 hands out
 * 5 M ints in messages of 1000, two messages in flight per worker, and puts each returned
 * batch in place; ranks 1.. apply the item function to each int and send the batch back. run.py
 * starts it with one worker rank per CPU plus the master, as mproc's pool has a worker per CPU
 * plus the caller. Results checked in order at the end. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "pool.h"

/* the batch index travels as a message's first int: tags are only guaranteed up to 32767 */
#define STOP_TAG 2
#define DATA_TAG 1
#define IN_FLIGHT 2

static void worker(void)
{
    int buf[PEER_IMAP_CHUNK + 1], res[PEER_IMAP_CHUNK + 1];
    for (;;) {
        MPI_Status st;
        int got;
        MPI_Recv(buf, PEER_IMAP_CHUNK + 1, MPI_INT, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        if (st.MPI_TAG == STOP_TAG) return;
        MPI_Get_count(&st, MPI_INT, &got);
        res[0] = buf[0];
        for (int i = 1; i < got; i++)
            peer_item_fn(&buf[i], &res[i], NULL);
        MPI_Send(res, got, MPI_INT, 0, DATA_TAG, MPI_COMM_WORLD);
    }
}

static int send_batch(int dest, int b)
{
    static int buf[PEER_IMAP_CHUNK + 1];
    int first = b * PEER_IMAP_CHUNK, n = PEER_IMAP_N - first;
    if (n <= 0) return 0;
    if (n > PEER_IMAP_CHUNK) n = PEER_IMAP_CHUNK;
    buf[0] = b;
    for (int i = 0; i < n; i++)
        buf[i + 1] = first + i;
    MPI_Send(buf, n + 1, MPI_INT, dest, DATA_TAG, MPI_COMM_WORLD);
    return 1;
}

static double master(int size, int *out)
{
    int batches = (PEER_IMAP_N + PEER_IMAP_CHUNK - 1) / PEER_IMAP_CHUNK, next = 0, pending = 0;
    int res[PEER_IMAP_CHUNK + 1];
    double t0 = peer_now();
    for (int k = 0; k < IN_FLIGHT; k++)
        for (int w = 1; w < size; w++)
            if (next < batches) pending += send_batch(w, next++);
    while (pending) {
        MPI_Status st;
        int got;
        MPI_Recv(res, PEER_IMAP_CHUNK + 1, MPI_INT, MPI_ANY_SOURCE, DATA_TAG, MPI_COMM_WORLD, &st);
        pending--;
        MPI_Get_count(&st, MPI_INT, &got);
        int first = res[0] * PEER_IMAP_CHUNK;
        for (int i = 1; i < got; i++)
            out[first + i - 1] = res[i];
        if (next < batches) pending += send_batch(st.MPI_SOURCE, next++);
    }
    double dt = peer_now() - t0;
    for (int i = 0; i < PEER_IMAP_N; i++)
        if (out[i] != i * 2) peer_fail("mpi master/worker");
    return PEER_IMAP_N / dt;
}

int main(int argc, char **argv)
{
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        fprintf(stderr, "bench_peer_mpi_pool: needs a master and at least one worker rank\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int round = 0; round < 2; round++) { /* the first warms, as mproc's imap row does */
        if (rank == 0) {
            int *out = calloc(PEER_IMAP_N, sizeof *out);
            double rate = master(size, out);
            free(out);
            if (round) peer_row(PEER_IMAP_WORKLOAD, "open mpi", rate, "items/s", "higher");
            for (int w = 1; w < size; w++)
                MPI_Send(NULL, 0, MPI_INT, w, STOP_TAG, MPI_COMM_WORLD);
        } else {
            worker();
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    MPI_Finalize();
    return 0;
}
