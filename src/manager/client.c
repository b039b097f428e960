/* The client's connection to a manager: one per process, made on first use and again after a
 * fork (the child must not read its parent's replies) or once the connection broke.
 *
 * Requests carry ids and may be pipelined: threads of a process send theirs whenever they like
 * (under the mutex), and one of the waiting threads at a time reads replies for all of them,
 * handing each to its caller by id. A reply whose id nobody waits for (its caller gave up) is
 * dropped. An interruptible call interrupted by a signal handler sends CANCEL and waits for its
 * own reply, which comes at once: -ECANCELED, or the result if it won the race. So nothing is
 * ever left out of step, and nothing that was done is lost. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arena/arena.h"
#include "channel/pickle.h"
#include "manager/client.h"
#include "platform/interrupt.h"
#include "platform/platform.h"

struct mgr_wait {
    uint32_t id;
    bool done;
    mgr_result *res;
    mgr_wait *next;
};

static void fail_waits(mproc_manager *m)
{
    for (mgr_wait *w = m->waits; w; w = w->next) {
        w->done = true;
        w->res->status = -EPIPE;
    }
    m->waits = NULL;
    pthread_cond_broadcast(&m->cv);
}

void mgr_disconnect_locked(mproc_manager *m)
{
    if (m->conn) mproc_conn_close(m->conn);
    m->conn = NULL;
    m->fd = -1;
    m->in_len = 0;
    fail_waits(m);
}

static int send_all(int fd, struct iovec *v, int n)
{
    while (n > 0) {
        ssize_t w =
            sendmsg(fd, &(struct msghdr){.msg_iov = v, .msg_iovlen = (size_t)n}, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue; /* part of a frame may be out: finish it */
            return -EPIPE;
        }
        while (n > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (char *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Hand each complete reply in the input buffer to its waiter. */
static int deliver(mproc_manager *m)
{
    size_t off = 0;
    while (m->in_len - off >= sizeof(mproc__mgr_rep)) {
        mproc__mgr_rep h;
        memcpy(&h, m->in + off, sizeof h);
        if (h.len > m->max_message + 64) return MPROC_EPROTO;
        if (m->in_len - off < sizeof h + h.len) break;
        const unsigned char *body = m->in + off + sizeof h;
        mgr_wait **pp = &m->waits;
        while (*pp && (*pp)->id != h.id)
            pp = &(*pp)->next;
        if (*pp) {
            mgr_wait *w = *pp;
            mgr_result *r = w->res;
            r->status = h.status;
            r->len = h.len;
            if (h.status < 0) {
                memset(r->err, 0, sizeof r->err);
                memcpy(r->err, body, h.len < sizeof r->err ? h.len : sizeof r->err);
            } else if (h.len <= r->cap) {
                if (h.len) memcpy(r->buf, body, h.len);
            } else if (r->alloc) {
                *r->alloc = malloc(h.len);
                if (*r->alloc)
                    memcpy(*r->alloc, body, h.len);
                else
                    r->status = -ENOMEM;
            }
            *pp = w->next;
            w->done = true;
        }
        off += sizeof h + h.len;
    }
    if (off) {
        memmove(m->in, m->in + off, m->in_len - off);
        m->in_len -= off;
    }
    /* room for the next reply's whole body, once its header says how big it is */
    size_t need = m->in_len + 65536;
    if (m->in_len >= sizeof(mproc__mgr_rep)) {
        mproc__mgr_rep h;
        memcpy(&h, m->in, sizeof h);
        if (sizeof h + h.len > need) need = sizeof h + h.len;
    }
    if (m->in_cap < need) {
        unsigned char *p = realloc(m->in, need);
        if (!p) return -ENOMEM;
        m->in = p;
        m->in_cap = need;
    }
    return 0;
}

/* Read what is there, waiting for it: >0 bytes, -EINTR (intr only), or -EPIPE. Unlocked. A call
 * that is not interruptible (none that can wait for long) sleeps in recv itself: one system call
 * a reply. An interruptible one looks once, then sleeps in ppoll with the caller's mask
 * (docs/conventions.md, Signals). */
static ssize_t read_some(int fd, unsigned char *buf, size_t cap, bool intr)
{
    for (;;) {
        ssize_t r = recv(fd, buf, cap, intr ? MSG_DONTWAIT : 0);
        if (r > 0) return r;
        if (r == 0) return -EPIPE;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -EPIPE;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = mproc__intr_poll(&p, 1, INT64_MAX);
        if (pr == -EINTR) return -EINTR;
        if (pr < 0) return -EPIPE;
    }
}

/* Wait for w's reply, reading for everyone while no other thread does. Caller holds m->mu. */
static int await_reply(mproc_manager *m, mgr_wait *w, bool intr)
{
    bool cancelled = false;
    while (!w->done) {
        if (m->reading) {
            pthread_cond_wait(&m->cv, &m->mu);
            continue;
        }
        if (m->fd < 0) return -EPIPE;
        m->reading = true;
        int fd = m->fd;
        unsigned char *buf = m->in + m->in_len;
        size_t cap = m->in_cap - m->in_len;
        pthread_mutex_unlock(&m->mu);
        ssize_t r = read_some(fd, buf, cap, intr && !cancelled);
        pthread_mutex_lock(&m->mu);
        m->reading = false;
        if (r == -EINTR) {
            /* withdraw it; its reply (-ECANCELED, or the result if that came first) follows */
            cancelled = true;
            unsigned char b[4];
            mgr_put32(b, w->id);
            mproc__mgr_req h = {.len = 4, .id = 0, .op = MGR_CANCEL};
            struct iovec v[2] = {{&h, sizeof h}, {b, 4}};
            if (send_all(m->fd, v, 2) < 0) {
                mgr_disconnect_locked(m);
                return -EPIPE;
            }
        } else if (r < 0) {
            mgr_disconnect_locked(m);
        } else {
            m->in_len += (size_t)r;
            if (deliver(m) < 0) mgr_disconnect_locked(m);
        }
        pthread_cond_broadcast(&m->cv);
    }
    if (cancelled && w->res->status == -ECANCELED) w->res->status = -EINTR;
    return 0;
}

/* Send a request and wait for its reply. Caller holds m->mu and a live connection. */
static int roundtrip(mproc_manager *m, uint16_t op, uint32_t obj, const struct iovec *iov, int niov,
                     bool intr, mgr_result *res)
{
    struct iovec v[8];
    if (niov > 7) return -EINVAL;
    size_t len = 0;
    for (int i = 0; i < niov; i++) {
        v[i + 1] = iov[i];
        len += iov[i].iov_len;
    }
    if (len > m->max_message) return -EMSGSIZE;
    if (++m->next_id == 0) m->next_id = 1; /* 0 is the id of a CANCEL, which gets no reply */
    mproc__mgr_req h = {.len = (uint32_t)len, .id = m->next_id, .op = op, .obj = obj};
    v[0] = (struct iovec){&h, sizeof h};
    mgr_wait w = {.id = h.id, .res = res, .next = m->waits};
    if (send_all(m->fd, v, niov + 1) < 0) {
        mgr_disconnect_locked(m);
        return -EPIPE;
    }
    m->waits = &w;
    int r = await_reply(m, &w, intr);
    if (!w.done) { /* the connection broke under it */
        for (mgr_wait **pp = &m->waits; *pp; pp = &(*pp)->next)
            if (*pp == &w) {
                *pp = w.next;
                break;
            }
        return -EPIPE;
    }
    return r < 0 ? r : res->status == -EPIPE && m->fd < 0 ? -EPIPE : 0;
}

/* The dialect probe: Python's request shape (ident, methodname, args, kwds) naming a method no
 * Python server has, so a Python server answers '#TRACEBACK' ('... unrecognized') and closes, while
 * an mproc server answers ('#RETURN', version) and reads native messages from then on. 1: native,
 * 0: Python, or -ETIMEDOUT, MPROC_EPROTO, the connection's codes. */
static int probe(mproc_manager *m, mproc_conn *c)
{
    mproc__pk_doc *d;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    mproc__pk *req = mproc__pk_tuple(d, 4, mproc__pk_none(d), mproc__pk_cstr(d, "mproc_native"),
                                     mproc__pk_tuple(d, 1, mproc__pk_int(d, MPROC__MGR_VERSION)),
                                     mproc__pk_container(d, MPROC__PK_DICT));
    void *buf = NULL;
    size_t len;
    r = req ? mproc__pickle_write(req, &buf, &len) : -ENOMEM;
    mproc__pk_doc_free(d);
    if (r == 0) r = mproc_conn_send(c, buf, len);
    free(buf);
    if (r < 0) return r;
    r = mproc_conn_recv_alloc(c, &buf, &len, m->reply_timeout);
    if (r < 0) return r;
    mproc__pk *v;
    r = mproc__pickle_read(buf, len, NULL, &d, &v);
    free(buf);
    if (r < 0) return r;
    r = MPROC_EPROTO;
    if (v->kind == MPROC__PK_TUPLE && v->n == 2) {
        const mproc__pk *k = v->u.items[0];
        if (mproc__pk_is_str(k, "#RETURN") && v->u.items[1]->kind == MPROC__PK_INT)
            r = 1;
        else if (mproc__pk_is_str(k, "#TRACEBACK") || mproc__pk_is_str(k, "#ERROR"))
            r = 0;
    }
    mproc__pk_doc_free(d);
    return r;
}

/* HELLO with a bound on its answer: a Python server takes the header for the length of a 64 MiB
 * frame and would wait for the rest of it forever. The connection is fresh and this thread holds
 * m->mu, so nobody else reads it. */
static int hello(mproc_manager *m, unsigned char out[32], bool probed)
{
    unsigned char ver[4];
    mgr_put32(ver, MPROC__MGR_VERSION);
    if (++m->next_id == 0) m->next_id = 1;
    mproc__mgr_req h = {.len = 4, .id = m->next_id, .op = MGR_HELLO};
    struct iovec v[2] = {{&h, sizeof h}, {ver, 4}};
    if (send_all(m->fd, v, 2) < 0) return -EPIPE;
    unsigned char in[sizeof(mproc__mgr_rep) + 32];
    size_t have = 0, want = sizeof(mproc__mgr_rep);
    int64_t deadline = mproc__deadline(m->reply_timeout);
    while (have < want) {
        int64_t left = deadline - mproc__now_ns();
        if (left <= 0) return probed ? -ETIMEDOUT : -EPROTONOSUPPORT;
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        int64_t ms = left / 1000000 + 1;
        int pr = poll(&p, 1, ms > 1000000 ? 1000000 : (int)ms);
        if (pr < 0 && errno != EINTR) return -EPIPE;
        if (pr <= 0) continue;
        ssize_t n = recv(m->fd, in + have, want - have, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return -EPIPE;
        if (n > 0) have += (size_t)n;
        if (have == sizeof(mproc__mgr_rep)) {
            mproc__mgr_rep rh;
            memcpy(&rh, in, sizeof rh);
            if (rh.id != h.id || rh.len > 32) return MPROC_EPROTO;
            want += rh.len;
        }
    }
    mproc__mgr_rep rh;
    memcpy(&rh, in, sizeof rh);
    if (rh.status < 0) return rh.status;
    if (rh.len != 32) return MPROC_EPROTO;
    memcpy(out, in + sizeof rh, 32);
    return 0;
}

int mgr_connect_locked(mproc_manager *m)
{
    if (m->conn && m->pid != mproc__pid()) {
        /* a fork child: its copy of the parent's connection is not its own to read or write */
        mproc_conn_close(m->conn);
        m->conn = NULL;
        m->fd = -1;
        m->waits = NULL;
        m->reading = false;
        m->in_len = 0;
    }
    if (m->conn) mgr_disconnect_locked(m);
    mgr_proxy_register_ops(); /* before any proxy exists: the ordinary calls then know them */
    mproc_conn_opts co = {.handshake_timeout = m->handshake_timeout};
    mproc_conn *c;
    int r = mproc_client_connect_opts(&c, m->address, m->has_key ? m->key : NULL, m->keylen, &co);
    if (r < 0) return r;
    m->conn = c;
    m->fd = mproc_conn_fd(c);
    m->pid = mproc__pid();
    int one = 1;
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(m->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    if (!m->in && !(m->in = malloc(m->in_cap = 65536 + sizeof(mproc__mgr_rep)))) {
        m->in_cap = 0;
        mgr_disconnect_locked(m);
        return -ENOMEM;
    }
    bool probed = m->dialect == MPROC_MANAGER_DIALECT_AUTO;
    if (probed) {
        r = probe(m, c);
        if (r <= 0) {
            mgr_disconnect_locked(m);
            if (r == 0) m->dialect = MPROC_MANAGER_DIALECT_PYTHON;
            return r == 0 ? MGR_SPEAKS_PYTHON : r;
        }
        m->dialect = MPROC_MANAGER_DIALECT_NATIVE;
    }
    unsigned char out[32];
    r = hello(m, out, probed);
    if (r < 0) {
        mgr_disconnect_locked(m);
        return r;
    }
    uint64_t lo = mgr_get64(out), tp = mgr_get64(out + 8), tok = mgr_get64(out + 16);
    m->max_message = mgr_get64(out + 24);
    const void *tptr = (const void *)(uintptr_t)tp;
    for (int pass = 0;; pass++) {
        m->family = lo == (uint64_t)(uintptr_t)mproc__arena_lo && mproc__arena_contains(tptr, 8) &&
                    __atomic_load_n((const uint64_t *)tptr, __ATOMIC_ACQUIRE) == tok;
        if (m->family || pass) break;
        /* Not in the family: on the same machine, maybe it can join the server's arena. */
        if ((r = mgr_share_adopt(m)) < 0) {
            mgr_disconnect_locked(m);
            return r;
        }
    }
    m->gen++;
    return 0;
}

int mgr_call(mproc_manager *m, uint16_t op, uint32_t obj, const struct iovec *iov, int niov,
             bool interruptible, mgr_result *res)
{
    pthread_mutex_lock(&m->mu);
    int r = 0;
    if (!m->conn || m->pid != mproc__pid()) r = mgr_connect_locked(m) < 0 ? -EPIPE : 0;
    if (r == 0) r = roundtrip(m, op, obj, iov, niov, interruptible, res);
    pthread_mutex_unlock(&m->mu);
    return r;
}
