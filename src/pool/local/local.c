/* Local backend: forked workers reading task records from a shared queue in the arena, and the
 * supervisor thread that watches them.
 *
 * The supervisor is one thread per pool in the parent, with every signal blocked (so signal
 * handlers and the EINTR they cause always land in the program's own threads). It sleeps in
 * poll() on: the workers' pidfds (a death), an eventfd the workers write when a watched task
 * completes (callbacks, future fds, futures_wait), and a control eventfd (requests from the
 * program's threads, and workers starting a task whose hard deadline is earlier than the next
 * planned look). It fails the task of a dead worker, starts its replacement, enforces hard time
 * limits, counts deaths for the crash-loop limit, and runs done-callbacks.
 */
#include <errno.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arena/arena.h"
#include "process/child_watch.h"
#include "process/signals.h"
#include "process/start_method.h"
#include "mproc/process.h"
#include "pool/backend.h"
#include "pool/future.h"
#include "pool/local/local.h"
#include "platform/interrupt.h"
#include "platform/spin.h"

enum { KILL_NONE, KILL_TIMEOUT, KILL_STOP };

_Atomic uint64_t mproc__pool_stuck_wakes;

typedef struct {
    mproc_process *proc;
    int pidfd;
    pid_t pid;
    uint32_t inc;
    int kill_reason;
    uint32_t quarantined; /* record failed for its time limit, released once the worker is gone */
    bool alive;
    char name[64];
} seat_rt;

typedef struct {
    mproc__pool_shm *shm;
    void *shm_block; /* the arena block holding shm (aligned up to 64 bytes inside it) */
    seat_rt *seats;
    pthread_t sup, relay;
    bool sup_started, sup_exited, sup_joined, relay_started;
    _Atomic bool relay_stop;
    int stop_code; /* terminate/broken: code for the running tasks of killed workers */
    bool stop_all; /* kill every worker, start no more */
    bool req_exit; /* the supervisor may leave once no worker is alive */
    int alive;
    unsigned next_number;
    uint32_t next_inc;
    /* Seats [0, target) have a worker (mproc_pool_resize moves it, mu); span: the seats ever
     * used, whose statistics count (an emptied one keeps its counts). */
    uint32_t target, span;
    int64_t *deaths; /* ring of death times for the crash-loop limit */
    unsigned ndeaths, dpos;
    uint64_t ok_mark;
    /* check_stuck, at its last look: the spinner, and the head at which records have waited
     * since seen_at (UINT64_MAX: none waited) */
    uint32_t seen_spinner;
    uint64_t seen_head;
    int64_t seen_at;
    unsigned idle_looks; /* looks in a row that found nothing queued and no spinner */
    uint32_t sends;      /* single-record sends, for the stamp sample (local_send; mu) */
} local_rt;

static local_rt *RT(mproc_pool *p)
{
    return p->backend_state;
}

void mproc__local_yield_at_once(mproc_pool *p)
{
    if (p->backend == &mproc__pool_local_backend && RT(p))
        atomic_store_explicit(&RT(p)->shm->idle_hard_spin_ns, 0, memory_order_relaxed);
}

static void efd_write(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void efd_drain(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

static void wake_all_workers(mproc__pool_shm *shm)
{
    atomic_fetch_add(&shm->wake_seq, 1);
    mproc__futex_wake(&shm->wake_seq, INT32_MAX);
}

/* Start the worker of seat i (supervisor thread, or the creating thread before it exists). */
static int spawn(mproc_pool *p, uint32_t i)
{
    local_rt *rt = RT(p);
    mproc__pool_shm *shm = rt->shm;
    mproc__seat *sh = &shm->seats[i];
    seat_rt *w = &rt->seats[i];
    uint32_t inc = ++rt->next_inc & 0xffffff;
    if (inc == 0) inc = rt->next_inc = 1;
    atomic_store(&sh->phase, MPROC__WORKER_STARTING);
    atomic_store(&sh->leave, 0);
    atomic_store(&sh->current, MPROC__SLOT_NONE);
    atomic_store(&sh->deadline_ns, 0);
    atomic_store(&sh->crash_len, 0);
    /* The worker before died in a task: it was busy until then (stats.h: we write the line only
     * while no worker is in the seat). */
    uint64_t began = atomic_load_explicit(&sh->st.cur_start, memory_order_relaxed);
    if (began) {
        mproc__stat_add(&sh->st.busy, mproc__ticks() - began);
        atomic_store_explicit(&sh->st.cur_start, 0, memory_order_relaxed);
    }
    sh->crash_sig = 0;
    /* The seat's CPUs: a replacement runs where the worker it replaces ran. */
    sh->pinned = p->ncpu_sets > 0;
    if (sh->pinned) sh->cpus = p->cpu_sets[i % (uint32_t)p->ncpu_sets];
    sh->init_code = 0;
    sh->init_msg[0] = '\0';
    atomic_store(&sh->inc, inc);
    snprintf(w->name, sizeof w->name, "%s-%u", p->name, ++rt->next_number);
    mproc__worker_boot boot = {shm, i, inc, p->opts.initializer, p->opts.initarg};
    mproc_process *proc;
    /* arg_size: the boot block is copied into the arena, so a forkserver child can read it. */
    int r = mproc_process_new(&proc, &(mproc_process_opts){.name = w->name,
                                                           .run = mproc__worker_main,
                                                           .arg = &boot,
                                                           .arg_size = sizeof boot,
                                                           .daemon = true,
                                                           .start_method = p->method_name});
    if (r < 0) return r;
    r = mproc_process_start(proc);
    if (r < 0) {
        mproc_process_free(proc);
        return r;
    }
    w->proc = proc;
    w->pidfd = mproc_process_sentinel(proc);
    w->pid = mproc_process_pid(proc);
    w->inc = inc;
    w->kill_reason = KILL_NONE;
    w->quarantined = MPROC__SLOT_NONE;
    pthread_mutex_lock(&p->mu);
    w->alive = true;
    rt->alive++;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static uint64_t total_ok(local_rt *rt)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < rt->shm->nseats; i++)
        n += atomic_load(&rt->shm->seats[i].st.ok);
    return n;
}

/* Record a death; true when the crash-loop limit is exceeded. */
static bool crash_loop(mproc_pool *p)
{
    local_rt *rt = RT(p);
    if (p->opts.max_restarts == MPROC_POOL_NO_RESTART_LIMIT) return false;
    uint64_t ok = total_ok(rt);
    if (ok != rt->ok_mark) { /* a task succeeded since the last death: start counting again */
        rt->ok_mark = ok;
        rt->ndeaths = 0;
    }
    unsigned cap = p->opts.max_restarts + 1; /* at most MPROC_POOL_MAX_RESTARTS + 1 (pool.c) */
    int64_t now = mproc__now_ns();
    rt->deaths[rt->dpos] = now;
    rt->dpos = (rt->dpos + 1) % cap;
    if (rt->ndeaths < cap) rt->ndeaths++;
    unsigned recent = 0;
    int64_t window;
    mproc__timeout_ns(p->opts.restart_window, &window); /* checked in mproc_pool_new */
    for (unsigned k = 0; k < rt->ndeaths; k++)
        if (now - rt->deaths[k] <= window) recent++;
    return recent > p->opts.max_restarts;
}

/* Why the running tasks of workers killed by terminate or a broken pool failed. */
static const char *stop_message(mproc_pool *p)
{
    return RT(p)->stop_code == MPROC_EBROKEN ? p->broken_msg : "pool terminated";
}

static void kill_all_locked(mproc_pool *p, int code)
{
    local_rt *rt = RT(p);
    if (!rt->stop_all) {
        rt->stop_all = true;
        rt->stop_code = code;
    }
    atomic_store(&rt->shm->shutdown, 1);
    for (uint32_t i = 0; i < rt->shm->nseats; i++) {
        seat_rt *w = &rt->seats[i];
        if (!w->alive || w->kill_reason == KILL_STOP) continue;
        w->kill_reason = KILL_STOP;
        /* Its task fails now; no record is reused before the worker is gone (the pool takes no
         * more tasks). Failed before it is told to stop: a task that polls mproc_task_cancelled
         * and returns at once must not complete its record first (ASan CI saw a terminated task
         * end with its result). */
        uint32_t cur = atomic_load(&rt->shm->seats[i].current);
        if (cur != MPROC__SLOT_NONE) {
            mproc__slot_fail(p, cur, MPROC__SLOT_RUNNING_BY(w->inc), rt->stop_code, 0, -1, w->pid,
                             "%s", stop_message(p));
            atomic_fetch_or(&mproc__slot_at(p->slot_chunks, cur)->flags, MPROC__SLOT_CANCEL);
        }
        if (!rt->shm->thread_mode) mproc__watch_signal(w->pid, w->pidfd, SIGKILL);
    }
    wake_all_workers(rt->shm);
}

static void unquarantine_locked(mproc_pool *p, uint32_t idx)
{
    if (idx == MPROC__SLOT_NONE) return;
    mproc_future *f = mproc__future_at(p, idx);
    f->flags &= ~(uint32_t)MPROC__FUTURE_QUARANTINE;
    if (f->flags & MPROC__FUTURE_ORPHAN) mproc__pool_release_locked(p, f);
}

static void describe_exit(char *buf, size_t cap, int code)
{
    if (code < 0) {
        const char *abbr = sigabbrev_np(-code), *desc = sigdescr_np(-code);
        snprintf(buf, cap, "was killed by signal %d (SIG%s: %s)", -code, abbr ? abbr : "?",
                 desc ? desc : "?");
    } else {
        snprintf(buf, cap, "exited with status %d", code);
    }
}

/* How a worker ended, read once it is reaped. */
typedef struct {
    int code; /* exit status, or -signal */
    int sig, status;
    uint32_t phase, cur;
    bool normal; /* left by itself (max tasks, shutdown) with status 0 */
    char how[160];
} death;

/* Reap the worker of seat i and undo what it may have left half done. */
static void reap(mproc_pool *p, uint32_t i, death *d)
{
    local_rt *rt = RT(p);
    seat_rt *w = &rt->seats[i];
    mproc__seat *sh = &rt->shm->seats[i];
    d->code = 0;
    /* Dead (its sentinel is readable); with a forkserver the status comes a moment later. */
    mproc_process_join(w->proc, 5.0);
    if (mproc_process_exitcode(w->proc, &d->code) < 0) d->code = -SIGKILL;
    mproc_process_free(w->proc);
    w->proc = NULL;
    w->pidfd = -1;
    /* A worker killed while idle leaves its mark in the counts the waking rule reads: a stuck
     * spinner would stop every wake-up, a stuck sleeper only costs a spare one. And it may have
     * died between claiming a record and waking the next sleeper (chain_wake): wake them all,
     * they look at the queue and sleep again. */
    uint32_t spin_inc = w->inc;
    atomic_compare_exchange_strong(&rt->shm->spinner, &spin_inc, 0);
    if (atomic_exchange(&sh->asleep, 0)) atomic_fetch_sub(&rt->shm->sleepers, 1);
    wake_all_workers(rt->shm);
    d->phase = atomic_load(&sh->phase);
    d->cur = atomic_load(&sh->current);
    d->sig = d->code < 0 ? -d->code : 0;
    d->status = d->code >= 0 ? d->code : -1;
    describe_exit(d->how, sizeof d->how, d->code);
    d->normal =
        (d->phase == MPROC__WORKER_RETIRED || d->phase == MPROC__WORKER_EXITING) && d->code == 0;
}

/* Fail the task the worker died on, if any (mu held). */
static void fail_running_locked(mproc_pool *p, uint32_t i, const death *d)
{
    local_rt *rt = RT(p);
    seat_rt *w = &rt->seats[i];
    mproc__seat *sh = &rt->shm->seats[i];
    if (d->cur == MPROC__SLOT_NONE) return;
    uint32_t owner = MPROC__SLOT_RUNNING_BY(w->inc);
    if (w->kill_reason == KILL_STOP) {
        mproc__slot_fail(p, d->cur, owner, rt->stop_code, d->sig, d->status, w->pid, "%s",
                         stop_message(p));
    } else {
        uint32_t clen = atomic_load(&sh->crash_len);
        mproc__slot_fail(p, d->cur, owner, MPROC_EWORKERLOST, d->sig, d->status, w->pid,
                         "worker %s (pid %d) %s while running the task%s%.*s", w->name, (int)w->pid,
                         d->how, clen ? "\nbacktrace:\n" : "", (int)clen, sh->crash);
    }
}

/* Whether this death breaks the pool: writes why into brk, or leaves it empty (mu held). */
static void why_broken_locked(mproc_pool *p, uint32_t i, const death *d, char *brk, size_t cap)
{
    local_rt *rt = RT(p);
    seat_rt *w = &rt->seats[i];
    if (d->normal || w->kill_reason != KILL_NONE || rt->stop_all) return;
    if (d->phase == MPROC__WORKER_INIT_FAILED)
        snprintf(brk, cap, "worker initializer failed in %s (pid %d): %s", w->name, (int)w->pid,
                 rt->shm->seats[i].init_msg);
    /* A death while starting (killed from outside, or a crash in the initializer) is a death
     * like any other: only an initializer that returns nonzero breaks the pool at once. */
    else if (crash_loop(p))
        snprintf(brk, cap, "%u worker deaths within %g s with no task succeeding (last: %s %s%s)",
                 p->opts.max_restarts + 1, p->opts.restart_window, w->name, d->how,
                 d->phase == MPROC__WORKER_STARTING ? " while starting" : "");
}

static void handle_death(mproc_pool *p, uint32_t i)
{
    local_rt *rt = RT(p);
    seat_rt *w = &rt->seats[i];
    death d;
    reap(p, i, &d);
    char brk[512] = "";

    pthread_mutex_lock(&p->mu);
    w->alive = false;
    rt->alive--;
    if (!d.normal && w->kill_reason != KILL_STOP) p->counts.deaths++;
    if (w->kill_reason == KILL_TIMEOUT) unquarantine_locked(p, w->quarantined);
    w->quarantined = MPROC__SLOT_NONE;
    fail_running_locked(p, i, &d);
    why_broken_locked(p, i, &d, brk, sizeof brk);
    bool respawn = !rt->stop_all && !brk[0] && i < rt->target;
    if (respawn && atomic_load(&rt->shm->shutdown))
        respawn = atomic_load(&rt->shm->head) < atomic_load(&rt->shm->tail);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);

    /* Cannot fork any more: better a clear error than tasks waiting forever. */
    if (respawn && spawn(p, i) < 0)
        snprintf(brk, sizeof brk, "cannot start a replacement worker for %s", w->name);
    if (brk[0]) {
        mproc__pool_break(p, brk);
        pthread_mutex_lock(&p->mu);
        kill_all_locked(p, MPROC_EBROKEN);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Kill workers whose task passed its hard deadline; returns the next deadline to look at. Under
 * mu throughout: a seat's alive and kill_reason are also written by mproc_pool_terminate and exit
 * (kill_all_locked, in the caller's thread), and an unlocked read of them raced (TSan). */
static int64_t check_deadlines(mproc_pool *p)
{
    local_rt *rt = RT(p);
    int64_t now = mproc__now_ns(), next = INT64_MAX;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < rt->shm->nseats; i++) {
        seat_rt *w = &rt->seats[i];
        if (!w->alive || w->kill_reason != KILL_NONE) continue;
        mproc__seat *sh = &rt->shm->seats[i];
        /* current before deadline: the worker clears a task's deadline before it takes the
         * next record, so a deadline read after `current` is that record's or 0. */
        uint32_t cur = atomic_load(&sh->current);
        int64_t dl = atomic_load(&sh->deadline_ns);
        if (!dl || cur == MPROC__SLOT_NONE) continue;
        if (dl > now) {
            if (dl < next) next = dl;
            continue;
        }
        mproc__slot *s = mproc__slot_at(p->slot_chunks, cur);
        if (rt->shm->thread_mode) {
            /* A thread cannot be killed: the hard limit degrades to a cancel request. */
            if (atomic_compare_exchange_strong(&sh->deadline_ns, &dl, 0))
                atomic_fetch_or(&s->flags, MPROC__SLOT_CANCEL);
            continue;
        }
        double limit = (double)(s->timeout_ns ? s->timeout_ns : rt->shm->pool_timeout_ns) / 1e9;
        if (mproc__slot_fail(p, cur, MPROC__SLOT_RUNNING_BY(w->inc), MPROC_ETIMELIMIT, SIGKILL, -1,
                             w->pid,
                             "task exceeded its time limit of %g s; worker %s (pid %d) killed",
                             limit, w->name, (int)w->pid)) {
            mproc__future_at(p, cur)->flags |= MPROC__FUTURE_QUARANTINE;
            w->quarantined = cur;
            w->kill_reason = KILL_TIMEOUT;
            mproc__watch_signal(w->pid, w->pidfd, SIGKILL);
        } else if (atomic_load(&sh->deadline_ns) == dl) {
            /* The record changed hands under us (the worker is between two tasks): look
             * again shortly rather than sleep past a deadline. */
            int64_t retry = now + 10000000;
            if (retry < next) next = retry;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return next;
}

/* Whether records wait for a worker, or a worker spins for work (seq_cst loads). */
static bool queue_active(mproc__pool_shm *shm)
{
    return atomic_load(&shm->spinner) != 0 || atomic_load(&shm->head) < atomic_load(&shm->tail);
}

/* Whether no wake-up was issued since any sleeping worker went to sleep. */
static bool none_woken(mproc__pool_shm *shm)
{
    uint32_t seq = atomic_load(&shm->wake_seq);
    for (uint32_t i = 0; i < shm->nseats; i++)
        if (atomic_load(&shm->seats[i].asleep) && atomic_load(&shm->seats[i].sleep_seq) != seq)
            return false;
    return true;
}

/* A worker stopped at the wrong moment (SIGSTOP, or kept off its CPU). The waking rule leaves
 * some wake-ups to a worker rather than to the parent, so that a busy pool makes no system call
 * per task (local_send): a send that finds a worker spinning wakes nobody, the spinner will see
 * the records and wake the next sleeper; a send behind records not yet taken wakes nobody, the
 * worker that takes them wakes the next sleeper (chain_wake). A worker stopped while spinning or
 * between taking a record and waking the next does neither, and the queue would wait for it
 * while the other workers sleep. So while records are queued or a worker spins, the supervisor
 * looks every MPROC__LOCAL_TICK_NS: records waiting at the same head a whole tick later, with
 * workers asleep, mean the worker trusted with the wake-up did not do it; the spinner (if the
 * same one) loses its mark and every worker wakes. A working worker moves the head within
 * microseconds, so this does not fire in a pool that works. Returns when to look next,
 * INT64_MAX once nothing was queued and no worker spun for MPROC__LOCAL_IDLE_TICKS looks (then
 * sup_ticking is 0, and local_send wakes the supervisor when it leaves a wake-up to a worker). */
static int64_t check_stuck(mproc_pool *p, int64_t now)
{
    local_rt *rt = RT(p);
    mproc__pool_shm *shm = rt->shm;
    uint32_t sp = atomic_load(&shm->spinner);
    uint64_t h = atomic_load(&shm->head), t = atomic_load(&shm->tail);
    if (h < t && h == rt->seen_head && now - rt->seen_at >= MPROC__LOCAL_TICK_NS) {
        if (sp && sp == rt->seen_spinner) atomic_compare_exchange_strong(&shm->spinner, &sp, 0);
        if (atomic_load(&shm->sleepers)) {
            if (!sp && none_woken(shm)) atomic_fetch_add(&mproc__pool_stuck_wakes, 1);
            wake_all_workers(shm);
        }
        rt->seen_at = now;
    } else if (h != rt->seen_head || h >= t) {
        /* Records waiting at a new head, or none waiting: start timing afresh. */
        rt->seen_head = h < t ? h : UINT64_MAX;
        rt->seen_at = now;
    }
    rt->seen_spinner = sp;
    /* Records queued, a spinner, or woken while not ticking (by a send: local_send). */
    bool was_ticking = atomic_exchange(&shm->sup_ticking, 1);
    if (sp || h < t || !was_ticking) rt->idle_looks = 0;
    /* Tick on for a while after the last activity: a pool between two tasks (an apply loop)
     * often looks idle for a moment, and each stop would cost the next send an eventfd write. */
    if (rt->idle_looks++ < MPROC__LOCAL_IDLE_TICKS) return now + MPROC__LOCAL_TICK_NS;
    /* Dekker with local_send: it publishes, fences, then reads sup_ticking. */
    atomic_store(&shm->sup_ticking, 0);
    if (queue_active(shm)) {
        atomic_store(&shm->sup_ticking, 1);
        return now + MPROC__LOCAL_TICK_NS;
    }
    return INT64_MAX;
}

/* Turns the workers' futex notifications into ctl_efd writes (local.h). */
static void *relay(void *arg)
{
    mproc_pool *p = arg;
    local_rt *rt = RT(p);
    mproc__pool_shm *shm = rt->shm;
    /* From 0, not from the current value: a worker may notify before this thread first runs. */
    uint32_t seen = 0;
    while (!atomic_load(&rt->relay_stop)) {
        atomic_store(&shm->relay_sleeping, 1);
        uint32_t s = atomic_load(&shm->notify_seq);
        if (s == seen) mproc__futex_wait(&shm->notify_seq, s, INT64_MAX);
        atomic_store(&shm->relay_sleeping, 0);
        s = atomic_load(&shm->notify_seq);
        if (s != seen) {
            seen = s;
            efd_write(shm->ctl_efd);
        }
    }
    return NULL;
}

/* mproc_pool_resize grew the pool: start the workers of the new seats (mu held; dropped while
 * each starts, as handle_death does). A seat whose worker is still leaving after a shrink gets
 * its own replacement when it is gone (handle_death). */
static void grow_locked(mproc_pool *p)
{
    local_rt *rt = RT(p);
    for (uint32_t i = 0; i < rt->target; i++) {
        if (rt->seats[i].alive || rt->seats[i].proc || rt->stop_all || atomic_load(&p->broken) ||
            atomic_load(&rt->shm->shutdown))
            continue;
        pthread_mutex_unlock(&p->mu);
        int r = spawn(p, i);
        pthread_mutex_lock(&p->mu);
        if (r < 0) {
            pthread_mutex_unlock(&p->mu);
            mproc__pool_break(p, "cannot start a worker for mproc_pool_resize");
            pthread_mutex_lock(&p->mu);
            kill_all_locked(p, MPROC_EBROKEN);
            return;
        }
    }
}

static void *supervise(void *arg)
{
    mproc_pool *p = arg;
    local_rt *rt = RT(p);
    mproc__pool_shm *shm = rt->shm;
    uint32_t n = shm->nseats;
    struct pollfd *pf = calloc(n + 1, sizeof *pf);
    uint32_t *which = calloc(n, sizeof *which);
    if (!pf || !which) abort();
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (rt->stop_all) kill_all_locked(p, rt->stop_code);
        grow_locked(p);
        if (rt->req_exit && rt->alive == 0) {
            rt->sup_exited = true;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        pthread_mutex_unlock(&p->mu);

        int64_t next = check_deadlines(p);
        atomic_store(&shm->sup_wake_ns, next);
        /* A worker may have started a timed task between the scan and the store above. */
        int64_t again = check_deadlines(p);
        if (again < next) next = again;
        int64_t tick = check_stuck(p, mproc__now_ns());
        if (tick < next) next = tick;
        pf[0] = (struct pollfd){.fd = shm->ctl_efd, .events = POLLIN};
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!rt->seats[i].alive) continue;
            pf[1 + k] = (struct pollfd){.fd = rt->seats[i].pidfd, .events = POLLIN};
            which[k++] = i;
        }
        int r = poll(pf, 1 + k, mproc__poll_ms(next));
        atomic_store(&shm->sup_wake_ns, 0); /* awake: workers need not wake us */
        if (r < 0) continue;
        if (pf[0].revents) efd_drain(shm->ctl_efd);
        for (uint32_t j = 0; j < k; j++)
            if (pf[1 + j].revents) handle_death(p, which[j]);
        pthread_mutex_lock(&p->mu);
        mproc__future_scan_watch(p);
        pthread_mutex_unlock(&p->mu);
    }
    free(pf);
    free(which);
    return NULL;
}

static void local_destroy(mproc_pool *p);

/* Seats a pool of n workers gets: room for mproc_pool_resize to grow it to 64, or 4 per CPU. */
static uint32_t mproc__local_capacity(int n)
{
    int cap = 4 * mproc_cpu_count();
    if (cap < 64) cap = 64;
    if (cap > MPROC_POOL_MAX_WORKERS) cap = MPROC_POOL_MAX_WORKERS;
    return (uint32_t)(n > cap ? n : cap);
}

static int local_start(mproc_pool *p)
{
    local_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return -ENOMEM;
    p->backend_state = rt;
    /* Seats for what mproc_pool_resize may grow to: untouched ones cost address space only (the
     * arena gives large blocks back zeroed by the kernel). */
    uint32_t n = mproc__local_capacity(p->nworkers);
    rt->target = rt->span = (uint32_t)p->nworkers;
    rt->seen_head = UINT64_MAX;
    rt->seats = calloc(n, sizeof *rt->seats);
    bool limited = p->opts.max_restarts != MPROC_POOL_NO_RESTART_LIMIT;
    rt->deaths = calloc(limited ? p->opts.max_restarts + 1 : 1, sizeof *rt->deaths);
    void *shm = NULL, *q = NULL;
    int r = (!rt->seats || !rt->deaths) ? -ENOMEM : 0;
    /* The arena gives 16-byte alignment; the shared block wants cache lines. */
    if (r == 0)
        r = mproc__arena_alloc(&shm, sizeof(mproc__pool_shm) + n * sizeof(mproc__seat) + 64);
    if (r == 0) r = mproc__arena_alloc(&q, MPROC__LOCAL_QUEUE_CAP * sizeof(uint64_t));
    if (r < 0) {
        mproc__arena_free(shm);
        free(rt->seats);
        free(rt->deaths);
        free(rt);
        return r;
    }
    rt->shm_block = shm;
    rt->shm = (mproc__pool_shm *)(((uintptr_t)shm + 63) & ~(uintptr_t)63);
    rt->shm->q = q;
    rt->shm->nseats = n;
    rt->shm->idle_hard_spin_ns = MPROC__LOCAL_IDLE_HARD_SPIN_NS;
    rt->shm->max_tasks = p->opts.max_tasks_per_child;
    rt->shm->max_rss = p->opts.max_memory_per_child;
    int64_t limit = 0; /* checked in mproc_pool_new; a huge one means none */
    mproc__timeout_ns(p->opts.task_timeout, &limit);
    rt->shm->pool_timeout_ns = limit == INT64_MAX ? 0 : limit;
    rt->shm->ctl_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rt->shm->thread_mode = p->method == MPROC__START_THREAD;
    p->slot_chunks = rt->shm->chunks;
    for (uint32_t i = 0; i < n; i++) {
        rt->seats[i].pidfd = -1;
        rt->seats[i].quarantined = MPROC__SLOT_NONE; /* seats not started yet too */
    }
    if (rt->shm->ctl_efd < 0) r = -errno;
    if (!rt->shm->thread_mode) mproc__worker_prepare();
    for (uint32_t i = 0; r == 0 && i < rt->target; i++)
        r = spawn(p, i);
    if (r == 0) {
        /* The supervisor never takes signals: they go to the program's threads. The workers it
         * starts get this thread's mask, not its own. */
        r = mproc__service_thread_create(&rt->relay, relay, p);
        rt->relay_started = r == 0;
        if (r == 0) r = mproc__service_thread_create(&rt->sup, supervise, p);
        rt->sup_started = r == 0;
    }
    if (r < 0) {
        pthread_mutex_lock(&p->mu);
        rt->stop_all = true;
        for (uint32_t i = 0; i < n; i++)
            if (rt->seats[i].alive && !rt->shm->thread_mode)
                mproc__watch_signal(rt->seats[i].pid, rt->seats[i].pidfd, SIGKILL);
        pthread_mutex_unlock(&p->mu);
        for (uint32_t i = 0; i < n; i++) {
            if (!rt->seats[i].proc) continue;
            mproc_process_join(rt->seats[i].proc, MPROC_FOREVER);
            mproc_process_free(rt->seats[i].proc);
        }
        local_destroy(p);
        return r;
    }
    return 0;
}

static int local_send(mproc_pool *p, const uint32_t *idx, uint32_t n)
{
    mproc__pool_shm *shm = RT(p)->shm;
    uint64_t t = atomic_load_explicit(&shm->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&shm->head, memory_order_acquire);
    if (t + n - h > MPROC__LOCAL_QUEUE_CAP) return -EAGAIN;
    /* The dispatch latency's start: one stamp for a batch, and one in MPROC__Q_SAMPLE single
     * submits (the first of the pool too) carries one (local.h). */
    local_rt *rt = RT(p);
    bool timed = MPROC__STATS_ON && (n > 1 || (rt->sends++ & (MPROC__Q_SAMPLE - 1)) == 0);
    uint64_t now = timed ? mproc__ticks() : 0;
    for (uint32_t j = 0; j < n; j++)
        atomic_store_explicit(&shm->q[(t + j) & (MPROC__LOCAL_QUEUE_CAP - 1)],
                              mproc__q_entry(idx[j], now, timed), memory_order_relaxed);
    atomic_store_explicit(&shm->tail, t + n, memory_order_release);
    /* Dekker with the worker going to sleep (worker.c idle: sleepers++, then a look at
     * head and tail): after this fence either that look sees our records, or the loads below
     * see its sleepers++ and the head it passed to. Everything the decision uses is read after
     * the fence: a head read before it (as an "was the queue empty" test) may be stale by the
     * time the tail is published, and was the cause of a lost wake-up (docs/pool.md). */
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t sl = atomic_load_explicit(&shm->sleepers, memory_order_relaxed);
    if (!sl) return 0;
    /* Every way on leaves the next step to one worker (the spinner, the one that claims the
     * records before ours, or the sleeper woken below), which may be stopped: the supervisor
     * looks for that while it ticks (check_stuck), and is woken here when it does not tick
     * (once per idle period, not per task). */
    if (!atomic_load_explicit(&shm->sup_ticking, memory_order_relaxed)) efd_write(shm->ctl_efd);
    /* A spinning worker will see the records (it looks at the queue again after it stops
     * spinning and before it sleeps) and wakes the next sleeper itself (chain_wake). And with
     * positions before ours not yet passed, a worker will pass them, and one that claims a
     * record while more are queued wakes a sleeper (chain_wake), so a busy pool makes no system
     * call here. A worker that went to sleep without seeing our records had passed every
     * position up to t, so then head >= t. */
    if (atomic_load_explicit(&shm->spinner, memory_order_relaxed) ||
        (n == 1 && atomic_load_explicit(&shm->head, memory_order_relaxed) < t))
        return 0;
    atomic_fetch_add(&shm->wake_seq, 1);
    mproc__wake(&shm->wake_seq, (int)(n < sl ? n : sl));
    return 0;
}

static void local_close(mproc_pool *p)
{
    local_rt *rt = RT(p);
    atomic_store(&rt->shm->shutdown, 1);
    wake_all_workers(rt->shm);
    efd_write(rt->shm->ctl_efd);
}

static bool in_supervisor(local_rt *rt)
{
    return rt->sup_started && pthread_equal(pthread_self(), rt->sup);
}

static void local_terminate(mproc_pool *p, int code)
{
    local_rt *rt = RT(p);
    pthread_mutex_lock(&p->mu);
    mproc__pool_fail_queued(p, code, code == MPROC_EBROKEN ? p->broken_msg : "pool terminated");
    if (rt->sup_started && !rt->sup_exited) {
        kill_all_locked(p, code);
        efd_write(rt->shm->ctl_efd);
        /* Called by the supervisor itself (a done-callback that exits): it cannot wait for itself;
         * the killed workers are reaped by the exit path. */
        while (!in_supervisor(rt) && rt->alive > 0 && !rt->sup_exited)
            pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

static void stop_relay(local_rt *rt)
{
    if (!rt->relay_started) return;
    rt->relay_started = false;
    atomic_store(&rt->relay_stop, true);
    atomic_fetch_add(&rt->shm->notify_seq, 1);
    mproc__futex_wake(&rt->shm->notify_seq, 1);
    pthread_join(rt->relay, NULL);
}

/* Wait (mu held) for the supervisor to exit until `until`: 0, or -ETIMEDOUT. */
static int sup_exit_step(void *arg, int64_t until)
{
    mproc_pool *p = arg;
    local_rt *rt = RT(p);
    while (rt->sup_started && !rt->sup_exited) {
        if (until == INT64_MAX) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else {
            struct timespec ts = mproc__abs_timespec(until);
            if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT && !rt->sup_exited)
                return -ETIMEDOUT;
        }
    }
    return 0;
}

static int local_join(mproc_pool *p, int64_t deadline, bool intr)
{
    local_rt *rt = RT(p);
    if (in_supervisor(rt)) return -EDEADLK; /* from a done-callback: it would wait for itself */
    pthread_mutex_lock(&p->mu);
    rt->req_exit = true;
    efd_write(rt->shm->ctl_efd);
    int r = intr ? mproc__intr_sleep(sup_exit_step, p, deadline) : sup_exit_step(p, deadline);
    if (r < 0) {
        pthread_mutex_unlock(&p->mu);
        return r;
    }
    bool need_join = rt->sup_started && !rt->sup_joined;
    rt->sup_joined = true;
    pthread_mutex_unlock(&p->mu);
    if (need_join) {
        pthread_join(rt->sup, NULL);
        stop_relay(rt);
    }
    pthread_mutex_lock(&p->mu);
    /* Every worker is gone: nothing can write a record any more. */
    for (uint32_t i = 0; i < rt->shm->nseats; i++) {
        unquarantine_locked(p, rt->seats[i].quarantined);
        rt->seats[i].quarantined = MPROC__SLOT_NONE;
    }
    mproc__future_scan_watch(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void local_notify(mproc_pool *p)
{
    efd_write(RT(p)->shm->ctl_efd);
}

static void local_for_queued(mproc_pool *p, void (*fn)(mproc_pool *, uint32_t, void *), void *arg)
{
    mproc__pool_shm *shm = RT(p)->shm;
    uint64_t t = atomic_load(&shm->tail);
    for (uint64_t h = atomic_load(&shm->head); h < t; h++)
        fn(p, mproc__q_idx(atomic_load(&shm->q[h & (MPROC__LOCAL_QUEUE_CAP - 1)])), arg);
}

static int local_worker_pids(mproc_pool *p, pid_t *pids, int cap)
{
    local_rt *rt = RT(p);
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < rt->shm->nseats; i++) {
        if (!rt->seats[i].alive) continue;
        if (n < cap) pids[n] = rt->seats[i].pid;
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

static bool local_seat_stats(mproc_pool *p, uint32_t i, mproc__stat_line **line, pid_t *pid)
{
    local_rt *rt = RT(p);
    if (i >= rt->span) return false;
    *line = &rt->shm->seats[i].st;
    *pid = rt->seats[i].alive ? rt->seats[i].pid : 0;
    return true;
}

static int local_resize(mproc_pool *p, int n)
{
    local_rt *rt = RT(p);
    if (n < 1 || (uint32_t)n > rt->shm->nseats) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    rt->target = (uint32_t)n;
    for (uint32_t i = 0; i < rt->shm->nseats; i++)
        atomic_store(&rt->shm->seats[i].leave, i >= rt->target);
    if (rt->span < rt->target) rt->span = rt->target;
    pthread_mutex_unlock(&p->mu);
    wake_all_workers(rt->shm);   /* sleepers past the target leave */
    efd_write(rt->shm->ctl_efd); /* the supervisor starts the new seats' workers */
    return 0;
}

static void local_destroy(mproc_pool *p)
{
    local_rt *rt = RT(p);
    if (!rt) return;
    stop_relay(rt);
    if (rt->shm->ctl_efd >= 0) close(rt->shm->ctl_efd);
    mproc__arena_free(rt->shm->q);
    mproc__arena_free(rt->shm_block);
    free(rt->seats);
    free(rt->deaths);
    free(rt);
    p->backend_state = NULL;
}

const mproc__pool_backend mproc__pool_local_backend = {
    .name = "local",
    .start = local_start,
    .send = local_send,
    .close = local_close,
    .join = local_join,
    .terminate = local_terminate,
    .notify = local_notify,
    .for_queued = local_for_queued,
    .worker_pids = local_worker_pids,
    .seat_stats = local_seat_stats,
    .resize = local_resize,
    .destroy = local_destroy,
};
