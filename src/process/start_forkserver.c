/* Start method "forkserver": a small single-threaded helper, forked while the program is still
 * simple, forks every later child on request. Forking from it is safe however many threads the
 * program has since started (no lock can be held by a thread that does not exist in the child) and
 * cheap however large the program has grown.
 *
 * The helper is reached through a SOCK_SEQPACKET socketpair made when it is forked: it has no
 * name, so no other process can connect to it, and there is nothing to authenticate (an HMAC
 * handshake, as issue 7 first proposed, would only guard a door that does not exist). Requests
 * carry function and argument pointers: the helper is a fork of the same binary and shares the
 * family arena, so both are valid there (see process.h about arg). The helper sends back each
 * child's pidfd (SCM_RIGHTS), and reaps the child when it ends and sends its exit status: the
 * child's parent is the helper, so the caller cannot reap it itself. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arena/arena.h"
#include "channel/conn.h"
#include "process/child_watch.h"
#include "log/log.h"
#include "platform/platform.h"
#include "process/process.h"
#include "process/signals.h"

#define START_TIMEOUT_S 30.0

typedef struct {
    uint64_t id;
    mproc_run_fn run;
    void *arg;
    bool daemon;
    pid_t logical_parent;
    char name[MPROC__IDENTITY_NAME_MAX];
    char identity[MPROC__IDENTITY_NAME_MAX];
    /* The program's signal state at the request: the helper's is that of an earlier moment. */
    sigset_t mask;
    mproc__sig_disp disp[MPROC__SIG_COUNT];
} request;

enum { REPLY_STARTED = 1, REPLY_EXITED = 2 };
typedef struct {
    uint32_t kind;
    int value; /* STARTED: 0 or -errno; EXITED: N or -SIGNAL */
    uint64_t id;
    pid_t pid;
} reply;

typedef struct {
    uint64_t id;
    int code;
} status;

static pthread_mutex_t fs_mu = PTHREAD_MUTEX_INITIALIZER;
static int fs_sock = -1;  /* our end of the socketpair */
static int fs_pidfd = -1; /* watch fd of the helper, our child */
static pid_t fs_helper;
static pid_t fs_owner; /* the process that forked the helper: only it may stop it */
static uint64_t next_id;
static uint64_t lost_below; /* children with ids below this belonged to a helper that died */
static status *statuses;
static size_t nstatus, capstatus;

/* ---- the helper ---- */

typedef struct {
    uint64_t id;
    pid_t pid;
    int fd; /* the child's watch fd (pidfd or sentinel pipe) */
} child;

static void send_reply(int sock, const reply *rp, int fd)
{
    /* Field by field into zeroed memory: no stray padding bytes go over the socket. */
    reply out;
    memset(&out, 0, sizeof out);
    out.kind = rp->kind;
    out.value = rp->value;
    out.id = rp->id;
    out.pid = rp->pid;
    struct iovec iov = {.iov_base = &out, .iov_len = sizeof out};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

/* In a new child of the helper: the program's connections at their fd numbers and handles. */
static void install_conns(mproc__conn_batch *conns, mproc__watch_prep *w)
{
    int keep[2] = {w->parent_end, w->child_end};
    int r = mproc__conn_pass_install(conns, keep, 2);
    w->parent_end = keep[0];
    w->child_end = keep[1];
    mproc__conn_pass_free(conns);
    if (r < 0) {
        dprintf(STDERR_FILENO, "mproc: forkserver child: the parent's connections: %s\n",
                strerror(-r));
        _exit(127);
    }
    mproc__watch_in_child(w);
}

static _Noreturn void helper_main(int sock, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    prctl(PR_SET_NAME, "mproc-forksrv", 0, 0, 0);
    mproc__watch_forget_own();
    /* What its children start with, so that each applies only what the program changed since. */
    static mproc__sig_disp own_disp[MPROC__SIG_COUNT];
    mproc__sig_capture(own_disp);
    mproc__conn_drop_all(); /* children get the program's connections with each request */
    pid_t self = getpid();
    child *kids = NULL;
    size_t nkids = 0, cap = 0;
    struct pollfd *pfds = NULL;
    for (;;) {
        if (cap < nkids + 1) {
            cap = cap ? cap * 2 : 16;
            kids = realloc(kids, cap * sizeof *kids);
            pfds = realloc(pfds, (cap + 1) * sizeof *pfds);
            if (!kids || !pfds) _exit(1);
        }
        pfds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
        for (size_t i = 0; i < nkids; i++)
            pfds[i + 1] = (struct pollfd){.fd = kids[i].fd, .events = POLLIN};
        if (poll(pfds, nkids + 1, -1) < 0) continue;
        for (size_t i = nkids; i-- > 0;) {
            if (!(pfds[i + 1].revents & (POLLIN | POLLHUP))) continue;
            int code;
            if (mproc__watch_reap(kids[i].pid, kids[i].fd, &code) != 1) continue;
            reply rp = {.kind = REPLY_EXITED, .id = kids[i].id, .pid = kids[i].pid, .value = code};
            send_reply(sock, &rp, -1);
            close(kids[i].fd);
            kids[i] = kids[--nkids];
        }
        if (!(pfds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        request rq;
        ssize_t n = recv(sock, &rq, sizeof rq, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break; /* the program is gone */
        if (n != (ssize_t)sizeof rq) continue;
        /* The program's connections follow every request (issue 13.7: a Pipe made after the
         * helper must reach the child too). */
        mproc__conn_batch *conns = NULL;
        int wr = mproc__conn_pass_recv(sock, &conns);
        if (wr == -EPIPE) break;
        mproc__watch_prep w;
        if (wr == 0) wr = mproc__watch_prepare(&w);
        pid_t pid = wr < 0 ? -1 : fork();
        if (pid == 0) {
            close(sock);
            for (size_t i = 0; i < nkids; i++)
                close(kids[i].fd);
            free(kids); /* the helper's bookkeeping, not the child's */
            free(pfds);
            install_conns(conns, &w);
            mproc__sig_apply(rq.disp, own_disp);
            mproc_process p = {.run = rq.run,
                               .arg = rq.arg,
                               .daemon = rq.daemon,
                               .fd = -1,
                               .start_mask = rq.mask,
                               .start_mask_set = true};
            memcpy(p.name, rq.name, sizeof p.name);
            memcpy(p.identity, rq.identity, sizeof p.identity);
            mproc__run_child(&p, self, rq.logical_parent);
        }
        reply rp = {.kind = REPLY_STARTED,
                    .id = rq.id,
                    .pid = pid,
                    .value = wr < 0    ? wr
                             : pid < 0 ? -errno
                                       : 0};
        mproc__conn_pass_free(conns);
        int fd = wr < 0 ? -1 : mproc__watch_in_parent(&w, pid);
        if (pid > 0 && fd < 0) rp.value = fd;
        /* The program gets its own fd to watch the child by; ours tells us when to reap it. */
        int theirs = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd >= 0 && theirs < 0) {
            rp.value = -errno;
            mproc__watch_signal(pid, fd, SIGKILL);
        }
        send_reply(sock, &rp, theirs);
        if (theirs >= 0) close(theirs);
        if (fd >= 0) kids[nkids++] = (child){.id = rq.id, .pid = pid, .fd = fd};
    }
    /* Children die with us through their parent-death signal. */
    _exit(0);
}

/* ---- the program's side ---- */

static int spawn_helper_locked(void)
{
    /* Its children reach the family's objects through the arena it inherits: map it first; and
     * connection handles through the slab, at the same address in all of them. */
    int r = mproc__arena_ensure();
    if (r == 0) r = mproc__conn_reserve();
    if (r < 0) return r;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    mproc__watch_prep w;
    r = mproc__watch_prepare(&w);
    pid_t parent = getpid();
    pid_t pid = r < 0 ? -1 : fork();
    if (pid == 0) {
        close(sv[0]);
        fs_sock = -1;
        mproc__watch_in_child(&w);
        /* The helper's children take the program's signal state from each request. */
        mproc__sig_child_reset(NULL);
        helper_main(sv[1], parent);
    }
    int e = errno;
    close(sv[1]);
    int pfd = r < 0 ? r : mproc__watch_in_parent(&w, pid);
    if (pid < 0 || pfd < 0) {
        close(sv[0]);
        return r < 0 ? r : pid < 0 ? -e : pfd;
    }
    fs_sock = sv[0];
    fs_pidfd = pfd;
    fs_helper = pid;
    fs_owner = parent;
    return 0;
}

/* In a process that did not fork the helper (a child of the library, or a plain fork() of the
 * program, which then calls exit()): drop our copies of the parent's state without touching the
 * helper, which is the parent's. */
static void forget_locked(void)
{
    if (fs_sock >= 0) close(fs_sock);
    if (fs_pidfd >= 0) close(fs_pidfd);
    fs_sock = fs_pidfd = -1;
    free(statuses);
    statuses = NULL;
    nstatus = capstatus = 0;
    next_id = lost_below = 0;
}

/* The helper is gone or must go: reap it; the statuses of its children still running are lost. */
static void helper_gone_locked(void)
{
    if (fs_sock < 0) return;
    if (fs_owner != getpid()) {
        forget_locked();
        return;
    }
    close(fs_sock);
    fs_sock = -1;
    /* Closing the socket tells a live helper to exit; it does so at once. */
    if (mproc__pidfd_wait(fs_pidfd, mproc__deadline(5.0)) != 1)
        mproc__watch_signal(fs_helper, fs_pidfd, SIGKILL);
    mproc__pidfd_wait(fs_pidfd, INT64_MAX);
    int code;
    mproc__watch_reap(fs_helper, fs_pidfd, &code);
    close(fs_pidfd);
    fs_pidfd = -1;
    lost_below = next_id + 1;
}

static void store_status(uint64_t id, int code)
{
    if (nstatus == capstatus) {
        size_t cap = capstatus ? capstatus * 2 : 16;
        status *s = realloc(statuses, cap * sizeof *s);
        if (!s) return; /* the status is lost; the caller reads -ECHILD */
        statuses = s;
        capstatus = cap;
    }
    statuses[nstatus++] = (status){.id = id, .code = code};
}

/* Read one message: 1 read, 0 none ready, <0 the helper is gone. */
static int read_one_locked(reply *rp, int *fd, bool block)
{
    struct iovec iov = {.iov_base = rp, .iov_len = sizeof *rp};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(fs_sock, &m, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n != (ssize_t)sizeof *rp) return -EPIPE;
    *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(fd, CMSG_DATA(c), sizeof *fd);
    if (rp->kind == REPLY_EXITED) store_status(rp->id, rp->value);
    return 1;
}

static int ask_locked(mproc_process *p)
{
    int r = 0;
    if (fs_sock >= 0 && fs_owner != getpid()) forget_locked(); /* a plain fork() of the owner */
    if (fs_sock < 0 && (r = spawn_helper_locked()) < 0) return r;
    request rq;
    memset(&rq, 0, sizeof rq); /* padding included: the whole struct goes over the socket */
    rq.id = ++next_id;
    rq.run = p->run;
    rq.arg = p->arg;
    rq.daemon = p->daemon;
    rq.logical_parent = getpid();
    memcpy(rq.name, p->name, sizeof rq.name);
    memcpy(rq.identity, p->identity, sizeof rq.identity);
    rq.mask = p->start_mask;
    mproc__sig_capture(rq.disp);
    mproc__conn_batch *conns;
    if ((r = mproc__conn_pass_prepare(&conns)) < 0) {
        if (r == -ETOOMANYREFS)
            MPROC__LOG_SELF(MPROC_LOG_ERROR,
                            "forkserver: a child can be given at most %d connections (SCM_MAX_FD) "
                            "and more are open: close some, or start it with fork",
                            MPROC__CONN_PASS_MAX);
        return r;
    }
    bool sent = send(fs_sock, &rq, sizeof rq, MSG_NOSIGNAL) == (ssize_t)sizeof rq &&
                mproc__conn_pass_send(fs_sock, conns) == 0;
    mproc__conn_pass_free(conns);
    if (!sent) return -EPIPE;
    int64_t deadline = mproc__deadline(START_TIMEOUT_S);
    for (;;) {
        struct pollfd pfd = {.fd = fs_sock, .events = POLLIN};
        int pr = poll(&pfd, 1, mproc__poll_ms(deadline));
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) return -ETIMEDOUT;
        reply rp;
        int fd;
        if ((r = read_one_locked(&rp, &fd, false)) < 0) return r;
        if (r == 0 || rp.kind != REPLY_STARTED) continue;
        if (rp.id != rq.id || rp.value < 0) {
            if (fd >= 0) close(fd);
            return rp.value < 0 ? rp.value : -EPROTO;
        }
        p->pid = rp.pid;
        p->fd = fd;
        p->forkserver_id = rq.id;
        return 0;
    }
}

static int forkserver_start(mproc_process *p)
{
    pthread_mutex_lock(&fs_mu);
    int r = ask_locked(p);
    if (r == -EPIPE) {
        /* The helper died (or was killed): start a new one and ask once more. */
        helper_gone_locked();
        r = ask_locked(p);
    }
    pthread_mutex_unlock(&fs_mu);
    return r;
}

/* Exit status of a child of the helper, waiting until the deadline (0: do not wait): 1 known
 * (*code set), 0 not yet, <0 lost (the helper that was its parent is gone). */
static int status_of(uint64_t id, int *code, int64_t deadline)
{
    pthread_mutex_lock(&fs_mu);
    int r;
    for (;;) {
        for (size_t i = 0; i < nstatus; i++)
            if (statuses[i].id == id) {
                *code = statuses[i].code;
                pthread_mutex_unlock(&fs_mu);
                return 1;
            }
        if (id < lost_below || fs_sock < 0) {
            r = -ECHILD;
            break;
        }
        reply rp;
        int fd;
        while ((r = read_one_locked(&rp, &fd, false)) > 0)
            if (fd >= 0) close(fd);
        if (r < 0) {
            helper_gone_locked();
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < nstatus && !found; i++)
            found = statuses[i].id == id;
        if (found) continue;
        if (mproc__remaining_ns(deadline) <= 0) {
            r = 0;
            break;
        }
        /* Wait for the helper's next message without holding the lock, so other threads can go
         * on starting processes meanwhile. */
        int sock = fs_sock;
        pthread_mutex_unlock(&fs_mu);
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        poll(&pfd, 1, mproc__poll_ms(deadline));
        pthread_mutex_lock(&fs_mu);
    }
    pthread_mutex_unlock(&fs_mu);
    return r;
}

/* Forget a status once its handle is freed. */
static void forkserver_release(mproc_process *p)
{
    uint64_t id = p->forkserver_id;
    if (!id) return;
    pthread_mutex_lock(&fs_mu);
    for (size_t i = 0; i < nstatus; i++)
        if (statuses[i].id == id) {
            statuses[i] = statuses[--nstatus];
            break;
        }
    pthread_mutex_unlock(&fs_mu);
}

void mproc__forkserver_stop(void)
{
    pthread_mutex_lock(&fs_mu);
    helper_gone_locked();
    pthread_mutex_unlock(&fs_mu);
}

int mproc__forkserver_prestart(void)
{
    pthread_mutex_lock(&fs_mu);
    if (fs_sock >= 0 && fs_owner != getpid()) forget_locked();
    int r = fs_sock < 0 ? spawn_helper_locked() : 0;
    pthread_mutex_unlock(&fs_mu);
    return r;
}

pid_t mproc__forkserver_pid(void)
{
    pthread_mutex_lock(&fs_mu);
    pid_t pid = fs_pidfd >= 0 && fs_owner == getpid() ? fs_helper : 0;
    pthread_mutex_unlock(&fs_mu);
    return pid;
}

static void forkserver_forget(void)
{
    /* Runs in a new child: the lock may have been held by another thread of the parent. */
    pthread_mutex_init(&fs_mu, NULL);
    forget_locked();
}

static int forkserver_reap(mproc_process *p, int *code)
{
    int r = status_of(p->forkserver_id, code, 0);
    if (r >= 0) return r;
    /* The helper that was its parent died: the status is gone once the process is. */
    return mproc__pidfd_wait(p->fd, 0) == 1 ? -ECHILD : 0;
}

static void forkserver_await(mproc_process *p, int64_t deadline)
{
    int code;
    status_of(p->forkserver_id, &code, deadline);
}

const mproc__start_ops mproc__start_forkserver_ops = {
    .name = "forkserver",
    .start = forkserver_start,
    .reap = forkserver_reap,
    .await = forkserver_await,
    .signal = mproc__signal_watched,
    .release = forkserver_release,
    .forget_in_child = forkserver_forget,
    .stop = mproc__forkserver_stop,
};
