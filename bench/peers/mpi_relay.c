/* The floor of the "mpi" pool's apply round trip on this machine, for bench_mpi_pool's row: the
 * same structure with nothing else in it. Rank 0 sends an int64 to rank 1; rank 1 hands it to a
 * child it forked before MPI_Init (the crash isolation of mproc's worker ranks), through one
 * shared-memory word each way; the child adds one; rank 1 sends the result back. Every wait
 * polls and yields as mproc's do (two MPI_Iprobe per look: Open MPI matches before it
 * progresses; mpi_yield_when_idle off; a yield that ran nobody else is followed by 5 µs of
 * spinning, platform/spin.h). run.py starts it under mpirun -np 3 like
 * bench_mpi_pool (the third rank idles, as the pool's second worker rank does in that row). */
#include <mpi.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "msg.h"

#define ROUNDS 20000
#define WARMUP 2000

typedef struct {
    _Atomic int64_t req_seq, done_seq; /* rank 1 bumps req_seq, the child done_seq */
    _Atomic int64_t value;
} relay;

/* Between two looks: yield, or spin while the last yield ran nobody else (mproc__yield_look). */
static void pause_look(void)
{
    static _Thread_local double spin_until;
    double now = peer_now();
    if (now < spin_until) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        return;
    }
    sched_yield();
    double after = peer_now();
    spin_until = after - now < 1e-6 ? after + 5e-6 : 0;
}

static void wait_message(MPI_Status *st)
{
    for (;;) {
        int flag = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &flag, st);
        if (!flag) MPI_Iprobe(MPI_ANY_SOURCE, 0, MPI_COMM_WORLD, &flag, st);
        if (flag) return;
        pause_look();
    }
}

static void child(relay *r)
{
    int64_t seen = 0;
    for (;;) {
        int64_t s;
        while ((s = atomic_load(&r->req_seq)) == seen)
            pause_look();
        if (s < 0) _exit(0);
        atomic_store(&r->value, atomic_load(&r->value) + 1);
        atomic_store(&r->done_seq, s);
        seen = s;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    /* The launcher's rank, before MPI_Init: only rank 1 forks. */
    const char *env = getenv("OMPI_COMM_WORLD_RANK");
    if (!env) env = getenv("PMI_RANK");
    int launcher_rank = env ? atoi(env) : -1;
    relay *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return 1;
    pid_t kid = -1;
    if (launcher_rank == 1) {
        kid = fork();
        if (kid == 0) child(r);
        if (kid < 0) return 1;
    }
    setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2 || (rank == 1 && kid < 0)) {
        fprintf(stderr, "bench_peer_mpi_relay: needs mpirun -np 3 (Open MPI)\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int64_t x = 0, stop = -1;
    MPI_Status st;
    if (rank == 0) {
        double *lat = malloc(sizeof *lat * ROUNDS);
        for (int i = 0; i < WARMUP + ROUNDS; i++) {
            int64_t v = i, back;
            double t0 = peer_now();
            MPI_Request q;
            MPI_Isend(&v, 1, MPI_INT64_T, 1, 0, MPI_COMM_WORLD, &q);
            MPI_Wait(&q, MPI_STATUS_IGNORE);
            wait_message(&st);
            MPI_Recv(&back, 1, MPI_INT64_T, st.MPI_SOURCE, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (back != v + 1) MPI_Abort(MPI_COMM_WORLD, 2);
            if (i >= WARMUP) lat[i - WARMUP] = peer_now() - t0;
        }
        qsort(lat, ROUNDS, sizeof *lat, cmp_double);
        peer_row("mpi pool: apply round trip", "MPI + forked child (floor)", lat[ROUNDS / 2] * 1e6,
                 "us", "lower");
        free(lat);
        for (int k = 1; k < size; k++)
            MPI_Send(&stop, 1, MPI_INT64_T, k, 0, MPI_COMM_WORLD);
    } else if (rank == 1) {
        for (int64_t seq = 1;; seq++) {
            wait_message(&st);
            MPI_Recv(&x, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (x < 0) break;
            atomic_store(&r->value, x);
            atomic_store(&r->req_seq, seq);
            while (atomic_load(&r->done_seq) != seq)
                pause_look();
            x = atomic_load(&r->value);
            MPI_Request q;
            MPI_Isend(&x, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD, &q);
            MPI_Wait(&q, MPI_STATUS_IGNORE);
        }
        atomic_store(&r->req_seq, -1);
        waitpid(kid, NULL, 0);
    } else {
        /* idle like the pool's unused worker rank: a look a millisecond */
        for (;;) {
            int flag = 0;
            MPI_Iprobe(0, 0, MPI_COMM_WORLD, &flag, &st);
            if (flag) break;
            usleep(1000);
        }
        MPI_Recv(&x, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    MPI_Finalize();
    return 0;
}
