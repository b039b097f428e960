/* The server's side of many authkey handshakes at once, for a keyed listener's accept: one
 * non-blocking state machine per pending connection (mproc__auth_srv_step), driven by one epoll
 * set, so a client that connects and says nothing holds up nobody but itself. At most max run at
 * once; a new client past that drops the oldest, so a flood of silent clients cannot lock out the
 * good ones (they only age the queue).
 *
 * The epoll set holds the listening socket, the pending sockets and a timerfd that fires when a
 * handshake's deadline passes or a result is waiting, so the set's fd is readable exactly when a
 * round (mproc__hs_next) can make progress: what mproc_listener_fd gives event loops. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "channel/conn.h"
#include "platform/platform.h"

#define ACCEPT_BATCH 64 /* new clients taken per round, so the pending ones progress too */
#define FRAME_MAX (4 + MPROC__AUTH_MSG_MAX)

typedef struct {
    int fd;
    bool polling_out;
    int64_t deadline;
    mproc__auth_srv hs;
    size_t in_len;
    unsigned char in[FRAME_MAX];
    size_t out_off, out_len;
    unsigned char out[2 * FRAME_MAX];
} pending;

struct mproc__hs_set {
    pthread_mutex_t mu; /* thread mode: threads that stand for processes share the listener */
    int lfd, ep, tfd;
    bool tcp;
    pid_t owner; /* the process whose pending state this is: a fork child starts its own */
    const unsigned char *key;
    size_t keylen;
    double timeout;
    size_t max, n, cap;
    pending **hs; /* oldest first */
    int *done;    /* sockets whose handshake passed, first first */
    size_t ndone, done_cap;
    int failure; /* a failed handshake's code, not reported yet (0: none) */
};

/* epoll tags of the two fixed members (pending sockets carry their pending). */
static char tag_listen, tag_timer;

static int add_fixed(mproc__hs_set *s)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) < 0) return -errno;
    ev.data.ptr = &tag_timer;
    return epoll_ctl(s->ep, EPOLL_CTL_ADD, s->tfd, &ev) < 0 ? -errno : 0;
}

int mproc__hs_new(mproc__hs_set **out, int lfd, bool tcp, const void *key, size_t keylen,
                  double timeout)
{
    mproc__hs_set *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = lfd;
    s->tcp = tcp;
    s->key = key;
    s->keylen = keylen;
    s->timeout = timeout;
    s->max = MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES;
    s->owner = getpid();
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int r = (s->ep < 0 || s->tfd < 0) ? -errno : add_fixed(s);
    if (r < 0) {
        mproc__hs_free(s);
        return r;
    }
    *out = s;
    return 0;
}

int mproc__hs_fd(const mproc__hs_set *s)
{
    return s->ep;
}

/* Out of the set before the close: a process forked meanwhile may hold the socket too, and epoll
 * reports a description until its last fd is closed, with this freed pending as data. */
static void forget(mproc__hs_set *s, size_t i, bool close_it)
{
    pending *p = s->hs[i];
    epoll_ctl(s->ep, EPOLL_CTL_DEL, p->fd, NULL);
    if (close_it) close(p->fd);
    free(p);
    memmove(s->hs + i, s->hs + i + 1, (s->n - i - 1) * sizeof *s->hs);
    s->n--;
}

static void drop_all(mproc__hs_set *s, bool owner)
{
    for (size_t i = 0; i < s->n; i++) {
        if (owner) epoll_ctl(s->ep, EPOLL_CTL_DEL, s->hs[i]->fd, NULL);
        close(s->hs[i]->fd);
        free(s->hs[i]);
    }
    s->n = 0;
    for (size_t i = 0; i < s->ndone; i++)
        close(s->done[i]);
    s->ndone = 0;
    s->failure = 0;
}

void mproc__hs_free(mproc__hs_set *s)
{
    if (!s) return;
    /* a fork child must not edit the epoll set it shares with its parent: only close its copies */
    drop_all(s, getpid() == s->owner);
    if (s->ep >= 0) close(s->ep);
    if (s->tfd >= 0) close(s->tfd);
    free(s->hs);
    free(s->done);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A fork child got copies of the parent's pending sockets and the parent's epoll set and timer
 * (shared descriptions: editing them would edit the parent's). It closes its copies and makes a
 * set of its own at the same fd numbers, which callers may have kept (mproc_listener_fd). */
static int adopt_after_fork(mproc__hs_set *s)
{
    drop_all(s, false);
    int ep = epoll_create1(EPOLL_CLOEXEC),
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int r = (ep < 0 || tfd < 0) ? -errno : 0;
    if (r == 0 && (dup3(ep, s->ep, O_CLOEXEC) < 0 || dup3(tfd, s->tfd, O_CLOEXEC) < 0)) r = -errno;
    if (ep >= 0) close(ep);
    if (tfd >= 0) close(tfd);
    if (r == 0) r = add_fixed(s);
    if (r == 0) s->owner = getpid();
    return r;
}

void mproc__hs_set_max(mproc__hs_set *s, size_t max)
{
    pthread_mutex_lock(&s->mu);
    if (s->owner == getpid()) {
        while (s->n > max)
            forget(s, 0, true); /* the oldest go first, as when a new client finds it full */
    }
    s->max = max;
    pthread_mutex_unlock(&s->mu);
}

static void queue_frame(pending *p, const void *m, size_t len)
{
    if (p->out_len + MPROC__CONN_FRAME_HEADER_MAX + len > sizeof p->out)
        return; /* never: 2 frames */
    p->out_len += mproc__frame_header(len, p->out + p->out_len);
    memcpy(p->out + p->out_len, m, len);
    p->out_len += len;
}

/* Send what the socket takes: 0, or MPROC_ECLOSED when the peer is gone. */
static int flush(pending *p)
{
    while (p->out_off < p->out_len) {
        ssize_t w =
            send(p->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return MPROC_ECLOSED;
        }
        p->out_off += (size_t)w;
    }
    p->out_off = p->out_len = 0;
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Advance one handshake as far as its socket allows: 0 (waits for the peer), 1 passed, or the
 * failure's code. Reads stop at the end of each handshake message: what the client sends after
 * its last one is the application's. */
static int advance(mproc__hs_set *s, pending *p)
{
    for (;;) {
        if (flush(p) < 0) return MPROC_ECLOSED;
        size_t want = 4;
        if (p->in_len >= 4) {
            uint32_t n = be32(p->in);
            /* refused from its header, as CPython's recv_bytes(256) (the -1 of a long frame too) */
            if (n > MPROC__AUTH_MSG_MAX) return MPROC_EAUTH;
            want = 4 + n;
        }
        if (p->in_len < want) {
            ssize_t r = recv(p->fd, p->in + p->in_len, want - p->in_len, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                return errno == ECONNRESET ? MPROC_ECLOSED : -errno;
            }
            if (r == 0) return MPROC_ECLOSED;
            p->in_len += (size_t)r;
            continue;
        }
        unsigned char o[MPROC__AUTH_MSG_MAX];
        size_t ol;
        int r = mproc__auth_srv_step(&p->hs, s->key, s->keylen, p->in + 4, want - 4, o, &ol);
        p->in_len = 0;
        if (ol) queue_frame(p, o, ol);
        if (r < 0) {
            flush(p); /* best effort: the peer learns why we hang up */
            return r;
        }
        if (r == 1) return p->out_len ? MPROC_EAUTH : 1; /* the peer read everything we sent */
    }
    /* a reply the socket did not take yet (never for a handful of bytes, but be exact) */
    bool out = p->out_len > p->out_off;
    if (out != p->polling_out) {
        struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = p};
        epoll_ctl(s->ep, EPOLL_CTL_MOD, p->fd, &ev);
        p->polling_out = out;
    }
    return 0;
}

static void finish(mproc__hs_set *s, size_t i, int r)
{
    if (r == 1 && s->ndone == s->done_cap) {
        size_t cap = s->done_cap ? s->done_cap * 2 : 8;
        int *d = realloc(s->done, cap * sizeof *d);
        if (!d) r = -ENOMEM;
        if (d) {
            s->done = d;
            s->done_cap = cap;
        }
    }
    if (r == 1) s->done[s->ndone++] = s->hs[i]->fd;
    if (r < 0) s->failure = r;
    forget(s, i, r != 1);
}

static void take_new(mproc__hs_set *s)
{
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            /* EAGAIN: none left (or another process took it); else (out of fds) say why */
            if (errno != EAGAIN && errno != EWOULDBLOCK) s->failure = -errno;
            return;
        }
        if (s->tcp) { /* the handshake's small messages, and then the application's */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            pending **h = realloc(s->hs, cap * sizeof *h);
            if (!h) {
                close(fd);
                s->failure = -ENOMEM;
                return;
            }
            s->hs = h;
            s->cap = cap;
        }
        if (s->n >= s->max) forget(s, 0, true); /* full: the oldest makes room */
        pending *p = calloc(1, sizeof *p);
        int r = p ? mproc__auth_srv_start(&p->hs) : -ENOMEM;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
        if (r == 0 && epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) r = -errno;
        if (r < 0) {
            close(fd);
            free(p);
            s->failure = r;
            continue;
        }
        p->fd = fd;
        p->deadline = mproc__deadline(s->timeout);
        queue_frame(p, p->hs.challenge, MPROC__AUTH_CHALLENGE_LEN);
        s->hs[s->n++] = p;
        if ((r = advance(s, p)) != 0) finish(s, s->n - 1, r);
    }
}

/* The timer fires at the earliest deadline, or at once while a result waits to be taken. */
static void arm(mproc__hs_set *s)
{
    struct itimerspec its = {0};
    if (s->ndone || s->failure)
        its.it_value.tv_nsec = 1; /* long past: fires now */
    else if (s->n && s->hs[0]->deadline != INT64_MAX)
        its.it_value = mproc__abs_timespec(s->hs[0]->deadline);
    timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int take_result(mproc__hs_set *s)
{
    if (s->ndone) {
        int fd = s->done[0];
        memmove(s->done, s->done + 1, --s->ndone * sizeof *s->done);
        return fd;
    }
    int r = s->failure;
    s->failure = 0;
    return r ? r : -EAGAIN;
}

/* One round: accept what waits, advance what can, expire what is late (handshakes age in order
 * and share one timeout, so the late ones are the oldest). */
static void round_once(mproc__hs_set *s)
{
    struct epoll_event evs[64];
    int ne = epoll_wait(s->ep, evs, 64, 0);
    bool listen = false;
    for (int i = 0; i < ne; i++) {
        void *t = evs[i].data.ptr;
        if (t == &tag_listen) {
            listen = true;
        } else if (t == &tag_timer) {
            uint64_t ticks;
            if (read(s->tfd, &ticks, sizeof ticks) < 0) { /* not expired after all: fine */
            }
        } else {
            /* its place in the age order (a few dozen at most) */
            for (size_t j = 0; j < s->n; j++) {
                if (s->hs[j] != t) continue;
                int r = advance(s, t);
                if (r != 0) finish(s, j, r);
                break;
            }
        }
    }
    /* after the pending ones: a new client may drop the oldest, whose event is then not stale */
    if (listen) take_new(s);
    int64_t now = mproc__now_ns();
    while (s->n && s->hs[0]->deadline <= now)
        finish(s, 0, -ETIMEDOUT);
}

int mproc__hs_next(mproc__hs_set *s)
{
    pthread_mutex_lock(&s->mu);
    int r = 0;
    if (s->owner != getpid()) r = adopt_after_fork(s);
    if (r == 0 && (r = take_result(s)) == -EAGAIN) {
        round_once(s);
        r = take_result(s);
    }
    arm(s);
    pthread_mutex_unlock(&s->mu);
    return r;
}
