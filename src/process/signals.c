/* What a child starts with, signal-wise (signals.h). Only the forking thread's mask is inherited
 * by a fork, so a process started from a thread that blocks everything (a pool's supervisor
 * starting a replacement worker) would run with every signal blocked: raise(SIGSEGV) does nothing,
 * SIGTERM is ignored. Each start therefore records the mask to give the child, and the child sets
 * it first thing. */
#include "process/signals.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "platform/platform.h"

/* Signal s as a bit of a 64-bit set (signals 1..64). */
#define SIG_BIT(s) ((uint64_t)1 << ((s)-1))

/* glibc's sigset_t holds signal s as bit s - 1 of its first word: the word is copied as is. */
_Static_assert(sizeof(sigset_t) >= sizeof(uint64_t), "sigset_t holds signals 1..64");

static MPROC_TLS bool in_service;
static MPROC_TLS sigset_t service_mask; /* the mask of the thread that made this service thread */

/* Overridden dispositions and what they replaced (set at a worker's start, before any thread). */
static uint64_t overridden;
static struct sigaction saved[MPROC__SIG_COUNT];

void mproc__sig_start_mask(sigset_t *mask)
{
    if (in_service)
        *mask = service_mask;
    else
        pthread_sigmask(SIG_BLOCK, NULL, mask);
}

bool mproc__sig_in_service(void)
{
    return in_service;
}

typedef struct {
    void *(*fn)(void *);
    void *arg;
    sigset_t mask;
} service_boot;

static void *service_main(void *arg)
{
    service_boot b = *(service_boot *)arg;
    free(arg);
    in_service = true;
    service_mask = b.mask;
    return b.fn(b.arg);
}

int mproc__service_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    service_boot *b = malloc(sizeof *b);
    if (!b) return -ENOMEM;
    b->fn = fn;
    b->arg = arg;
    mproc__sig_start_mask(&b->mask);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(t, NULL, service_main, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) free(b);
    return -r;
}

void mproc__sig_override(int sig, const struct sigaction *sa)
{
    if (sig <= 0 || sig >= MPROC__SIG_COUNT) return;
    struct sigaction old;
    if (sigaction(sig, sa, &old) < 0) return;
    if (!(overridden & SIG_BIT(sig))) saved[sig] = old;
    overridden |= SIG_BIT(sig);
}

void mproc__sig_capture(mproc__sig_disp disp[MPROC__SIG_COUNT])
{
    memset(disp, 0, sizeof(mproc__sig_disp) * MPROC__SIG_COUNT);
    for (int sig = 1; sig < MPROC__SIG_COUNT; sig++) {
        struct sigaction sa;
        if (overridden & SIG_BIT(sig))
            sa = saved[sig];
        else if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0)
            continue; /* also the C library's own signals, which it refuses */
        disp[sig].valid = 1;
        disp[sig].handler = (uint64_t)(uintptr_t)sa.sa_handler;
        disp[sig].flags = sa.sa_flags;
        memcpy(&disp[sig].mask, &sa.sa_mask, sizeof disp[sig].mask);
    }
}

void mproc__sig_apply(const mproc__sig_disp want[MPROC__SIG_COUNT],
                      const mproc__sig_disp have[MPROC__SIG_COUNT])
{
    for (int sig = 1; sig < MPROC__SIG_COUNT; sig++) {
        if (!want[sig].valid || memcmp(&want[sig], &have[sig], sizeof want[sig]) == 0) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = (void (*)(int))(uintptr_t)want[sig].handler;
        sa.sa_flags = want[sig].flags;
        memcpy(&sa.sa_mask, &want[sig].mask, sizeof want[sig].mask);
        sigaction(sig, &sa, NULL);
    }
    overridden = 0;
}

void mproc__sig_child_reset(const sigset_t *mask)
{
    for (int sig = 1; overridden && sig < MPROC__SIG_COUNT; sig++)
        if (overridden & SIG_BIT(sig)) sigaction(sig, &saved[sig], NULL);
    overridden = 0;
    in_service = false;
    if (mask) pthread_sigmask(SIG_SETMASK, mask, NULL);
}
