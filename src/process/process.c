/* Process handles: the registry of children, reaping, exit codes, signals, exit-time joins.
 * How a child is started, reaped and signalled is its start method's (start_method.h); what the
 * child does is child.c's. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena/arena.h"
#include "platform/cpu.h"
#include "platform/interrupt.h"
#include "platform/platform.h"
#include "process/process.h"
#include "process/signals.h"

#define PROCESS_MAGIC 0x70726f63U
#define DAEMON_GRACE_S 0.5

/* Started and not yet reaped; guarded by reg_mu, which also serialises reaping. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc_process *reg_head;
/* In a child: the parent's handles it inherited. Not ours to wait for, but the parent's code may
 * still hold them (its calls then return -ECHILD), so they stay allocated and reachable. */
static mproc_process *inherited_head;
static mproc_process *self_handle; /* in a child: the parent's handle for this very process */
static unsigned child_counter;
static MPROC_TLS mproc_process *thread_self; /* the process this thread runs, in thread mode */

void mproc__thread_enter(mproc_process *p)
{
    thread_self = p;
}

static void reg_add(mproc_process *p)
{
    p->prev = NULL;
    p->next = reg_head;
    if (reg_head) reg_head->prev = p;
    reg_head = p;
}

static void reg_remove(mproc_process *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (reg_head == p)
        reg_head = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void release(mproc_process *p)
{
    if (p->fd >= 0) close(p->fd);
    if (p->ops->release) p->ops->release(p);
    mproc__arena_free(p->arg_copy);
    mproc__arena_free(p->pin);
    p->magic = 0;
    free(p);
}

static void mark_ended(mproc_process *p, int code)
{
    p->exitcode = code;
    p->state = MPROC__PROCESS_ENDED;
    reg_remove(p);
    /* The child has ended, so nobody reads its copy of the argument any more. */
    mproc__arena_free(p->arg_copy);
    p->arg_copy = NULL;
    mproc__arena_free(p->pin);
    p->pin = NULL;
}

/* Collect the exit status if the process has ended. Called with reg_mu held. */
static bool try_reap_locked(mproc_process *p)
{
    if (p->state != MPROC__PROCESS_STARTED) return p->state == MPROC__PROCESS_ENDED;
    int code = 0;
    int r = p->ops->reap(p, &code);
    /* -ECHILD: the status is gone (the host program reaped it behind our back with waitpid(-1),
     * or the forkserver helper that was its parent died). */
    if (r == -ECHILD)
        code = -ECHILD;
    else if (r <= 0)
        return false;
    mark_ended(p, code);
    return true;
}

/* Free detached processes that have ended. Called with reg_mu held. */
static void sweep_detached_locked(void)
{
    for (mproc_process *p = reg_head, *n; p; p = n) {
        n = p->next;
        if (p->detached && !p->ending && try_reap_locked(p)) release(p);
    }
}

/* Block until p's status is known (or its helper is gone). */
static void wait_status(mproc_process *p, int64_t deadline)
{
    if (p->ops->await) p->ops->await(p, deadline);
}

#define END_HOOKS_MAX 4
static void (*end_hooks[END_HOOKS_MAX])(void);
static unsigned n_end_hooks;

int mproc__registry_on_end(void (*fn)(void))
{
    pthread_mutex_lock(&reg_mu);
    int r = 0;
    unsigned i = 0;
    while (i < n_end_hooks && end_hooks[i] != fn)
        i++;
    if (i == n_end_hooks) {
        if (n_end_hooks < END_HOOKS_MAX)
            end_hooks[n_end_hooks++] = fn;
        else
            r = -ENOMEM;
    }
    pthread_mutex_unlock(&reg_mu);
    return r;
}

/* The first child of this process that no other call is ending yet (reg_mu held). */
static mproc_process *next_to_end_locked(pid_t self)
{
    for (mproc_process *p = reg_head, *n; p; p = n) {
        n = p->next;
        /* Inherited through a plain fork(), or a daemonic thread (a thread cannot be killed and
         * dies with the process): nothing to wait for. */
        if (p->owner != self || (p->daemon && p->ops->in_process)) {
            reg_remove(p);
            continue;
        }
        if (!p->ending) return p;
    }
    return NULL;
}

void mproc__registry_end_children(void)
{
    /* First what supervises children of its own: a pool would replace the workers ended below,
     * and reap and free them under our feet. */
    pthread_mutex_lock(&reg_mu);
    unsigned nh = n_end_hooks;
    pthread_mutex_unlock(&reg_mu);
    for (unsigned i = 0; i < nh; i++)
        end_hooks[i]();

    pthread_mutex_lock(&reg_mu);
    pid_t self = reg_head ? mproc__pid() : 0; /* a child without children of its own: no call */
    for (mproc_process *p = reg_head; p; p = p->next)
        if (p->owner == self && p->daemon && !p->ops->in_process) p->ops->signal(p, SIGTERM);
    int64_t grace = mproc__deadline(DAEMON_GRACE_S);
    for (mproc_process *p; (p = next_to_end_locked(self));) {
        /* Another thread may join and free it meanwhile: a free now only detaches it. */
        p->ending = true;
        pthread_mutex_unlock(&reg_mu);
        if (mproc__pidfd_wait(p->fd, p->daemon ? grace : INT64_MAX) == 0)
            p->ops->signal(p, SIGKILL);
        mproc__pidfd_wait(p->fd, INT64_MAX);
        wait_status(p, mproc__deadline(DAEMON_GRACE_S));
        pthread_mutex_lock(&reg_mu);
        p->ending = false;
        if (!try_reap_locked(p)) mark_ended(p, -ECHILD);
        if (p->detached) release(p);
    }
    pthread_mutex_unlock(&reg_mu);
    for (int m = 0; m < MPROC__START_METHOD_COUNT; m++) {
        const mproc__start_ops *ops = mproc__start_ops_of((mproc__start_method)m);
        if (ops->stop) ops->stop();
    }
}

void mproc__child_setup(mproc_process *p, pid_t parent)
{
    /* The parent's children are not ours: close our copies of their pidfds. */
    for (mproc_process *q = reg_head; q; q = q->next) {
        close(q->fd);
        q->fd = -1;
    }
    if (reg_head) {
        mproc_process *last = reg_head;
        while (last->next)
            last = last->next;
        last->next = inherited_head;
        inherited_head = reg_head;
    }
    reg_head = NULL;
    self_handle = p;
    pthread_mutex_init(&reg_mu, NULL);
    child_counter = 0;
    for (int m = 0; m < MPROC__START_METHOD_COUNT; m++) {
        const mproc__start_ops *ops = mproc__start_ops_of((mproc__start_method)m);
        if (ops->forget_in_child) ops->forget_in_child();
    }
    mproc__set_identity(p->name, p->identity, parent);
}

/* opts.cpus: the child's body runs through this, which first confines it to its CPUs. In the
 * arena, so a forkserver child reads it too. */
typedef struct {
    cpu_set_t cpus;
    mproc_run_fn run;
    void *arg;
} pinned_body;

static int run_pinned(void *arg)
{
    pinned_body *b = arg;
    if (sched_setaffinity(0, sizeof b->cpus, &b->cpus) != 0) return 127;
    return b->run(b->arg);
}

static int make_pin(mproc_process *p, const char *cpus)
{
    cpu_set_t *set;
    int r = mproc__cpu_placement(0, cpus, &set);
    if (r < 0) return r;
    pinned_body *b;
    r = mproc__arena_alloc(&p->pin, sizeof *b);
    if (r == 0) {
        b = p->pin;
        b->cpus = set[0];
        b->run = p->run;
        b->arg = p->arg;
        p->run = run_pinned;
        p->arg = b;
    }
    free(set);
    return r;
}

int mproc_process_new(mproc_process **out, const mproc_process_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!opts || !opts->run) return -EINVAL;
    if (opts->name && strlen(opts->name) >= MPROC__IDENTITY_NAME_MAX) return -EINVAL;
    if (opts->arg_size && !opts->arg) return -EINVAL;
    mproc__start_method method;
    int r = mproc__start_method_for(opts->start_method, &method);
    if (r < 0) return r;
    mproc_process *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    if (opts->arg_size) {
        if ((r = mproc__arena_alloc(&p->arg_copy, opts->arg_size)) < 0) {
            free(p);
            return r;
        }
        memcpy(p->arg_copy, opts->arg, opts->arg_size);
    }
    p->magic = PROCESS_MAGIC;
    p->method = method;
    p->ops = mproc__start_ops_of(method);
    p->run = opts->run;
    p->arg = p->arg_copy ? p->arg_copy : opts->arg;
    if (opts->cpus && (r = make_pin(p, opts->cpus)) < 0) {
        mproc__arena_free(p->arg_copy);
        free(p);
        return r;
    }
    p->daemon = opts->daemon;
    p->fd = -1;
    p->number = __atomic_add_fetch(thread_self ? &thread_self->children_made : &child_counter, 1,
                                   __ATOMIC_RELAXED);
    const char *parent_id = mproc__identity();
    if (parent_id[0])
        snprintf(p->identity, sizeof p->identity, "%s:%u", parent_id, p->number);
    else
        snprintf(p->identity, sizeof p->identity, "%u", p->number);
    if (opts->name)
        snprintf(p->name, sizeof p->name, "%s", opts->name);
    else
        snprintf(p->name, sizeof p->name, "Process-%s", p->identity);
    *out = p;
    return 0;
}

static bool valid(const mproc_process *p)
{
    return p && p->magic == PROCESS_MAGIC;
}

int mproc_process_start(mproc_process *p)
{
    if (!valid(p) || p->state != MPROC__PROCESS_NEW) return -EINVAL;
    /* So that what the program printed before the start comes out before the child's output (the
     * child discards its copy of the buffers: child.c). */
    fflush(stdout);
    fflush(stderr);
    /* A fork from a thread of the program gives the child this thread's mask already. */
    p->start_mask_set = !p->ops->inherits_mask || mproc__sig_in_service();
    if (p->start_mask_set) mproc__sig_start_mask(&p->start_mask);
    pthread_mutex_lock(&reg_mu);
    sweep_detached_locked();
    /* Before the start: a "thread" process reads it as soon as it runs (a write after
     * pthread_create would race with that read, as TSan reports). */
    p->owner = mproc__pid();
    int r = p->ops->start(p);
    if (r == 0) {
        p->state = MPROC__PROCESS_STARTED;
        reg_add(p);
    }
    pthread_mutex_unlock(&reg_mu);
    return r;
}

int mproc_process_run(mproc_process *p)
{
    if (!valid(p)) return -EINVAL;
    if (p->pin) { /* here, in the caller: without pinning it */
        pinned_body *b = p->pin;
        return b->run(b->arg);
    }
    return p->run(p->arg);
}

static int check_started(const mproc_process *p)
{
    if (!valid(p) || p->state == MPROC__PROCESS_NEW) return -EINVAL;
    if (p->owner != mproc__pid()) return -ECHILD;
    return 0;
}

static bool reap(mproc_process *p)
{
    pthread_mutex_lock(&reg_mu);
    bool ended = try_reap_locked(p);
    pthread_mutex_unlock(&reg_mu);
    return ended;
}

/* Join with signals blocked but while asleep (interrupt.h): a handler that runs makes it -EINTR,
 * unless the child has ended by then. The caller has just looked: the first look is the poll's
 * (an ended child's fd is readable), not another waitid. */
static int join_blocked(mproc_process *p, const mproc__intr *st, int64_t deadline)
{
    for (bool looked = true;; looked = false) {
        if (!looked && reap(p)) return 0;
        int r = mproc__intr_poll_in(st, p->fd, deadline);
        if (r == -EINTR) return reap(p) ? 0 : -EINTR;
        if (r < 0) return r;
        if (r == 0) return -ETIMEDOUT;
        wait_status(p, deadline);
        if (!reap(p) && mproc__remaining_ns(deadline) <= 0) return -ETIMEDOUT;
    }
}

int mproc_process_join(mproc_process *p, double timeout)
{
    int r = check_started(p);
    if (r < 0) return r;
    if (mproc__timeout_check(timeout)) return -EINVAL;
    if (reap(p)) return 0;
    int64_t deadline = mproc__deadline(timeout);
    mproc__intr st;
    mproc__intr_block(&st);
    r = join_blocked(p, &st, deadline);
    mproc__intr_restore(&st);
    return r;
}

bool mproc_process_is_alive(mproc_process *p)
{
    return check_started(p) == 0 && !reap(p);
}

int mproc_process_exitcode(mproc_process *p, int *code)
{
    if (!valid(p) || !code) return -EINVAL;
    if (p->state == MPROC__PROCESS_NEW) return -EAGAIN;
    if (p->owner != mproc__pid()) return -ECHILD;
    if (!reap(p)) return -EAGAIN;
    if (p->exitcode == -ECHILD) return -ECHILD;
    *code = p->exitcode;
    return 0;
}

static int send_signal(mproc_process *p, int sig)
{
    int r = check_started(p);
    if (r < 0) return r;
    if (reap(p)) return 0;
    return p->ops->signal(p, sig);
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
    return r < 0 ? r : p->fd;
}

void mproc_process_free(mproc_process *p)
{
    if (!valid(p)) return;
    pthread_mutex_lock(&reg_mu);
    if (p->ending ||
        (p->state == MPROC__PROCESS_STARTED && p->owner == mproc__pid() && !try_reap_locked(p))) {
        p->detached = true;
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    if (p->state == MPROC__PROCESS_STARTED) reg_remove(p); /* a handle inherited by a child */
    pthread_mutex_unlock(&reg_mu);
    release(p);
}

int mproc_shutdown(void)
{
    mproc__registry_end_children();
    return 0;
}
