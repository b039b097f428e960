/* Offering and adopting the arena: a native client on the same machine (a unix socket) asks the
 * server for its arena right after HELLO; if the policy lets it, the server sends the arena's
 * memfd (SCM_RIGHTS) with its address, size, the library's build id and the server's pid
 * namespace. A client that has no arena of its own yet, runs the same build and sees the same
 * pids maps it at the same address and from then on is a family member: OPEN gives it the arena
 * objects themselves (memory speed), the connection stays for names, creation and deletion.
 *
 * Why each check: arena objects hold absolute pointers (same address), their layout is the
 * build's (same build id), and robust mutexes and the process layer name owners by pid (same
 * pid namespace). The uid check is the default policy: the memfd gives whoever holds it write
 * access to every object, so by default only the server's own user gets it. Anything that does
 * not fit leaves the client on proxies, silently: mapping is an optimisation, never a failure. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena/arena.h"
#include "manager/client.h"
#include "manager/server.h"

extern const unsigned char mproc__build_id[32];

#define SHARE_BODY (8 + 8 + 32 + 8 + 8)

static void pid_ns(uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) < 0) {
        *dev = *ino = 0;
        return;
    }
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
}

int mgr_share_policy(int opt)
{
    if (opt != MPROC_MANAGER_SHARE_DEFAULT) return opt;
    const char *e = getenv("MPROC_MANAGER_SHARE_ARENA");
    if (e && strcmp(e, "none") == 0) return MPROC_MANAGER_SHARE_NONE;
    if (e && strcmp(e, "any-user") == 0) return MPROC_MANAGER_SHARE_ANY_USER;
    return MPROC_MANAGER_SHARE_SAME_USER;
}

void mgr_share_offer(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h)
{
    int pol = s->o.share_arena;
    if (c->tcp || pol == MPROC_MANAGER_SHARE_NONE) {
        mgr_reply(c, h->id, -EPERM, NULL, 0);
        return;
    }
    if (pol == MPROC_MANAGER_SHARE_SAME_USER) {
        struct ucred cr;
        socklen_t len = sizeof cr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != geteuid()) {
            mgr_reply(c, h->id, -EPERM, NULL, 0);
            return;
        }
    }
    /* The fd rides on the reply's first byte: nothing else may be waiting to go before it. */
    if (mproc__arena_share_fd() < 0 || c->out_len != c->out_off || c->pass_arena) {
        mgr_reply(c, h->id, -EOPNOTSUPP, NULL, 0);
        return;
    }
    unsigned char out[SHARE_BODY], *p = out;
    uint64_t dev, ino;
    pid_ns(&dev, &ino);
    p = mgr_put64(p, (uint64_t)(uintptr_t)mproc__arena_lo);
    p = mgr_put64(p, mproc__arena_size());
    memcpy(p, mproc__build_id, 32);
    p += 32;
    p = mgr_put64(p, dev);
    mgr_put64(p, ino);
    mgr_reply(c, h->id, 0, out, sizeof out);
    c->pass_arena = !c->dead;
}

ssize_t mgr_share_send(int fd, const void *buf, size_t len)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct iovec v = {(void *)buf, len};
    struct msghdr mh = {
        .msg_iov = &v, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int afd = mproc__arena_share_fd();
    memcpy(CMSG_DATA(cm), &afd, sizeof afd);
    return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- the client ---- */

/* Read exactly n bytes, keeping the first fd that comes with them (*fd, else -1 stays). */
static int recv_exact(int sock, unsigned char *buf, size_t n, int *fd)
{
    size_t got = 0;
    while (got < n) {
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(4 * sizeof(int))];
        } u;
        struct iovec v = {buf + got, n - got};
        struct msghdr mh = {
            .msg_iov = &v, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
        ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -EPIPE;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int f;
                memcpy(&f, CMSG_DATA(cm) + i * sizeof f, sizeof f);
                if (*fd < 0)
                    *fd = f;
                else
                    close(f); /* more than one: not ours to keep */
            }
        }
        got += (size_t)r;
    }
    return 0;
}

static bool map_wanted(const mproc_manager *m)
{
    const char *e = getenv("MPROC_MANAGER_MAP");
    if (e && strcmp(e, "0") == 0) return false;
    int dom = 0;
    socklen_t len = sizeof dom;
    if (getsockopt(m->fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) < 0 || dom != AF_UNIX) return false;
    /* A process with an arena of its own keeps it: its objects live there. */
    return !mproc__arena_ready();
}

int mgr_share_adopt(mproc_manager *m)
{
    if (!map_wanted(m)) return 0;
    if (++m->next_id == 0) m->next_id = 1;
    mproc__mgr_req h = {.len = 0, .id = m->next_id, .op = MGR_SHARE};
    const unsigned char *p = (const unsigned char *)&h;
    for (size_t off = 0; off < sizeof h;) {
        ssize_t w = send(m->fd, p + off, sizeof h - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -EPIPE;
        off += (size_t)w;
    }
    int fd = -1;
    mproc__mgr_rep rep;
    unsigned char body[SHARE_BODY];
    int r = recv_exact(m->fd, (unsigned char *)&rep, sizeof rep, &fd);
    if (r == 0 && rep.id != h.id) r = MPROC_EPROTO;
    if (r == 0 && rep.status < 0) {
        /* refused: the body (if any) is short; read it so the stream stays in step */
        unsigned char junk[64];
        if (rep.len > sizeof junk) r = MPROC_EPROTO;
        if (r == 0 && rep.len) r = recv_exact(m->fd, junk, rep.len, &fd);
        if (fd >= 0) close(fd);
        return r;
    }
    if (r == 0 && rep.len != SHARE_BODY) r = MPROC_EPROTO;
    if (r == 0) r = recv_exact(m->fd, body, sizeof body, &fd);
    if (r < 0) {
        if (fd >= 0) close(fd);
        return r;
    }
    if (fd < 0) return 0;
    uint64_t base = mgr_get64(body), size = mgr_get64(body + 8), dev, ino;
    pid_ns(&dev, &ino);
    if (memcmp(body + 16, mproc__build_id, 32) == 0 && mgr_get64(body + 48) == dev &&
        mgr_get64(body + 56) == ino && dev != 0)
        mproc__arena_adopt(fd, (size_t)size, (void *)(uintptr_t)base);
    /* The mapping keeps the memory; the fd is not needed (a received one would leak). */
    close(fd);
    return 0;
}
