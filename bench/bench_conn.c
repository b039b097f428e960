/* Pipe round trip: a 64-byte message ping-ponged over an mproc duplex pipe between two processes,
 * against the floor of raw write/read over a socketpair. Per-round-trip times, median in µs. */
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "mproc.h"

#define MSG 64
#define WARMUP 2000
#define SAMPLES 20000

static mproc_conn *g_child_end;

static int echo(void *arg)
{
    (void)arg;
    char buf[MSG];
    size_t len;
    for (int i = 0; i < WARMUP + SAMPLES; i++) {
        if (mproc_conn_recv(g_child_end, buf, sizeof buf, &len, MPROC_FOREVER) < 0) return 1;
        if (mproc_conn_send(g_child_end, buf, len) < 0) return 1;
    }
    return 0;
}

static double bench_mproc(double *t)
{
    mproc_conn *a, *b;
    if (mproc_pipe(&a, &b, true) < 0) abort();
    g_child_end = b;
    mproc_process *p;
    if (mproc_process_new(&p, &(mproc_process_opts){.run = echo}) < 0) abort();
    if (mproc_process_start(p) < 0) abort();
    char msg[MSG] = {0}, buf[MSG];
    size_t len;
    for (int i = 0; i < WARMUP + SAMPLES; i++) {
        double t0 = bench_now();
        if (mproc_conn_send(a, msg, sizeof msg) < 0) abort();
        if (mproc_conn_recv(a, buf, sizeof buf, &len, MPROC_FOREVER) < 0) abort();
        if (i >= WARMUP) t[i - WARMUP] = bench_now() - t0;
    }
    int code = -1;
    if (mproc_process_join(p, MPROC_FOREVER) < 0 || mproc_process_exitcode(p, &code) < 0 || code)
        abort();
    mproc_process_free(p);
    mproc_conn_close(a);
    mproc_conn_close(b);
    return bench_median(t, SAMPLES);
}

static void read_exactly(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) abort();
        p += r;
        n -= (size_t)r;
    }
}

static double bench_floor(double *t)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) abort();
    char msg[MSG] = {0}, buf[MSG];
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        close(sv[0]);
        for (int i = 0; i < WARMUP + SAMPLES; i++) {
            read_exactly(sv[1], buf, MSG);
            if (write(sv[1], buf, MSG) != MSG) _exit(1);
        }
        _exit(0);
    }
    close(sv[1]);
    for (int i = 0; i < WARMUP + SAMPLES; i++) {
        double t0 = bench_now();
        if (write(sv[0], msg, MSG) != MSG) abort();
        read_exactly(sv[0], buf, MSG);
        if (i >= WARMUP) t[i - WARMUP] = bench_now() - t0;
    }
    close(sv[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid) abort();
    return bench_median(t, SAMPLES);
}

int main(void)
{
    double *t = malloc(SAMPLES * sizeof *t);
    bench_row("pipe round trip", "mproc", bench_mproc(t) * 1e6, "us", "lower");
    bench_row("pipe round trip", "floor", bench_floor(t) * 1e6, "us", "lower");
    free(t);
    return 0;
}
