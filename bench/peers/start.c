/* Process start+join: mproc_process (fork start method) against fork, vfork and posix_spawn with
 * waitpid, in the same program and the same parent state, rounds interleaved. A child does
 * nothing and exits 0; posix_spawn has to exec a program for that: /bin/true. */
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc.h"
#include "msg.h"

#define ROUNDS 11
#define PER_ROUND 30
#define WORKLOAD "process start+join (same program)"

extern char **environ;

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static void reap(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) exit(3);
}

static void one_mproc(void)
{
    mproc_process *p;
    int code = -1;
    if (mproc_process_new(&p, &(mproc_process_opts){.run = nothing, .start_method = "fork"}) < 0 ||
        mproc_process_start(p) < 0 || mproc_process_join(p, MPROC_FOREVER) < 0 ||
        mproc_process_exitcode(p, &code) < 0 || code)
        exit(3);
    mproc_process_free(p);
}

static void one_fork(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    reap(pid);
}

static void one_vfork(void)
{
    pid_t pid = vfork();
    if (pid == 0) _exit(0);
    reap(pid);
}

static void one_spawn(void)
{
    pid_t pid;
    char *argv[] = {"true", NULL};
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ)) exit(3);
    reap(pid);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    struct {
        const char *impl;
        void (*one)(void);
        double t[ROUNDS];
    } c[] = {{"mproc", one_mproc, {0}},
             {"fork", one_fork, {0}},
             {"vfork", one_vfork, {0}},
             {"posix_spawn", one_spawn, {0}}};
    enum { N = sizeof c / sizeof c[0] };
    for (int k = 0; k < N; k++)
        c[k].one(); /* warm up */
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < N; k++) {
            double t0 = peer_now();
            for (int i = 0; i < PER_ROUND; i++)
                c[k].one();
            c[k].t[r] = (peer_now() - t0) / PER_ROUND;
        }
    for (int k = 0; k < N; k++) {
        qsort(c[k].t, ROUNDS, sizeof(double), cmp_double);
        peer_row(WORKLOAD, c[k].impl, c[k].t[ROUNDS / 2] * 1e6, "us", "lower");
    }
    return 0;
}
