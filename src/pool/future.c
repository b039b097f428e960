/* Futures: process-local handles on task records.
 *
 * Waiting on one future needs no help from anyone (mproc__slot_wait, slots.c): the waiter spins
 * briefly on the record's state, then sets the WAITER bit and sleeps on the state word itself (a
 * shared futex), and whoever completes the record wakes it. Everything that must react to a
 * completion without a waiter — done-callbacks, a future's eventfd, futures_wait(FIRST_COMPLETED),
 * records whose future was freed early — goes through the pool's watch list: the record is flagged
 * MPROC__SLOT_NOTIFY, its worker then tells the supervisor (the local backend: a futex word that
 * a relay thread turns into an eventfd write), and the supervisor thread "fires" it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "platform/interrupt.h"
#include "pool/backend.h"
#include "pool/future.h"

static bool future_valid(const mproc_future *f)
{
    return f && f->magic == MPROC__FUTURE_MAGIC && (f->flags & MPROC__FUTURE_LIVE) &&
           !(f->flags & MPROC__FUTURE_ORPHAN);
}

static mproc__slot *slot_of(const mproc_future *f)
{
    return mproc__slot_at(f->pool->slot_chunks, f->idx);
}

/* ---- waiting: Ctrl-C reaches the caller (interrupt.h) ----
 * A wait first looks for its spin window with signals as the caller has them: a task that ends
 * meanwhile (every hand-over between busy peers) then costs no system call, where two mask changes
 * cost ~0.4 µs on a VM. Before it sleeps it blocks signals and sleeps in steps: a signal that came
 * after that is seen within MPROC__INTR_POLL_NS and the call returns -EINTR, its handler running
 * as the mask comes back; one whose handler ran during the spin is not reported (the rule and its
 * window: docs/conventions.md, Signals). A task done by then wins: its result is returned. */

int mproc__wait_step(void *a, int64_t step)
{
    mproc__wait_arg *w = a;
    return w->p->backend->wait ? w->p->backend->wait(w->p, w->s, step, &w->state)
                               : mproc__slot_sleep(w->s, step);
}

/* A backend that helps its transport along while a caller waits (the remote one) waits in
 * it from the start: its spin is that help, for the same window and with the caller's mask too
 * (blocking signals for every apply would cost more than the rest of rank 0's share of it). */
static int wait_slot(mproc_pool *p, mproc__slot *s, int64_t deadline)
{
    if (mproc__slot_done(s)) return 0;
    mproc__wait_arg w = {p, s, 0};
    if (!p->backend->wait) {
        int r = mproc__slot_spin(s, deadline);
        if (r == 0 || deadline <= mproc__now_ns()) return r;
    } else {
        int64_t end = mproc__now_ns() + MPROC__SLOT_WAIT_SPIN_NS;
        int r = mproc__wait_step(&w, end < deadline ? end : deadline);
        if (r != -ETIMEDOUT || deadline <= mproc__now_ns()) return r;
    }
    return mproc__intr_sleep(mproc__wait_step, &w, deadline);
}

int mproc_future_wait(mproc_future *f, double timeout)
{
    if (!future_valid(f) || mproc__timeout_check(timeout)) return -EINVAL;
    mproc__slot *s = slot_of(f);
    return mproc__slot_done(s) ? 0 : wait_slot(f->pool, s, mproc__deadline(timeout));
}

bool mproc_future_done(mproc_future *f)
{
    return future_valid(f) && mproc__slot_done(slot_of(f));
}

int mproc_future_get(mproc_future *f, void *buf, size_t cap, size_t *len, double timeout)
{
    if (len) *len = 0;
    if (!future_valid(f) || (!buf && cap) || mproc__timeout_check(timeout)) return -EINVAL;
    mproc__slot *s = slot_of(f);
    /* Done already (every get while the pool has work in flight): no deadline, no clock read. */
    int r = mproc__slot_done(s) ? 0 : wait_slot(f->pool, s, mproc__deadline(timeout));
    if (r < 0) return r;
    r = mproc__slot_code(s);
    if (r != 0) return r;
    size_t n = s->res_len;
    if (len) *len = n;
    if (n > cap) return -EMSGSIZE;
    mproc__copy_small(buf, n <= MPROC__SLOT_INLINE ? (const void *)s->inline_buf : s->res_ext, n);
    return 0;
}

int mproc_future_result(mproc_future *f, const void **data, size_t *len)
{
    if (!future_valid(f) || !data) return -EINVAL;
    mproc__slot *s = slot_of(f);
    if (!mproc__slot_done(s)) return -EAGAIN;
    int r = mproc__slot_code(s);
    if (r != 0) return r;
    *data = s->res_len <= MPROC__SLOT_INLINE ? (const void *)s->inline_buf : s->res_ext;
    if (len) *len = s->res_len;
    return 0;
}

void mproc__future_origin(mproc_future *f, mproc_error *out)
{
    mproc_pool *p = f->pool;
    out->rank = -1;
    memset(out->host, 0, sizeof out->host);
    if (p->backend->origin)
        out->rank = p->backend->origin(p, f->idx, out->host, sizeof out->host);
    else if (out->worker && gethostname(out->host, sizeof out->host - 1) < 0)
        out->host[0] = '\0';
}

int mproc_future_error(mproc_future *f, mproc_error *out)
{
    if (!future_valid(f) || !out) return -EINVAL;
    mproc__slot *s = slot_of(f);
    if (!mproc__slot_done(s)) return -EAGAIN;
    memset(out, 0, sizeof *out);
    out->exit_status = -1;
    out->rank = -1;
    uint32_t kind = MPROC__SLOT_KIND(atomic_load(&s->state));
    if (kind == MPROC__SLOT_DONE_OK) return 1;
    out->worker = s->pid;
    mproc__future_origin(f, out);
    if (kind == MPROC__SLOT_DONE_TASK_ERROR) {
        out->code = s->err_code;
        if (s->err_msg)
            snprintf(out->message, sizeof out->message, "%s", s->err_msg);
        else
            snprintf(out->message, sizeof out->message, "task failed: %s (%d)",
                     mproc_strerror(s->err_code), s->err_code);
    } else {
        out->code = s->sup_code;
        out->signal = s->sup_sig;
        out->exit_status = s->sup_status;
        snprintf(out->message, sizeof out->message, "%s",
                 s->sup_msg ? s->sup_msg : mproc_strerror(s->sup_code));
    }
    return 0;
}

int mproc_future_cancel(mproc_future *f)
{
    if (!future_valid(f)) return -EINVAL;
    mproc_pool *p = f->pool;
    mproc__slot *s = slot_of(f);
    pthread_mutex_lock(&p->mu);
    int r;
    if (mproc__slot_fail(p, f->idx, MPROC__SLOT_QUEUED, MPROC_ECANCELLED, 0, -1, 0, "cancelled")) {
        r = 0;
    } else if (mproc__slot_done(s)) {
        r = -EALREADY;
    } else {
        atomic_fetch_or(&s->flags, MPROC__SLOT_CANCEL);
        r = -EBUSY;
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void unlink_watch(mproc_pool *p, mproc_future *f)
{
    if (!(f->flags & MPROC__FUTURE_WATCHED)) return;
    if (f->watch_prev)
        f->watch_prev->watch_next = f->watch_next;
    else
        p->watch = f->watch_next;
    if (f->watch_next) f->watch_next->watch_prev = f->watch_prev;
    f->watch_next = f->watch_prev = NULL;
    f->flags &= ~(uint32_t)MPROC__FUTURE_WATCHED;
}

/* Put a future on the watch list (mu held): the backend will signal its completion. */
static void watch_locked(mproc_future *f)
{
    mproc_pool *p = f->pool;
    f->was_watched = true;
    if (f->flags & MPROC__FUTURE_WATCHED) return;
    f->flags |= MPROC__FUTURE_WATCHED;
    f->watch_prev = NULL;
    f->watch_next = p->watch;
    if (p->watch) p->watch->watch_prev = f;
    p->watch = f;
    mproc__slot *s = slot_of(f);
    /* Pairs with the worker's completion CAS and its load of the flags. */
    atomic_fetch_or(&s->flags, MPROC__SLOT_NOTIFY);
    if (mproc__slot_done(s)) p->backend->notify(p);
}

/* Done-processing of one finished watched record (mu held; dropped to run callbacks). */
static void fire_locked(mproc_pool *p, mproc_future *f)
{
    unlink_watch(p, f);
    if (f->flags & MPROC__FUTURE_ORPHAN) {
        if (!(f->flags & MPROC__FUTURE_QUARANTINE)) mproc__pool_release_locked(p, f);
        return;
    }
    if (f->flags & MPROC__FUTURE_FIRED) return;
    f->flags |= MPROC__FUTURE_FIRED | MPROC__FUTURE_FIRING;
    mproc__cb *cbs = f->callbacks;
    f->callbacks = NULL;
    if (cbs) {
        pthread_mutex_unlock(&p->mu);
        for (mproc__cb *c = cbs, *n; c; c = n) {
            n = c->next;
            c->fn(f, c->arg);
            free(c);
        }
        pthread_mutex_lock(&p->mu);
    }
    if (f->efd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(f->efd, &one, sizeof one);
        (void)w;
    }
    f->flags &= ~(uint32_t)MPROC__FUTURE_FIRING;
    pthread_cond_broadcast(&p->cv);
    mproc__completion_bump();
}

void mproc__future_scan_watch(mproc_pool *p)
{
    for (;;) {
        mproc_future *f = p->watch;
        while (f && !mproc__slot_done(slot_of(f)))
            f = f->watch_next;
        if (!f) return;
        fire_locked(p, f);
    }
}

int mproc_future_fd(mproc_future *f)
{
    if (!future_valid(f)) return -EINVAL;
    mproc_pool *p = f->pool;
    pthread_mutex_lock(&p->mu);
    int r = f->efd;
    if (r < 0) {
        r = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r < 0) {
            r = -errno;
        } else {
            f->efd = r;
            if (mproc__slot_done(slot_of(f)) && !(f->flags & MPROC__FUTURE_FIRING)) {
                uint64_t one = 1;
                ssize_t w = write(r, &one, sizeof one);
                (void)w;
            } else {
                watch_locked(f);
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

int mproc_future_on_done(mproc_future *f, void (*cb)(mproc_future *, void *), void *arg)
{
    if (!future_valid(f) || !cb) return -EINVAL;
    mproc_pool *p = f->pool;
    pthread_mutex_lock(&p->mu);
    while (f->flags & MPROC__FUTURE_FIRING)
        pthread_cond_wait(&p->cv, &p->mu);
    if (mproc__slot_done(slot_of(f))) {
        pthread_mutex_unlock(&p->mu);
        cb(f, arg);
        return 0;
    }
    mproc__cb *c = malloc(sizeof *c);
    if (!c) {
        pthread_mutex_unlock(&p->mu);
        return -ENOMEM;
    }
    c->fn = cb;
    c->arg = arg;
    c->next = NULL;
    mproc__cb **tail = &f->callbacks;
    while (*tail)
        tail = &(*tail)->next;
    *tail = c;
    watch_locked(f);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* futures_wait(FIRST_COMPLETED): one step of sleeping on the completion counter, which every
 * watched record's completion bumps. */
typedef struct {
    mproc_future **fs;
    size_t n;
} wait_set;

static bool any_done(const wait_set *w)
{
    for (size_t i = 0; i < w->n; i++)
        if (mproc__slot_done(slot_of(w->fs[i]))) return true;
    return false;
}

static int first_step(void *arg, int64_t step)
{
    const wait_set *w = arg;
    for (;;) {
        uint32_t g = atomic_load(&mproc__completion_gen);
        if (any_done(w)) return 0;
        if (mproc__futex_wait(&mproc__completion_gen, g, step) == -ETIMEDOUT)
            return any_done(w) ? 0 : -ETIMEDOUT;
    }
}

int mproc_futures_wait(mproc_future **fs, size_t n, int mode, double timeout)
{
    if ((n && !fs) || (mode != MPROC_FIRST_COMPLETED && mode != MPROC_ALL_COMPLETED) ||
        mproc__timeout_check(timeout))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!future_valid(fs[i])) return -EINVAL;
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
        done += mproc__slot_done(slot_of(fs[i]));
    if (done == n || (done && mode == MPROC_FIRST_COMPLETED)) return 0;
    if (timeout == 0) return -ETIMEDOUT;
    if (mode == MPROC_ALL_COMPLETED) {
        int64_t deadline = mproc__deadline(timeout);
        for (size_t i = 0; i < n; i++) {
            int r = wait_slot(fs[i]->pool, slot_of(fs[i]), deadline);
            if (r < 0) return r;
        }
        return 0;
    }
    wait_set w = {fs, n};
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&fs[i]->pool->mu);
        watch_locked(fs[i]);
        pthread_mutex_unlock(&fs[i]->pool->mu);
    }
    return mproc__intr_sleep(first_step, &w, mproc__deadline(timeout));
}

/* The common free, without the lock: a record done by its task, holding nothing but its inline
 * argument and result, whose future nobody else looks at (never watched: no callback, fd or
 * futures_wait, so the supervisor never touches it; no map staging). It goes on the pool's freed
 * list (pool.h), released under mu when the free list runs dry. DONE_OK is final: no failure
 * from outside (time limit, death: slot_fail) can change the record any more. */
static bool free_deferred(mproc_pool *p, mproc_future *f)
{
    mproc__slot *s = slot_of(f);
    if (f->was_watched || f->stage || f->efd >= 0 || f->callbacks ||
        atomic_load_explicit(&s->state, memory_order_acquire) != MPROC__SLOT_DONE_OK ||
        s->arg_ext || s->res_ext || s->err_msg || p->freed)
        return false;
    f->magic = MPROC__FUTURE_FREED_MAGIC;
    uint32_t head = atomic_load_explicit(&p->freed_list, memory_order_relaxed);
    do
        f->next_free = head;
    while (!atomic_compare_exchange_weak_explicit(&p->freed_list, &head, f->idx + 1,
                                                  memory_order_release, memory_order_relaxed));
    return true;
}

void mproc_future_free(mproc_future *f)
{
    if (!future_valid(f)) return;
    mproc_pool *p = f->pool;
    if (free_deferred(p, f)) return;
    pthread_mutex_lock(&p->mu);
    while (f->flags & MPROC__FUTURE_FIRING)
        pthread_cond_wait(&p->cv, &p->mu);
    unlink_watch(p, f);
    mproc__slot *s = slot_of(f);
    if (!mproc__slot_done(s))
        mproc__slot_fail(p, f->idx, MPROC__SLOT_QUEUED, MPROC_ECANCELLED, 0, -1, 0, "cancelled");
    if (!mproc__slot_done(s)) {
        /* Still running: the supervisor releases the record when it completes. */
        f->flags |= MPROC__FUTURE_ORPHAN;
        watch_locked(f);
    } else if (f->flags & MPROC__FUTURE_QUARANTINE) {
        f->flags |= MPROC__FUTURE_ORPHAN;
    } else {
        mproc__pool_release_locked(p, f);
    }
    bool last = p->freed && p->nlive == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) mproc__pool_destroy(p);
}
