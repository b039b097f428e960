/* Process lifecycle: fork, identity, supervision through pidfds, exit codes, exit-time joins. */
#include "mproc/process.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"
#include "platform.h"
#include "process_registry.h"

#define PROCESS_MAGIC 0x70726f63U
#define DAEMON_GRACE_S 0.5

enum { ST_NEW, ST_STARTED, ST_ENDED };

struct mproc_process {
    uint32_t magic;
    int state;
    bool daemon;
    bool detached; /* freed by the user while running: reaped and freed by the registry */
    mproc_run_fn run;
    void *arg;
    pid_t pid;
    pid_t owner; /* the process that started it: only it may wait for it */
    int pidfd;
    int exitcode; /* N or -SIGNAL; -ECHILD when someone else reaped it */
    unsigned n;   /* the N of its identity */
    mproc_process *prev, *next;
    char name[MPROC__NAME_MAX];
};

/* Started and not yet reaped; guarded by reg_mu (also guards reaping). */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_process *reg_head;
static unsigned child_counter;
static char identity[MPROC__NAME_MAX]; /* "" in the main process, "1:3" in a grandchild */

static void reg_add(mproc_process *p)
{
    p->prev = NULL;
    p->next = reg_head;
    if (reg_head) reg_head->prev = p;
    reg_head = p;
}

static void reg_remove(mproc_process *p)
{
    if (p->prev) p->prev->next = p->next;
    else if (reg_head == p) reg_head = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void release(mproc_process *p)
{
    if (p->pidfd >= 0) close(p->pidfd);
    p->magic = 0;
    free(p);
}

/* Collect the exit status if the process has ended. Called with reg_mu held. */
static bool try_reap_locked(mproc_process *p)
{
    if (p->state != ST_STARTED) return p->state == ST_ENDED;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0) {
        if (errno != ECHILD) return false;
        /* The host program reaped it behind our back (waitpid(-1)): the status is gone. */
        p->exitcode = -ECHILD;
    } else if (si.si_pid == 0) {
        return false;
    } else if (si.si_code == CLD_EXITED) {
        p->exitcode = si.si_status;
    } else {
        p->exitcode = -si.si_status;
    }
    p->state = ST_ENDED;
    reg_remove(p);
    return true;
}

/* Free detached processes that have ended. Called with reg_mu held. */
static void sweep_detached_locked(void)
{
    for (mproc_process *p = reg_head, *n; p; p = n) {
        n = p->next;
        if (p->detached && try_reap_locked(p)) release(p);
    }
}

static void end_children(void)
{
    pid_t self = getpid();
    pthread_mutex_lock(&reg_mu);
    for (mproc_process *p = reg_head; p; p = p->next)
        if (p->owner == self && p->daemon) mproc__pidfd_send_signal(p->pidfd, SIGTERM);
    int64_t grace = mproc__deadline(DAEMON_GRACE_S);
    while (reg_head) {
        mproc_process *p = reg_head;
        if (p->owner != self) { /* inherited through a plain fork(): not ours to wait for */
            reg_remove(p);
            continue;
        }
        pthread_mutex_unlock(&reg_mu);
        if (mproc__pidfd_wait(p->pidfd, p->daemon ? grace : INT64_MAX) == 0)
            mproc__pidfd_send_signal(p->pidfd, SIGKILL);
        mproc__pidfd_wait(p->pidfd, INT64_MAX);
        pthread_mutex_lock(&reg_mu);
        if (!try_reap_locked(p)) reg_remove(p);
        if (p->detached) release(p);
    }
    pthread_mutex_unlock(&reg_mu);
}

void mproc__registry_init(void)
{
    atexit(end_children);
}

_Noreturn void mproc__child_exit(int code)
{
    fflush(stdout);
    fflush(stderr);
    end_children();
    _exit(code & 0xff);
}

int mproc_process_new(mproc_process **out, const mproc_process_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!opts || !opts->run) return -EINVAL;
    if (opts->name && strlen(opts->name) >= MPROC__NAME_MAX) return -EINVAL;
    int r = mproc__ensure_init();
    if (r < 0) return r;
    mproc_process *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->magic = PROCESS_MAGIC;
    p->run = opts->run;
    p->arg = opts->arg;
    p->daemon = opts->daemon;
    p->pidfd = -1;
    p->n = __atomic_add_fetch(&child_counter, 1, __ATOMIC_RELAXED);
    if (opts->name) snprintf(p->name, sizeof p->name, "%s", opts->name);
    else if (identity[0]) snprintf(p->name, sizeof p->name, "Process-%s:%u", identity, p->n);
    else snprintf(p->name, sizeof p->name, "Process-%u", p->n);
    *out = p;
    return 0;
}

static bool valid(const mproc_process *p)
{
    return p && p->magic == PROCESS_MAGIC;
}

/* In the new child: forget the parent's children, take an identity, guard against orphaning. */
static void child_setup(mproc_process *p, pid_t parent)
{
    for (mproc_process *q = reg_head, *n; q; q = n) {
        n = q->next;
        close(q->pidfd);
        q->pidfd = -1;
        q->prev = q->next = NULL;
    }
    reg_head = NULL;
    pthread_mutex_init(&reg_mu, NULL);
    prctl(PR_SET_PDEATHSIG, p->daemon ? SIGKILL : SIGTERM);
    if (getppid() != parent) _exit(p->daemon ? 128 + SIGKILL : 128 + SIGTERM);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        if (null != STDIN_FILENO) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
    }
    char id[MPROC__NAME_MAX + 16];
    if (identity[0]) snprintf(id, sizeof id, "%s:%u", identity, p->n);
    else snprintf(id, sizeof id, "%u", p->n);
    snprintf(identity, sizeof identity, "%s", id);
    child_counter = 0;
    mproc__set_identity(p->name, parent);
}

int mproc_process_start(mproc_process *p)
{
    if (!valid(p) || p->state != ST_NEW) return -EINVAL;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pthread_mutex_lock(&reg_mu);
    sweep_detached_locked();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        pthread_mutex_unlock(&reg_mu);
        return -e;
    }
    if (pid == 0) {
        child_setup(p, parent);
        mproc__child_exit(p->run(p->arg));
    }
    int fd = mproc__pidfd_open(pid);
    if (fd < 0) {
        /* Without a pidfd we cannot supervise it: end it now rather than leak it. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pthread_mutex_unlock(&reg_mu);
        return fd;
    }
    p->pid = pid;
    p->pidfd = fd;
    p->owner = parent;
    p->state = ST_STARTED;
    reg_add(p);
    pthread_mutex_unlock(&reg_mu);
    return 0;
}

int mproc_process_run(mproc_process *p)
{
    if (!valid(p)) return -EINVAL;
    return p->run(p->arg);
}

static int check_started(const mproc_process *p)
{
    if (!valid(p) || p->state == ST_NEW) return -EINVAL;
    if (p->owner != getpid()) return -ECHILD;
    return 0;
}

int mproc_process_join(mproc_process *p, double timeout)
{
    int r = check_started(p);
    if (r < 0) return r;
    int64_t deadline = mproc__deadline(timeout);
    for (;;) {
        pthread_mutex_lock(&reg_mu);
        bool ended = try_reap_locked(p);
        pthread_mutex_unlock(&reg_mu);
        if (ended) return 0;
        r = mproc__pidfd_wait(p->pidfd, deadline);
        if (r < 0) return r;
        if (r == 0) return -ETIMEDOUT;
    }
}

bool mproc_process_is_alive(mproc_process *p)
{
    if (check_started(p) < 0) return false;
    pthread_mutex_lock(&reg_mu);
    bool ended = try_reap_locked(p);
    pthread_mutex_unlock(&reg_mu);
    return !ended;
}

int mproc_process_exitcode(mproc_process *p, int *code)
{
    if (!valid(p) || !code) return -EINVAL;
    if (p->state == ST_NEW) return -EAGAIN;
    if (p->owner != getpid()) return -ECHILD;
    pthread_mutex_lock(&reg_mu);
    bool ended = try_reap_locked(p);
    pthread_mutex_unlock(&reg_mu);
    if (!ended) return -EAGAIN;
    if (p->exitcode == -ECHILD) return -ECHILD;
    *code = p->exitcode;
    return 0;
}

static int send_signal(mproc_process *p, int sig)
{
    int r = check_started(p);
    if (r < 0) return r;
    /* A pidfd names exactly this process, even if its pid has since been reused. */
    if (p->state == ST_ENDED) return 0;
    r = mproc__pidfd_send_signal(p->pidfd, sig);
    return r == -ESRCH ? 0 : r;
}

int mproc_process_terminate(mproc_process *p)
{
    return send_signal(p, SIGTERM);
}

int mproc_process_kill(mproc_process *p)
{
    return send_signal(p, SIGKILL);
}

int mproc_process_interrupt(mproc_process *p)
{
    return send_signal(p, SIGINT);
}

pid_t mproc_process_pid(const mproc_process *p)
{
    return valid(p) ? p->pid : 0;
}

const char *mproc_process_name(const mproc_process *p)
{
    return valid(p) ? p->name : NULL;
}

int mproc_process_sentinel(const mproc_process *p)
{
    int r = check_started(p);
    return r < 0 ? r : p->pidfd;
}

void mproc_process_free(mproc_process *p)
{
    if (!valid(p)) return;
    pthread_mutex_lock(&reg_mu);
    if (p->state == ST_STARTED && p->owner == getpid() && !try_reap_locked(p)) {
        p->detached = true;
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    if (p->state == ST_STARTED) reg_remove(p); /* a handle inherited by a child: just forget it */
    pthread_mutex_unlock(&reg_mu);
    release(p);
}
