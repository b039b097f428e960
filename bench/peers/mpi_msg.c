/* Open MPI, 2 ranks on one node (run.py starts it under mpirun with the shared-memory transport,
 * btl vader): rank 1 produces, rank 0 consumes, MPI_Send/MPI_Recv of each message into the
 * receiver's buffer (MPI has no queue depth: small messages go eagerly, large ones by
 * rendezvous); then the 64 B ping-pong. The same stamps and checks as bench/peers/msg.c. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "msg.h"

#define PROBE 1000
#define RUN_SECONDS 0.25

static int rank;

/* Messages per second from rank 1 to rank 0 over n messages (on rank 0; 0 on rank 1). */
static double stream(size_t len, long n, char *buf)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t_first = 0;
    for (long i = 0; i < n; i++) {
        if (rank == 1) {
            peer_msg_stamp(buf, len, (uint64_t)i);
            MPI_Send(buf, (int)len, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        } else {
            MPI_Status st;
            int got;
            MPI_Recv(buf, (int)len, MPI_BYTE, 1, 0, MPI_COMM_WORLD, &st);
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (i == 0) t_first = peer_now();
            peer_msg_check(buf, (size_t)got, len, (uint64_t)i);
        }
    }
    double rate = rank == 0 ? (double)(n - 1) / (peer_now() - t_first) : 0;
    MPI_Bcast(&rate, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median round trip in seconds (on rank 1, broadcast). */
static double pingpong(long n, char *buf, char *back)
{
    double *t = malloc(sizeof *t * (size_t)n);
    MPI_Barrier(MPI_COMM_WORLD);
    for (long i = 0; i < PEER_PING_WARMUP + n; i++) {
        MPI_Status st;
        int got;
        if (rank == 1) {
            peer_msg_stamp(buf, PEER_PING_SIZE, (uint64_t)i);
            double t0 = peer_now();
            MPI_Send(buf, PEER_PING_SIZE, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            MPI_Recv(back, PEER_PING_SIZE, MPI_BYTE, 0, 0, MPI_COMM_WORLD, &st);
            double dt = peer_now() - t0;
            MPI_Get_count(&st, MPI_BYTE, &got);
            peer_msg_check(back, (size_t)got, PEER_PING_SIZE, (uint64_t)i);
            if (i >= PEER_PING_WARMUP) t[i - PEER_PING_WARMUP] = dt;
        } else {
            MPI_Recv(back, PEER_PING_SIZE, MPI_BYTE, 1, 0, MPI_COMM_WORLD, &st);
            MPI_Get_count(&st, MPI_BYTE, &got);
            peer_msg_check(back, (size_t)got, PEER_PING_SIZE, (uint64_t)i);
            MPI_Send(back, got, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
        }
    }
    double m = 0;
    if (rank == 1) {
        qsort(t, (size_t)n, sizeof *t, cmp_double);
        m = t[n / 2];
    }
    free(t);
    MPI_Bcast(&m, 1, MPI_DOUBLE, 1, MPI_COMM_WORLD);
    return m;
}

int main(int argc, char **argv)
{
    int size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "bench_peer_mpi_msg: needs 2 ranks (mpirun -np 2)\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    size_t maxlen = peer_msg_sizes[PEER_MSG_NSIZES - 1];
    char *buf = malloc(maxlen), *back = malloc(maxlen);
    for (int s = 0; s < PEER_MSG_NSIZES; s++) {
        size_t len = peer_msg_sizes[s];
        peer_msg_init(buf, len);
        double rate = stream(len, PROBE, buf);
        long n = (long)(rate * RUN_SECONDS);
        n = n > peer_msg_count(len) ? peer_msg_count(len) : n < PROBE ? PROBE : n;
        rate = stream(len, n, buf);
        if (rank == 0) {
            char name[96];
            peer_msg_workload(name, sizeof name, len);
            peer_row(name, "open mpi", rate * (double)len / 1e6, "MB/s", "higher");
        }
    }
    peer_msg_init(buf, PEER_PING_SIZE);
    double rtt = pingpong(PROBE, buf, back);
    long pings = (long)(RUN_SECONDS / rtt);
    pings = pings > PEER_PINGS ? PEER_PINGS : pings < PROBE ? PROBE : pings;
    rtt = pingpong(pings, buf, back);
    if (rank == 0) peer_row(PEER_PING_WORKLOAD, "open mpi", rtt * 1e6, "us", "lower");
    free(buf);
    free(back);
    MPI_Finalize();
    return 0;
}
