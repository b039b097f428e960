/* Listener and client: sockets bound/connected to an address, with the optional authkey
 * handshake (auth.c). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "channel/conn.h"
#include "platform/interrupt.h"
#include "platform/platform.h"

#define LISTENER_MAGIC 0x4c69736eu /* "Lisn" */
/* Python's default backlog is 1, which refuses clients that arrive together; ask for more. */
#define BACKLOG 128

struct mproc_listener {
    uint32_t magic;
    int fd;
    bool tcp;
    bool has_key;
    unsigned char *key;
    size_t keylen;
    mproc_conn_opts opts;
    mproc__hs_set *hs; /* keyed: the handshakes in progress (handshakes.c) */
    pid_t owner;       /* only the creating process unlinks the socket file (as Python) */
    char *unlink_path; /* filesystem socket to remove on free */
    char address[160];
};

static mproc_conn_opts effective_opts(const mproc_conn_opts *o)
{
    mproc_conn_opts e = o ? *o : (mproc_conn_opts){0};
    if (e.max_message == 0) e.max_message = MPROC_CONN_DEFAULT_MAX_MESSAGE;
    if (e.handshake_timeout == 0) e.handshake_timeout = MPROC_CONN_DEFAULT_HANDSHAKE_TIMEOUT;
    return e;
}

/* The key and the options' timeout (the one timeout rule, platform.h). */
static int check_args(const void *authkey, size_t keylen, const mproc_conn_opts *o)
{
    if (o && mproc__timeout_check(o->handshake_timeout)) return -EINVAL;
    return (!authkey && keylen > 0) ? -EINVAL : 0;
}

static void set_nodelay(int fd, int family)
{
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

void mproc_listener_free(mproc_listener *l)
{
    if (!l || l->magic != LISTENER_MAGIC) return;
    mproc__hs_free(l->hs);
    close(l->fd);
    if (l->unlink_path && getpid() == l->owner) unlink(l->unlink_path);
    free(l->unlink_path);
    if (l->key) {
        OPENSSL_cleanse(l->key, l->keylen);
        free(l->key);
    }
    l->magic = 0;
    free(l);
}

static int bind_one(const mproc__addr *a)
{
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (a->family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0 || listen(fd, BACKLOG) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int mproc_listener_new_opts(mproc_listener **out, const char *address, const void *authkey,
                            size_t keylen, const mproc_conn_opts *opts)
{
    if (!out || !address || check_args(authkey, keylen, opts) < 0) return -EINVAL;
    int r;
    mproc__addr addrs[MPROC__ADDRESS_MAX];
    int n = mproc__address_resolve(address, true, addrs, MPROC__ADDRESS_MAX);
    if (n < 0) return n;
    mproc_listener *l = calloc(1, sizeof *l);
    if (!l) return -ENOMEM;
    l->magic = LISTENER_MAGIC;
    l->fd = -1;
    l->opts = effective_opts(opts);
    l->owner = getpid();
    if (authkey) {
        l->has_key = true;
        l->keylen = keylen;
        l->key = malloc(keylen ? keylen : 1);
        if (!l->key) goto nomem;
        memcpy(l->key, authkey, keylen);
    }
    r = -EADDRNOTAVAIL;
    for (int i = 0; i < n && l->fd < 0; i++) {
        r = bind_one(&addrs[i]);
        if (r >= 0) {
            l->fd = r;
            l->tcp = addrs[i].family != AF_UNIX;
        }
    }
    if (l->fd < 0) goto fail;
    if (l->has_key) {
        /* handshakes run side by side (handshakes.c): an accept never waits on one socket */
        fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
        if ((r = mproc__hs_new(&l->hs, l->fd, l->tcp, l->key, l->keylen,
                               l->opts.handshake_timeout)) < 0)
            goto fail;
    }
    if (l->tcp) {
        if ((r = mproc__address_format_tcp(l->fd, l->address, sizeof l->address)) < 0) goto fail;
    } else {
        snprintf(l->address, sizeof l->address, "%s", address);
        if (address[5] != '@' && !(l->unlink_path = strdup(address + 5))) goto nomem;
    }
    *out = l;
    return 0;
nomem:
    r = -ENOMEM;
fail:
    mproc_listener_free(l);
    return r;
}

int mproc_listener_new(mproc_listener **out, const char *address, const void *authkey,
                       size_t keylen)
{
    return mproc_listener_new_opts(out, address, authkey, keylen, NULL);
}

const char *mproc_listener_address(const mproc_listener *l)
{
    return (l && l->magic == LISTENER_MAGIC) ? l->address : NULL;
}

int mproc_listener_fd(const mproc_listener *l)
{
    if (!l || l->magic != LISTENER_MAGIC) return -EINVAL;
    return l->hs ? mproc__hs_fd(l->hs) : l->fd;
}

int mproc_listener_set_max_handshakes(mproc_listener *l, size_t n)
{
    if (!l || l->magic != LISTENER_MAGIC || n == 0) return -EINVAL;
    if (l->hs) mproc__hs_set_max(l->hs, n);
    return 0;
}

/* The next socket of a listener without a key: accepted non-blocking, so that a raced accept
 * (another process took the client) never blocks. */
static int accept_plain(mproc_listener *l, int64_t deadline, double timeout)
{
    for (;;) {
        int r = mproc__poll_in(l->fd, deadline);
        if (r < 0) return r;
        if (r == 0) return timeout == 0 ? -EAGAIN : -ETIMEDOUT;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) return fd;
        /* the peer gave up in the meantime, or another process took it: wait again */
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
            continue;
        return -errno;
    }
}

/* The next socket whose handshake passed: rounds of the pending handshakes, and waits on their
 * set between rounds. A failed one is reported (as Python's accept raises), and the others go
 * on in the next call. */
static int accept_keyed(mproc_listener *l, int64_t deadline, double timeout)
{
    for (;;) {
        int r = mproc__hs_next(l->hs);
        if (r != -EAGAIN) return r;
        if (mproc__now_ns() >= deadline) return timeout == 0 ? -EAGAIN : -ETIMEDOUT;
        if ((r = mproc__poll_in(mproc__hs_fd(l->hs), deadline)) < 0) return r;
    }
}

int mproc_listener_accept(mproc_listener *l, mproc_conn **out, double timeout)
{
    if (!l || l->magic != LISTENER_MAGIC || !out || mproc__timeout_check(timeout)) return -EINVAL;
    int64_t deadline = mproc__deadline(timeout);
    int fd = l->hs ? accept_keyed(l, deadline, timeout) : accept_plain(l, deadline, timeout);
    if (fd < 0) return fd;
    /* connections are blocking */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (l->tcp && !l->hs) set_nodelay(fd, AF_INET);
    mproc_conn *c;
    int r = mproc__conn_wrap(&c, fd, true, true, true);
    if (r < 0) {
        close(fd);
        return r;
    }
    c->max_message = l->opts.max_message;
    *out = c;
    return 0;
}

/* Connect within the deadline. A blocking connect can take minutes to fail on TCP, so connect
 * non-blocking and wait; unix sockets connect immediately (or wait on a full backlog, where a
 * non-blocking connect would fail with EAGAIN instead). */
static int connect_one(const mproc__addr *a, int64_t deadline)
{
    bool tcp = a->family != AF_UNIX;
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | (tcp ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -errno;
    int r = connect(fd, (const struct sockaddr *)&a->sa, a->len);
    if (r < 0 && (errno == EINPROGRESS || errno == EINTR)) {
        /* EINTR: the connection goes on asynchronously, as EINPROGRESS */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int pr = mproc__intr_poll(&p, 1, deadline);
        if (pr <= 0) {
            close(fd);
            return pr == 0 ? -ETIMEDOUT : pr; /* -EINTR: a handler ran */
        }
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        r = err ? (errno = err, -1) : 0;
    }
    if (r < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (tcp) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        set_nodelay(fd, a->family);
    }
    return fd;
}

int mproc_client_connect_opts(mproc_conn **out, const char *address, const void *authkey,
                              size_t keylen, const mproc_conn_opts *opts)
{
    if (!out || !address || check_args(authkey, keylen, opts) < 0) return -EINVAL;
    mproc_conn_opts o = effective_opts(opts);
    int r;
    mproc__addr addrs[MPROC__ADDRESS_MAX];
    int n = mproc__address_resolve(address, false, addrs, MPROC__ADDRESS_MAX);
    if (n < 0) return n;
    int64_t deadline = mproc__deadline(o.handshake_timeout);
    int fd = -ECONNREFUSED;
    for (int i = 0; i < n && fd < 0 && fd != -EINTR; i++)
        fd = connect_one(&addrs[i], deadline);
    if (fd < 0) return fd;
    mproc_conn *c;
    if ((r = mproc__conn_wrap(&c, fd, true, true, true)) < 0) {
        close(fd);
        return r;
    }
    c->max_message = o.max_message;
    if (authkey) {
        if ((r = mproc__auth_answer(c, authkey, keylen, deadline)) < 0 ||
            (r = mproc__auth_deliver(c, authkey, keylen, deadline)) < 0) {
            mproc_conn_close(c);
            return r;
        }
    }
    *out = c;
    return 0;
}

int mproc_client_connect(mproc_conn **out, const char *address, const void *authkey, size_t keylen)
{
    return mproc_client_connect_opts(out, address, authkey, keylen, NULL);
}
