/* Where connection handles live, and who holds them, so that Python's Pipe idiom (make a pipe,
 * start a child with one end, each side closes the end it does not use) works under every start
 * method.
 *
 * A handle is a slot of a private mapping (the slab) reserved once, before the forkserver helper
 * is forked, so it sits at the same address in the program, the helper and every child: a handle
 * in a child's argument points at that child's own slot.
 *   fork        the child inherits the slab (copy on write) and the fds: nothing to do.
 *   forkserver  the helper's slab is stale; the parent passes every connection it holds (fds by
 *               SCM_RIGHTS, and the slot contents) with each start request, and the child installs
 *               them at the same fd numbers and slots.
 *   thread      one slab and one fd table for all: each thread that stands for a process is a
 *               context holding its own references (taken at its start, dropped at its end), and a
 *               close only lets go of the caller's, so the fd is closed when its last holder
 * closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel/conn.h"
#include "platform/platform.h"

#define SLAB_SLOTS 65536 /* connections open at once in a process; address space only */

static mproc_conn *slab;
static size_t slab_used; /* slots ever handed out: the live ones are below */
static size_t slab_hint; /* where to look for a free slot first */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool shared_ctx; /* a thread context was ever made: holders need rewriting after fork */
static MPROC_TLS uintptr_t cur_ctx;

/* ---- holders ---- */

static bool holds(const mproc_conn *c, uintptr_t ctx)
{
    for (uint32_t i = 0; i < c->nholders; i++)
        if (c->holders[i] == ctx) return true;
    return false;
}

static void hold_only(mproc_conn *c, uintptr_t ctx)
{
    if (c->holders && c->holders != c->holders_inline) free(c->holders);
    c->holders = c->holders_inline;
    c->capholders = 2;
    c->holders[0] = ctx;
    c->nholders = 1;
}

static int hold(mproc_conn *c, uintptr_t ctx)
{
    if (c->nholders == c->capholders) {
        uint32_t cap = c->capholders * 2;
        uintptr_t *h = malloc(cap * sizeof *h);
        if (!h) return -ENOMEM;
        memcpy(h, c->holders, c->nholders * sizeof *h);
        if (c->holders != c->holders_inline) free(c->holders);
        c->holders = h;
        c->capholders = cap;
    }
    c->holders[c->nholders++] = ctx;
    return 0;
}

/* mu held: ctx lets go; the last holder frees the slot. */
static void unhold(mproc_conn *c, uintptr_t ctx)
{
    for (uint32_t i = 0; i < c->nholders; i++)
        if (c->holders[i] == ctx) {
            c->holders[i] = c->holders[--c->nholders];
            break;
        }
    if (c->nholders) return;
    if (c->fd >= 0) close(c->fd);
    free(c->partial);
    if (c->holders != c->holders_inline) free(c->holders);
    memset(c, 0, sizeof *c);
    size_t i = (size_t)(c - slab);
    if (i < slab_hint) slab_hint = i;
}

/* ---- the slab ---- */

static void fork_prepare(void)
{
    pthread_mutex_lock(&mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&mu);
}

/* A new process: the forking thread's references are the process's now. */
static void fork_child(void)
{
    pthread_mutex_unlock(&mu);
    if (shared_ctx)
        for (size_t i = 0; i < slab_used; i++)
            if (slab[i].magic == MPROC__CONN_MAGIC) hold_only(&slab[i], 0);
    cur_ctx = 0;
}

static void reserve_once(void)
{
    void *m = mmap(NULL, SLAB_SLOTS * sizeof(mproc_conn), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return;
    slab = m;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int mproc__conn_reserve(void)
{
    pthread_once(&once, reserve_once);
    return slab ? 0 : -ENOMEM;
}

int mproc__conn_alloc(mproc_conn **out)
{
    int r = mproc__conn_reserve();
    if (r < 0) return r;
    pthread_mutex_lock(&mu);
    size_t i = slab_hint;
    while (i < slab_used && slab[i].magic != 0)
        i++;
    if (i == SLAB_SLOTS) {
        pthread_mutex_unlock(&mu);
        return -EMFILE;
    }
    if (i == slab_used) slab_used++;
    slab_hint = i + 1;
    mproc_conn *c = &slab[i];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    hold_only(c, cur_ctx);
    /* Taken: the caller sets the magic word, but no other allocation may have the slot meanwhile.
     */
    c->magic = MPROC__CONN_MAGIC;
    pthread_mutex_unlock(&mu);
    *out = c;
    return 0;
}

void mproc__conn_release(mproc_conn *c)
{
    pthread_mutex_lock(&mu);
    /* Not held here: closed by this context already, while another one still holds it. */
    if (c->magic == MPROC__CONN_MAGIC && holds(c, cur_ctx)) unhold(c, cur_ctx);
    pthread_mutex_unlock(&mu);
}

/* ---- thread mode ---- */

int mproc__conn_ctx_share(uintptr_t ctx)
{
    if (!slab) return 0; /* no connection was ever made */
    int r = 0;
    pthread_mutex_lock(&mu);
    shared_ctx = true;
    for (size_t i = 0; i < slab_used && r == 0; i++)
        if (slab[i].magic == MPROC__CONN_MAGIC && holds(&slab[i], cur_ctx)) r = hold(&slab[i], ctx);
    pthread_mutex_unlock(&mu);
    if (r < 0) mproc__conn_ctx_drop(ctx);
    return r;
}

void mproc__conn_ctx_enter(uintptr_t ctx)
{
    cur_ctx = ctx;
}

void mproc__conn_ctx_drop(uintptr_t ctx)
{
    if (!slab) return;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < slab_used; i++)
        if (slab[i].magic == MPROC__CONN_MAGIC && holds(&slab[i], ctx)) unhold(&slab[i], ctx);
    pthread_mutex_unlock(&mu);
}

/* ---- forkserver ---- */

typedef struct {
    uint64_t slot;
    uint64_t max_message;
    int32_t fd;
    uint8_t readable, writable, is_socket, broken, nowait;
} wire;

typedef struct {
    uint32_t n;
    uint32_t pad;
    wire w[MPROC__CONN_PASS_MAX];
} wire_msg;

struct mproc__conn_batch {
    wire_msg m;
    int fds[MPROC__CONN_PASS_MAX];
    bool owned; /* received: the fds are ours to close */
};

typedef union {
    char buf[CMSG_SPACE(sizeof(int) * MPROC__CONN_PASS_MAX)];
    struct cmsghdr align;
} fd_control;

int mproc__conn_pass_prepare(mproc__conn_batch **out)
{
    mproc__conn_batch *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    int r = 0;
    if (slab) pthread_mutex_lock(&mu);
    for (size_t i = 0; slab && i < slab_used; i++) {
        mproc_conn *c = &slab[i];
        if (c->magic != MPROC__CONN_MAGIC || !holds(c, cur_ctx)) continue;
        if (b->m.n == MPROC__CONN_PASS_MAX) {
            r = -ETOOMANYREFS;
            break;
        }
        /* A message half received cannot be carried over (its bytes are in this process): the
         * child's copy reports broken framing rather than misread the rest. */
        bool mid = c->hdr_have || c->have_len || c->body_have;
        b->m.w[b->m.n] = (wire){.slot = i,
                                .max_message = c->max_message,
                                .fd = c->fd,
                                .readable = c->readable,
                                .writable = c->writable,
                                .is_socket = c->is_socket,
                                .nowait = c->nowait,
                                .broken = c->broken || mid};
        b->fds[b->m.n++] = c->fd;
    }
    if (slab) pthread_mutex_unlock(&mu);
    if (r < 0) {
        free(b);
        return r;
    }
    *out = b; /* the fds are the caller's own: mproc__conn_pass_free does not close them */
    return 0;
}

int mproc__conn_pass_send(int sock, const mproc__conn_batch *b)
{
    fd_control *u = calloc(1, sizeof *u);
    if (!u) return -ENOMEM;
    uint32_t n = b->m.n;
    struct iovec iov = {.iov_base = (void *)&b->m,
                        .iov_len = offsetof(wire_msg, w) + n * sizeof(wire)};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        h.msg_control = u->buf;
        h.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), b->fds, sizeof(int) * n);
    }
    ssize_t s;
    do
        s = sendmsg(sock, &h, MSG_NOSIGNAL);
    while (s < 0 && errno == EINTR);
    free(u);
    return s == (ssize_t)iov.iov_len ? 0 : -EPIPE;
}

int mproc__conn_pass_recv(int sock, mproc__conn_batch **out)
{
    mproc__conn_batch *b = calloc(1, sizeof *b);
    fd_control *u = calloc(1, sizeof *u);
    if (!b || !u) {
        free(b);
        free(u);
        return -ENOMEM;
    }
    struct iovec iov = {.iov_base = &b->m, .iov_len = sizeof b->m};
    struct msghdr h = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u->buf, .msg_controllen = sizeof u->buf};
    ssize_t s;
    do
        s = recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
    while (s < 0 && errno == EINTR);
    size_t got = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&h); s > 0 && cm; cm = CMSG_NXTHDR(&h, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            if (got + k > MPROC__CONN_PASS_MAX) k = MPROC__CONN_PASS_MAX - got;
            memcpy(b->fds + got, CMSG_DATA(cm), k * sizeof(int));
            got += k;
        }
    free(u);
    int r = 0;
    if (s <= 0)
        r = s == 0 ? -EPIPE : -errno;
    else if ((size_t)s < offsetof(wire_msg, w) || b->m.n > MPROC__CONN_PASS_MAX ||
             (size_t)s != offsetof(wire_msg, w) + b->m.n * sizeof(wire) || got != b->m.n ||
             (h.msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
        r = -EPROTO;
    if (r < 0) {
        for (size_t i = 0; i < got; i++)
            close(b->fds[i]);
        free(b);
        return r;
    }
    b->owned = true;
    *out = b;
    return 0;
}

static bool is_target(const mproc__conn_batch *b, int fd)
{
    for (uint32_t i = 0; i < b->m.n; i++)
        if (b->m.w[i].fd == fd) return true;
    return false;
}

void mproc__conn_drop_all(void)
{
    for (size_t i = 0; slab && i < slab_used; i++) {
        if (slab[i].magic == MPROC__CONN_MAGIC && slab[i].fd >= 0) close(slab[i].fd);
        memset(&slab[i], 0, sizeof slab[i]); /* its heap parts: the program's, not ours */
    }
    slab_used = slab_hint = 0;
    cur_ctx = 0;
}

int mproc__conn_pass_install(mproc__conn_batch *b, int *keep, size_t nkeep)
{
    int r = mproc__conn_reserve();
    if (r < 0) return r;
    mproc__conn_drop_all(); /* the helper dropped its own at its start: nothing stale is left */
    int top = 2;
    for (uint32_t i = 0; i < b->m.n; i++) {
        if (b->m.w[i].fd > top) top = b->m.w[i].fd;
        if (b->fds[i] > top) top = b->fds[i];
        if (b->m.w[i].slot >= SLAB_SLOTS || b->m.w[i].fd < 0) return -EPROTO;
    }
    for (size_t k = 0; k < nkeep; k++)
        if (keep[k] > top) top = keep[k];
    /* Out of the way first: a received fd or one to keep may sit on another's target number. */
    for (uint32_t i = 0; i < b->m.n; i++) {
        int m = fcntl(b->fds[i], F_DUPFD_CLOEXEC, top + 1);
        if (m < 0) return -errno;
        close(b->fds[i]);
        b->fds[i] = m;
    }
    for (size_t k = 0; k < nkeep; k++)
        if (keep[k] >= 0 && is_target(b, keep[k])) {
            int m = fcntl(keep[k], F_DUPFD_CLOEXEC, top + 1);
            if (m < 0) return -errno;
            close(keep[k]);
            keep[k] = m;
        }
    for (uint32_t i = 0; i < b->m.n; i++) {
        const wire *w = &b->m.w[i];
        if (dup3(b->fds[i], w->fd, O_CLOEXEC) < 0) return -errno;
        close(b->fds[i]);
        b->fds[i] = -1;
        mproc_conn *c = &slab[w->slot];
        memset(c, 0, sizeof *c);
        c->fd = w->fd;
        c->readable = w->readable;
        c->writable = w->writable;
        c->is_socket = w->is_socket;
        c->nowait = w->nowait;
        c->broken = w->broken;
        c->max_message = w->max_message;
        hold_only(c, 0);
        c->magic = MPROC__CONN_MAGIC;
        if (w->slot >= slab_used) slab_used = w->slot + 1;
    }
    return 0;
}

void mproc__conn_pass_free(mproc__conn_batch *b)
{
    if (!b) return;
    for (uint32_t i = 0; b->owned && i < b->m.n; i++)
        if (b->fds[i] >= 0) close(b->fds[i]);
    free(b);
}
