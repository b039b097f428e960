/* Ctrl-C at random moments (intr_util.h). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

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

struct intr_shot {
    pthread_t sender, target;
    atomic_int go;
    double delay_us;
};

static void *send_shot(void *arg)
{
    intr_shot *s = arg;
    while (!atomic_load(&s->go))
        ;
    double t0 = harness_now(), d = s->delay_us * 1e-6;
    if (d > 1e-4)
        nanosleep(&(struct timespec){0, (long)(d * 1e9)}, NULL);
    else
        while (harness_now() - t0 < d)
            ;
    pthread_kill(s->target, SIGINT);
    return NULL;
}

intr_shot *intr_arm(unsigned round)
{
    intr_shot *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    unsigned seed = round * 2654435761u + 12345;
    double u = (double)rand_r(&seed) / RAND_MAX;
    s->delay_us = rand_r(&seed) % 10 < 7 ? 5 + 55 * u : 60 + 2940 * u;
    s->target = pthread_self();
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

double intr_end(intr_shot *s)
{
    pthread_join(s->sender, NULL);
    double d = s->delay_us;
    free(s);
    return d;
}
