/* Ctrl-C at random moments (intr_util.h). */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "intr_util.h"

static atomic_int handled;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

void intr_install(void)
{
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    CHECK_OK(sigaction(SIGINT, &sa, NULL));
}

int intr_count(void)
{
    return atomic_load(&handled);
}

/* SIGINT in the SigBlk mask of the thread's /proc status. */
static bool sigint_blocked(pid_t pid, pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)pid, (int)tid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    unsigned long long mask = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "SigBlk: %llx", &mask) == 1;
    fclose(f);
    return found && (mask >> (SIGINT - 1)) & 1;
}

/* Asleep in ppoll: the call's own mask is swapped in for the sleep (interrupt.h). */
static bool in_ppoll(pid_t pid, pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    long nr = -1;
    bool ok = fscanf(f, "%ld", &nr) == 1;
    fclose(f);
    return ok && nr == SYS_ppoll;
}

bool intr_blocked_in(pid_t pid, pid_t tid)
{
    /* ppoll first: a thread that leaves it has SIGINT blocked again until the call returns. */
    return in_ppoll(pid, tid) || sigint_blocked(pid, tid);
}

struct intr_shot {
    pthread_t sender, target;
    pid_t target_tid;
    atomic_int go;
    void (*early)(void *arg);
    void *arg;
    intr_result res;
};

static void *send_shot(void *arg)
{
    intr_shot *s = arg;
    while (!atomic_load(&s->go))
        ;
    double t0 = harness_now(), d = s->res.delay_us * 1e-6;
    if (d > 1e-4)
        nanosleep(&(struct timespec){0, (long)(d * 1e9)}, NULL);
    else
        while (harness_now() - t0 < d)
            ;
    /* Once blocked, the call keeps it blocked until it returns: a yes is reliable. */
    s->res.blocked = intr_blocked_in(getpid(), s->target_tid);
    if (!s->res.blocked) s->early(s->arg);
    pthread_kill(s->target, SIGINT);
    return NULL;
}

/* The delays' base seed: fixed (12345), so a suite replays the same instants; MPROC_FAULT_SEED
 * (fault_util.h) picks another sequence, to explore more of them (docs/testing.md). */
static unsigned base_seed(void)
{
    static unsigned base;
    if (!base) {
        const char *e = getenv("MPROC_FAULT_SEED");
        base = e && *e ? (unsigned)strtoull(e, NULL, 0) : 12345;
        if (!base) base = 12345;
        if (e && *e) printf("Ctrl-C delays from MPROC_FAULT_SEED=%u\n", base);
    }
    return base;
}

intr_shot *intr_arm(unsigned round, void (*early)(void *arg), void *arg)
{
    intr_shot *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    unsigned seed = round * 2654435761u + base_seed();
    double u = (double)rand_r(&seed) / RAND_MAX;
    s->res.delay_us = rand_r(&seed) % 10 < 7 ? 5 + 55 * u : 60 + 2940 * u;
    s->target = pthread_self();
    s->target_tid = gettid();
    s->early = early;
    s->arg = arg;
    /* The sender never takes the signal itself. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    CHECK_OK(pthread_create(&s->sender, NULL, send_shot, s));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return s;
}

void intr_go(intr_shot *s)
{
    atomic_store(&s->go, 1);
}

intr_result intr_end(intr_shot *s)
{
    pthread_join(s->sender, NULL);
    intr_result r = s->res;
    free(s);
    return r;
}

bool intr_check(int r, unsigned round, intr_result res, int handled_before)
{
    for (int i = 0; i < 1000 && intr_count() == handled_before; i++)
        sched_yield();
    CHECK_EQ(intr_count(), handled_before + 1);
    if (res.blocked && r != -EINTR)
        harness_fail(__FILE__, __LINE__, "round %u (SIGINT after %.0f us): %d (%s), not -EINTR",
                     round, res.delay_us, r, mproc_strerror(r));
    return res.blocked;
}
