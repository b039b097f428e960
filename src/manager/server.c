/* The manager server's event loop: one thread, epoll, non-blocking sockets. A connection passes
 * Python's authkey handshake as a state machine (so a slow or silent client holds up nobody, and
 * has hs_deadline to finish), then sends requests that objects.c answers; replies are buffered and
 * written as the socket takes them. A client whose replies pile up (it does not read) is not read
 * from until they drain, so it cannot make the server buffer without bound. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/conn.h"
#include "manager/server.h"
#include "platform/platform.h"

#define READ_CHUNK ((size_t)64 << 10)
#define THROTTLE_BYTES ((size_t)8 << 20) /* unsent replies past which a client is not read */
#define SHRINK_BYTES ((size_t)4 << 20)   /* an idle connection keeps buffers up to this size */
/* Quick ACKs are asked for on a connection's first reads (the handshake and a Python client's
 * one-request connections, where a delayed ACK stalls 40 ms); later an ACK rides on the reply. */
#define QUICKACK_READS 16
#define TICK_NS 2000000 /* parked calls look again this often, for changes made in the arena */
/* Handshakes in progress at once: a new client past that drops the oldest, so a flood of silent
 * clients (each holds its slot up to handshake_timeout) cannot lock out good ones. The listener's
 * default bound too. */
#define MAX_HANDSHAKES MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES

/* epoll tags: the listener, the watched pidfd and the signalfd have fixed ones. */
static char tag_listener, tag_watch, tag_signal;

static void conn_events(mgr_srv *s, mgr_conn *c)
{
    bool out = c->out_len > c->out_off;
    struct epoll_event ev = {
        .events = (c->throttled ? 0 : EPOLLIN) | (out ? EPOLLOUT : 0) | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->polling_out = out;
}

/* The handshake is over (passed, dropped, or the connection goes): out of the queue of those in
 * progress, if still there. */
static void hs_leave(mgr_srv *s, mgr_conn *c)
{
    if (!c->hs_prev && s->hs_oldest != c) return;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        s->hs_oldest = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        s->hs_newest = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
    s->nhandshaking--;
}

static void conn_close(mgr_srv *s, mgr_conn *c)
{
    if (c->ready)
        mgr_conn_gone(s, c);
    else
        hs_leave(s, c);
    /* Out of the epoll set before the close: a process forked meanwhile (thread start method:
     * the server shares the program's fd table) may hold the socket too, and epoll keeps
     * reporting a description until its last fd is closed, with this freed connection as data. */
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    free(c->in);
    free(c->out);
    free(c);
}

/* Write what the socket takes. 0, or -1 when the connection broke. */
static int conn_flush(mgr_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = c->pass_arena
                        ? mgr_share_send(c->fd, c->out + c->out_off, c->out_len - c->out_off)
                        : send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) c->pass_arena = false;
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > SHRINK_BYTES) { /* a large reply went out: give its memory back */
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    return 0;
}

/* Room for n more bytes in the output buffer (moving unsent bytes to its front first). */
static int out_reserve(mgr_conn *c, size_t n)
{
    if (c->out_off && c->out_cap - c->out_len < n) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_cap - c->out_len >= n) return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap - c->out_len < n)
        cap *= 2;
    unsigned char *p = realloc(c->out, cap);
    if (!p) return -ENOMEM;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

unsigned char *mgr_reply_begin(mgr_conn *c, size_t cap)
{
    if (c->dead || out_reserve(c, sizeof(mproc__mgr_rep) + cap) < 0) {
        c->dead = true;
        return NULL;
    }
    return c->out + c->out_len + sizeof(mproc__mgr_rep);
}

void mgr_reply_end(mgr_conn *c, uint32_t id, int32_t status, size_t len)
{
    if (c->dead) return;
    mproc__mgr_rep h = {.len = (uint32_t)len, .id = id, .status = status};
    memcpy(c->out + c->out_len, &h, sizeof h);
    c->out_len += sizeof h + len;
}

void mgr_reply(mgr_conn *c, uint32_t id, int32_t status, const void *body, size_t len)
{
    unsigned char *p = mgr_reply_begin(c, len);
    if (!p) return;
    if (len) memcpy(p, body, len);
    mgr_reply_end(c, id, status, len);
}

int mgr_send_frame(mgr_conn *c, const void *m, size_t len)
{
    unsigned char h[MPROC__CONN_FRAME_HEADER_MAX];
    size_t hl = mproc__frame_header(len, h);
    if (out_reserve(c, hl + len) < 0) return -ENOMEM;
    memcpy(c->out + c->out_len, h, hl);
    memcpy(c->out + c->out_len + hl, m, len);
    c->out_len += hl + len;
    return 0;
}

/* One handshake message received (mproc__auth_srv_step, shared with the listener): 0, or -1 to
 * drop the connection. */
static int handshake_step(mgr_srv *s, mgr_conn *c, const unsigned char *m, size_t len)
{
    unsigned char out[MPROC__AUTH_MSG_MAX];
    size_t ol;
    int r = mproc__auth_srv_step(&c->hs, s->key, s->keylen, m, len, out, &ol);
    if (ol && mgr_send_frame(c, out, ol) < 0) return -1;
    if (r < 0) {
        conn_flush(c); /* best effort: the peer learns why we hang up */
        return -1;
    }
    if (r == 1) {
        c->ready = true;
        hs_leave(s, c);
    }
    return 0;
}

/* The first message after the handshake picks the dialect: a Python client's is a frame (a
 * big-endian length) holding a pickle (PROTO 2..5); a native client's is a HELLO request, whose
 * little-endian header starts with its body's length, 4 (so byte 0 is 4, never a Python frame's
 * high byte, 0 below 16 MiB). */
static bool is_pickle_frame(const unsigned char *p)
{
    return p[0] == 0 && p[4] == 0x80 && p[5] >= 2 && p[5] <= 5;
}

int mgr_conn_parse(mgr_srv *s, mgr_conn *c)
{
    size_t off = 0;
    while (!c->dead && !s->stop) {
        size_t have = c->in_len - off;
        const unsigned char *p = c->in + off;
        if (!c->ready) {
            if (have < 4) break;
            uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            if (n > MPROC__AUTH_MSG_MAX) return -1;
            if (have < 4 + (size_t)n) break;
            if (handshake_step(s, c, p + 4, n) < 0) return -1;
            off += 4 + n;
            continue;
        }
        if (c->dialect == DIALECT_UNKNOWN) {
            if (have < 6) break;
            c->dialect = is_pickle_frame(p) ? DIALECT_PYTHON : DIALECT_NATIVE;
        }
        mproc__mgr_req h;
        size_t hlen, blen;
        if (c->dialect == DIALECT_PYTHON) {
            /* Python's framing: a big-endian length (-1: a 64-bit one follows) and a pickle */
            if (have < 4) break;
            uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            if (n == UINT32_MAX) return -1; /* over 2 GiB: past any max_message */
            hlen = 4;
            blen = n;
        } else {
            if (have < sizeof(mproc__mgr_req)) break;
            memcpy(&h, p, sizeof h);
            hlen = sizeof h;
            blen = h.len;
        }
        if (blen > s->o.max_message) return -1; /* refused before any allocation */
        if (have < hlen + blen) {
            /* make room for the whole message, now that its size is known to be allowed */
            size_t need = hlen + blen;
            if (off) {
                memmove(c->in, p, have);
                c->in_len = have;
                off = 0;
            }
            if (c->in_cap < need) {
                unsigned char *q = realloc(c->in, need);
                if (!q) return -1;
                c->in = q;
                c->in_cap = need;
            }
            break;
        }
        if (c->dialect == DIALECT_PYTHON)
            mgr_py_request(s, c, p + hlen, blen);
        else
            mgr_dispatch(s, c, &h, p + hlen);
        off += hlen + blen;
        /* a client that does not read its replies: stop reading it until they drain */
        if (c->out_len - c->out_off > THROTTLE_BYTES) {
            c->throttled = true;
            break;
        }
    }
    if (c->dead) return -1;
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > SHRINK_BYTES) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static int conn_read(mgr_srv *s, mgr_conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < READ_CHUNK && c->in_cap < c->in_len + READ_CHUNK) {
            size_t cap = c->in_cap ? c->in_cap : READ_CHUNK;
            while (cap - c->in_len < READ_CHUNK)
                cap *= 2;
            unsigned char *q = realloc(c->in, cap);
            if (!q) return -1;
            c->in = q;
            c->in_cap = cap;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        if (r == 0) return -1; /* the client closed */
        if (c->tcp && c->quickacks < QUICKACK_READS) {
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
            c->quickacks++;
        }
        c->in_len += (size_t)r;
        if (mgr_conn_parse(s, c) < 0) return -1;
        if (c->throttled || s->stop || (size_t)r < READ_CHUNK) return 0;
    }
}

/* No Nagle and no delayed ACK: Python's managers lose 40 ms per new connection to them. The
 * kernel drops quick-ACK mode by itself, so it is asked for again after reads (conn_read).
 * Whether it is a TCP socket. */
static bool set_tcp_opts(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one) == 0;
}

static void accept_all(mgr_srv *s, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of fds: the rest wait in the backlog */
        }
        if (s->nconns >= s->o.max_connections) {
            close(fd); /* over the limit: refused before anything is allocated */
            continue;
        }
        bool tcp = set_tcp_opts(fd); /* fails harmlessly on a unix socket */
        mgr_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->tcp = tcp;
        c->ready = !s->has_key;
        if (s->has_key) {
            if (mproc__auth_srv_start(&c->hs) < 0 ||
                mgr_send_frame(c, c->hs.challenge, MPROC__AUTH_CHALLENGE_LEN) < 0) {
                free(c->out);
                free(c);
                close(fd);
                continue;
            }
            if (s->nhandshaking >= MAX_HANDSHAKES) {
                /* closed by the flush pass after this batch: events of it may still follow */
                s->hs_oldest->dead = true;
                hs_leave(s, s->hs_oldest);
            }
            c->hs_deadline = mproc__deadline(s->o.handshake_timeout);
            c->hs_prev = s->hs_newest;
            if (s->hs_newest)
                s->hs_newest->hs_next = c;
            else
                s->hs_oldest = c;
            s->hs_newest = c;
            s->nhandshaking++;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0 || conn_flush(c) < 0) {
            conn_close(s, c);
            continue;
        }
        if (c->out_len) conn_events(s, c);
    }
}

/* Handshakes past their deadline are dropped (they share one timeout, so those are the oldest);
 * the earliest remaining deadline. */
static int64_t handshake_deadlines(mgr_srv *s)
{
    int64_t now = mproc__now_ns();
    while (s->hs_oldest && s->hs_oldest->hs_deadline <= now)
        conn_close(s, s->hs_oldest);
    return s->hs_oldest ? s->hs_oldest->hs_deadline : INT64_MAX;
}

static mproc_manager_opts effective(const mproc_manager_opts *o)
{
    mproc_manager_opts e = o ? *o : (mproc_manager_opts){0};
    if (!e.max_message) e.max_message = MPROC_MANAGER_DEFAULT_MAX_MESSAGE;
    if (!e.max_objects) e.max_objects = MPROC_MANAGER_DEFAULT_MAX_OBJECTS;
    if (!e.max_connections) e.max_connections = MPROC_MANAGER_DEFAULT_MAX_CONNECTIONS;
    if (!e.max_parked) e.max_parked = MPROC_MANAGER_DEFAULT_MAX_PARKED;
    if (e.handshake_timeout == 0) e.handshake_timeout = MPROC_CONN_DEFAULT_HANDSHAKE_TIMEOUT;
    if (e.max_message > UINT32_MAX - 64) e.max_message = UINT32_MAX - 64;
    e.share_arena = mgr_share_policy(e.share_arena);
    return e;
}

int mproc__mgr_serve(const char *address, const void *key, size_t keylen, bool has_key,
                     const mproc_manager_opts *opts, int watch_fd, bool quit_on_sigint,
                     void (*ready)(const char *address, int code, void *arg), void *arg)
{
    mgr_srv s = {.o = effective(opts),
                 .key = key,
                 .keylen = keylen,
                 .has_key = has_key,
                 .next_wake = INT64_MAX};
    mproc_listener *l = NULL;
    int sfd = -1, r;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    if (quit_on_sigint) sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    if (s.ep < 0) {
        r = -errno;
        goto out;
    }
    if ((r = mgr_objects_init(&s)) < 0) goto out;
    if ((r = mproc_listener_new(&l, address, NULL, 0)) < 0) goto out;
    sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    int lfd = mproc_listener_fd(l);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listener};
    epoll_ctl(s.ep, EPOLL_CTL_ADD, lfd, &ev);
    if (watch_fd >= 0) {
        ev.data.ptr = &tag_watch;
        epoll_ctl(s.ep, EPOLL_CTL_ADD, watch_fd, &ev);
    }
    if (sfd >= 0) {
        ev.data.ptr = &tag_signal;
        epoll_ctl(s.ep, EPOLL_CTL_ADD, sfd, &ev);
    }
    if (ready) ready(mproc_listener_address(l), 0, arg);
    ready = NULL;

    struct epoll_event evs[64];
    int64_t tick_at = 0;
    while (!s.stop) {
        int64_t next = INT64_MAX;
        if (s.nparked) next = s.next_wake < tick_at ? s.next_wake : tick_at;
        if (s.nhandshaking) {
            int64_t h = handshake_deadlines(&s);
            if (h < next) next = h;
        }
        int ms = next == INT64_MAX ? -1 : mproc__poll_ms(next);
        int n = epoll_wait(s.ep, evs, 64, ms);
        if (n < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
        for (int i = 0; i < n && !s.stop; i++) {
            void *t = evs[i].data.ptr;
            if (t == &tag_listener) {
                accept_all(&s, lfd);
                continue;
            }
            if (t == &tag_watch || t == &tag_signal) {
                /* consume the signal, or it would be delivered (and kill) once unblocked */
                struct signalfd_siginfo si;
                if (t == &tag_signal && read(sfd, &si, sizeof si) < 0) {
                }
                s.stop = true;
                break;
            }
            mgr_conn *c = t;
            if (c->dead) continue;
            bool bad = false;
            if (evs[i].events & EPOLLIN)
                bad = conn_read(&s, c) < 0;
            else if (evs[i].events & (EPOLLERR | EPOLLHUP))
                bad = true;
            if (bad) c->dead = true;
        }
        /* parked calls: every one again on the tick, or when one's deadline passed (a request
         * that may free one retries those on its object at once, objects.c) */
        if (s.nparked) {
            int64_t now = mproc__now_ns();
            if (now >= tick_at || now >= s.next_wake) {
                mgr_wake(&s, NULL);
                tick_at = now + TICK_NS;
            }
        }
        /* Flush every connection with replies waiting (replies to parked calls may go to any). */
        for (mgr_conn *c = s.conns, *nx; c; c = nx) {
            nx = c->next;
            if (c->dead || conn_flush(c) < 0) {
                conn_close(&s, c);
                continue;
            }
            bool was = c->throttled;
            if (c->throttled && c->out_len - c->out_off <= THROTTLE_BYTES / 2) {
                c->throttled = false;
                /* what arrived while it was throttled is still in the buffer */
                if (mgr_conn_parse(&s, c) < 0 || conn_flush(c) < 0) {
                    conn_close(&s, c);
                    continue;
                }
            }
            if ((c->out_len > c->out_off) != c->polling_out || was != c->throttled)
                conn_events(&s, c);
        }
        r = 0;
    }
    /* best effort: replies already made (a shutdown's) reach their clients */
    for (mgr_conn *c = s.conns; c; c = c->next)
        conn_flush(c);
out:
    if (ready) ready(NULL, r, arg);
    while (s.conns)
        conn_close(&s, s.conns);
    mgr_objects_destroy(&s);
    mproc_listener_free(l);
    if (sfd >= 0) close(sfd);
    if (s.ep >= 0) close(s.ep);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}
