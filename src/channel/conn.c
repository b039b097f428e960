/* Connections: Python multiprocessing.connection framing over a stream fd. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "channel/conn.h"
#include "platform/interrupt.h"
#include "platform/platform.h"

static bool conn_ok(const mproc_conn *c)
{
    return c && c->magic == MPROC__CONN_MAGIC;
}

size_t mproc__frame_header(uint64_t len, unsigned char out[MPROC__CONN_FRAME_HEADER_MAX])
{
    if (len <= 0x7fffffffu) {
        for (int i = 0; i < 4; i++)
            out[i] = (unsigned char)(len >> (24 - 8 * i));
        return 4;
    }
    memset(out, 0xff, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 12;
}

int mproc__conn_wrap(mproc_conn **out, int fd, bool readable, bool writable, bool is_socket)
{
    mproc_conn *c;
    int r = mproc__conn_alloc(&c);
    if (r < 0) return r;
    c->magic = MPROC__CONN_MAGIC;
    c->fd = fd;
    c->readable = readable;
    c->writable = writable;
    c->is_socket = is_socket;
    c->max_message = MPROC_CONN_DEFAULT_MAX_MESSAGE;
    *out = c;
    return 0;
}

int mproc_pipe(mproc_conn **a, mproc_conn **b, bool duplex)
{
    if (!a || !b) return -EINVAL;
    int r;
    int fds[2];
    if (duplex) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) return -errno;
    } else {
        if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    }
    mproc_conn *ca, *cb;
    if ((r = mproc__conn_wrap(&ca, fds[0], true, duplex, duplex)) < 0) goto fail;
    if ((r = mproc__conn_wrap(&cb, fds[1], duplex, true, duplex)) < 0) {
        ca->fd = -1; /* closed below */
        mproc__conn_release(ca);
        goto fail;
    }
    ca->nowait = cb->nowait = !duplex;
    *a = ca;
    *b = cb;
    return 0;
fail:
    close(fds[0]);
    close(fds[1]);
    return r;
}

int mproc_conn_from_fd(mproc_conn **out, int fd, bool readable, bool writable)
{
    if (!out || fd < 0 || (!readable && !writable)) return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    int r = mproc__conn_wrap(out, fd, readable, writable, S_ISSOCK(st.st_mode));
    if (r == 0) (*out)->nowait = S_ISFIFO(st.st_mode);
    return r;
}

int mproc_conn_fd(const mproc_conn *c)
{
    return conn_ok(c) ? c->fd : -EINVAL;
}

int mproc_conn_set_max_message(mproc_conn *c, size_t max)
{
    if (!conn_ok(c)) return -EINVAL;
    c->max_message = max;
    return 0;
}

void mproc_conn_close(mproc_conn *c)
{
    if (!conn_ok(c)) return;
    mproc__conn_release(c);
}

/* ---- sending ---- */

/* Whether an RWF_NOWAIT read or write failed because the kernel does not take the flag for pipes
 * (before 5.x): then the conn polls first from now on. */
static bool nowait_refused(mproc_conn *c, ssize_t n)
{
    if (n >= 0 || (errno != EOPNOTSUPP && errno != EINVAL && errno != ENOSYS)) return false;
    c->nowait = false;
    return true;
}

/* One write that never blocks: >=0 bytes written, -EAGAIN when there is no room, or -errno.
 * Sockets use MSG_NOSIGNAL; for pipes the caller blocks SIGPIPE. */
static ssize_t write_nowait(mproc_conn *c, struct iovec *iov, int cnt)
{
    ssize_t n;
    if (c->is_socket) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else if (c->nowait) {
        n = pwritev2(c->fd, iov, cnt, -1, RWF_NOWAIT);
        if (nowait_refused(c, n)) return write_nowait(c, iov, cnt);
    } else {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) == 0) return -EAGAIN;
        n = writev(c->fd, iov, cnt); /* may block once a part is out: see write_all */
    }
    if (n >= 0) return n;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Write the whole iovec. A wait for room before the first byte is out ends with -EINTR when a
 * handler ran (nothing of the message sent); once a part is out the message is finished, so a
 * frame is never torn. */
static int write_all(mproc_conn *c, struct iovec *iov, int cnt)
{
    bool started = false;
    while (cnt > 0) {
        ssize_t n = write_nowait(c, iov, cnt);
        if (n == -EINTR) continue;
        if (n == -EAGAIN) {
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            int r = mproc__intr_poll(&p, 1, INT64_MAX);
            if (r == -EINTR && !started) return -EINTR;
            if (r < 0 && r != -EINTR) return r;
            continue;
        }
        if (n < 0) return (int)n;
        started = true;
        size_t done = (size_t)n;
        while (cnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* A write to a pipe whose reader is gone raises SIGPIPE in the writing thread. Block it around
 * the write and consume the one our write raised, so the caller sees -EPIPE and the process
 * lives, whatever the program's SIGPIPE disposition. */
static int write_all_pipe(mproc_conn *c, struct iovec *iov, int cnt)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    int r = write_all(c, iov, cnt);
    if (r == -EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int mproc_conn_send(mproc_conn *c, const void *data, size_t len)
{
    if (!conn_ok(c) || (!data && len > 0)) return -EINVAL;
    if (!c->writable) return -EBADF;
    unsigned char hdr[MPROC__CONN_FRAME_HEADER_MAX];
    /* header and payload in one syscall: no Nagle delay on TCP, one wake-up for the reader */
    struct iovec iov[2] = {{hdr, mproc__frame_header(len, hdr)}, {(void *)data, len}};
    int cnt = len > 0 ? 2 : 1;
    return c->is_socket ? write_all(c, iov, cnt) : write_all_pipe(c, iov, cnt);
}

/* ---- receiving ---- */

int mproc__poll_in(int fd, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 0);
    if (r == 0)
        r = mproc__intr_poll(&p, 1, deadline);
    else if (r < 0)
        r = -errno;
    if (r > 0) return (p.revents & POLLNVAL) ? -EBADF : 1;
    return r;
}

/* One read that never blocks: >=0 bytes (0 at end of file), -EAGAIN when nothing is there yet,
 * or -errno. */
static ssize_t read_nowait(mproc_conn *c, void *p, size_t n)
{
    ssize_t r;
    if (c->is_socket) {
        r = recv(c->fd, p, n, MSG_DONTWAIT);
    } else if (c->nowait) {
        struct iovec v = {p, n};
        r = preadv2(c->fd, &v, 1, -1, RWF_NOWAIT);
        if (nowait_refused(c, r)) return read_nowait(c, p, n);
    } else {
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 0) return -EAGAIN;
        r = read(c->fd, p, n);
    }
    if (r >= 0) return r;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Read up to n bytes: >0 bytes read, 0 at end of file, or a negative code (-ETIMEDOUT, -EINTR
 * when a handler ran while it waited: the caller keeps what it has, as for a timeout). A read
 * never blocks (a blocking read would be restarted after a SA_RESTART handler): it waits in
 * ppoll (platform/interrupt.h), and only when nothing is there yet. */
static ssize_t read_some(mproc_conn *c, void *p, size_t n, int64_t deadline)
{
    for (;;) {
        ssize_t r = read_nowait(c, p, n);
        if (r >= 0) return r;
        if (r == -EINTR) continue;
        if (r != -EAGAIN) return r;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int pr = mproc__intr_poll(&pf, 1, deadline);
        if (pr < 0) return pr;
        if (pr == 0) return -ETIMEDOUT;
        if (pf.revents & POLLNVAL) return -EBADF;
    }
}

static void reset_message(mproc_conn *c)
{
    c->hdr_have = 0;
    c->have_len = false;
    c->msg_len = 0;
    c->partial = NULL;
    c->body_have = 0;
}

static int break_conn(mproc_conn *c)
{
    free(c->partial);
    reset_message(c);
    c->broken = true;
    return MPROC_EPROTO;
}

static uint64_t load_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Complete the current message's header. */
static int recv_header(mproc_conn *c, int64_t deadline)
{
    while (!c->have_len) {
        size_t want = (c->hdr_have < 4 ? 4 : 12) - c->hdr_have;
        ssize_t r = read_some(c, c->hdr + c->hdr_have, want, deadline);
        if (r == 0) return c->hdr_have == 0 ? MPROC_ECLOSED : break_conn(c);
        if (r < 0) return (int)r;
        c->hdr_have += (size_t)r;
        if (c->hdr_have == 4) {
            int32_t v = (int32_t)(uint32_t)load_be(c->hdr, 4);
            if (v == -1) continue; /* the 8-byte length follows */
            if (v < 0) return break_conn(c);
            c->msg_len = (uint64_t)v;
            c->have_len = true;
        } else if (c->hdr_have == 12) {
            c->msg_len = load_be(c->hdr + 4, 8);
            c->have_len = true;
        }
    }
    /* refuse before allocating anything: the length is whatever the peer claims */
    if (c->msg_len > c->max_message) return break_conn(c);
    return 0;
}

/* Read the current message's body into dst (capacity msg_len). When a previous call stopped
 * mid-body the bytes so far are in c->partial, which then is the target (recv_alloc passes
 * c->partial itself as dst and takes ownership of it). */
static int recv_body(mproc_conn *c, unsigned char *dst, int64_t deadline)
{
    size_t n = (size_t)c->msg_len;
    unsigned char *target = c->partial ? c->partial : dst;
    size_t have = c->body_have;
    while (have < n) {
        ssize_t r = read_some(c, target + have, n - have, deadline);
        if (r == 0) return break_conn(c); /* end of file mid-message */
        if (r == -ETIMEDOUT || r == -EINTR) {
            if (have > 0 && !c->partial) {
                /* keep what this call read: the caller's buffer is not ours to hold */
                if (!(c->partial = malloc(n))) {
                    break_conn(c);
                    return -ENOMEM;
                }
                memcpy(c->partial, dst, have);
            }
            c->body_have = have;
            return (int)r;
        }
        if (r < 0) {
            break_conn(c); /* framing is lost whatever the error */
            return (int)r;
        }
        have += (size_t)r;
    }
    if (target != dst) {
        memcpy(dst, target, n);
        free(target);
    }
    reset_message(c);
    return 0;
}

static int check_readable(const mproc_conn *c)
{
    if (!conn_ok(c)) return -EINVAL;
    if (!c->readable) return -EBADF;
    if (c->broken) return MPROC_EPROTO;
    return 0;
}

/* Timeout 0 means "poll": nothing there is -EAGAIN rather than a timeout. */
static int timeout_code(int r, double timeout)
{
    return (r == -ETIMEDOUT && timeout == 0) ? -EAGAIN : r;
}

int mproc__conn_recv_deadline(mproc_conn *c, void *buf, size_t cap, size_t *len, int64_t deadline)
{
    int r = check_readable(c);
    if (r < 0) return r;
    if (!len || (!buf && cap > 0)) return -EINVAL;
    if ((r = recv_header(c, deadline)) < 0) return r;
    *len = (size_t)c->msg_len;
    if (c->msg_len > cap) return -EMSGSIZE;
    return recv_body(c, buf, deadline);
}

int mproc_conn_recv(mproc_conn *c, void *buf, size_t cap, size_t *len, double timeout)
{
    if (mproc__timeout_check(timeout)) return -EINVAL;
    return timeout_code(mproc__conn_recv_deadline(c, buf, cap, len, mproc__deadline(timeout)),
                        timeout);
}

int mproc_conn_recv_alloc(mproc_conn *c, void **data, size_t *len, double timeout)
{
    int r = check_readable(c);
    if (r < 0) return r;
    if (!data || !len || mproc__timeout_check(timeout)) return -EINVAL;
    int64_t deadline = mproc__deadline(timeout);
    if ((r = recv_header(c, deadline)) < 0) return timeout_code(r, timeout);
    size_t n = (size_t)c->msg_len;
    if (!c->partial) {
        /* read straight into the buffer we will hand out; a timeout keeps it as c->partial */
        c->partial = malloc(n ? n : 1);
        if (!c->partial) return -ENOMEM;
    }
    unsigned char *buf = c->partial;
    if ((r = recv_body(c, buf, deadline)) < 0) return timeout_code(r, timeout);
    *data = buf;
    *len = n;
    return 0;
}

int mproc_conn_poll(mproc_conn *c, double timeout)
{
    int r = check_readable(c);
    if (r < 0) return r;
    if (mproc__timeout_check(timeout)) return -EINVAL;
    return mproc__poll_in(c->fd, mproc__deadline(timeout));
}
