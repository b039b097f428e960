/* Internals shared by the connection, handshake and listener files. */
#ifndef MPROC_CHANNEL_CONN_H
#define MPROC_CHANNEL_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mproc/conn.h"

#define MPROC__CONN_MAGIC 0x436f6e6eu /* "Conn" */

/* Largest frame header: -1 then an 8-byte length. */
#define MPROC__CONN_FRAME_HEADER_MAX 12

struct mproc_conn {
    uint32_t magic;
    int fd;
    /* The "processes" that hold it (conn_share.c): contexts, 0 the process itself. More than one
     * only in thread mode, where each thread that stands for a process holds its own reference. */
    uint32_t nholders, capholders;
    uintptr_t *holders; /* holders_inline, or malloc'd */
    uintptr_t holders_inline[2];
    bool readable, writable, is_socket;
    bool broken; /* the read side lost framing: every later read fails */
    /* A pipe: reads and writes that must not block use RWF_NOWAIT (not for regular files, where it
     * fails with EAGAIN that poll cannot wait out); else they poll first. */
    bool nowait;
    size_t max_message;
    /* The message being received, kept across calls that return early (timeout, -EMSGSIZE), so a
     * later call continues where the last one stopped. */
    unsigned char hdr[MPROC__CONN_FRAME_HEADER_MAX];
    size_t hdr_have;
    bool have_len;
    uint64_t msg_len;
    unsigned char *partial; /* body bytes read so far when a call returned mid-body */
    size_t body_have;
};

/* Encode the frame header for a payload of len bytes; returns its size (4 or 12). */
size_t mproc__frame_header(uint64_t len, unsigned char out[MPROC__CONN_FRAME_HEADER_MAX]);

/* ---- where handles live (conn_share.c) ----
 * Handles are slots of a private mapping at the same address in every process of the family
 * (reserved before the forkserver helper is forked), so a handle in a child's argument is valid
 * there: inherited by a fork child, installed in a forkserver child from what its parent passes. */

/* Reserve the slab (idempotent). 0 or -ENOMEM. */
int mproc__conn_reserve(void);
/* A zeroed slot held by the calling context, or -ENOMEM / -EMFILE (slab full). */
int mproc__conn_alloc(mproc_conn **out);
/* The calling context lets go of c; the last holder closes its fd and frees the slot. */
void mproc__conn_release(mproc_conn *c);

/* Thread mode: a thread about to stand for a new process (ctx: any unique non-zero value, e.g.
 * its handle) gets its own reference to every connection the caller holds, as a fork child gets
 * its own fds; -ENOMEM. The thread enters ctx first thing, and drops ctx when its body returned
 * (also the undo when the thread could not be started). */
int mproc__conn_ctx_share(uintptr_t ctx);
void mproc__conn_ctx_enter(uintptr_t ctx);
void mproc__conn_ctx_drop(uintptr_t ctx);

/* Forkserver: hand every connection the caller holds to a child the helper is about to fork.
 * The parent prepares the batch (-ETOOMANYREFS above MPROC__CONN_PASS_MAX connections, before
 * anything is sent) and sends it over the helper's socket (SCM_RIGHTS) right after its request;
 * the helper receives it; the child installs the connections at the same fd numbers and handle
 * addresses, moving the fds in keep[] (updated) out of their way; the helper then frees its copy
 * (closing the fds it received). */
#define MPROC__CONN_PASS_MAX 253 /* the kernel's SCM_MAX_FD */
typedef struct mproc__conn_batch mproc__conn_batch;
int mproc__conn_pass_prepare(mproc__conn_batch **out);
int mproc__conn_pass_send(int sock, const mproc__conn_batch *b);
int mproc__conn_pass_recv(int sock, mproc__conn_batch **out);
int mproc__conn_pass_install(mproc__conn_batch *b, int *keep, size_t nkeep);
void mproc__conn_pass_free(mproc__conn_batch *b);
/* In the helper, at its start: close every connection inherited from the program. Its children get
 * the program's current ones with each start; a copy kept in the helper would keep a pipe's end
 * open after the program and the child closed theirs (no end of file). Single-threaded callers. */
void mproc__conn_drop_all(void);

/* Wrap fd (ownership passes on success). */
int mproc__conn_wrap(mproc_conn **out, int fd, bool readable, bool writable, bool is_socket);

/* recv with an absolute deadline (mproc__deadline). */
int mproc__conn_recv_deadline(mproc_conn *c, void *buf, size_t cap, size_t *len, int64_t deadline);

/* Wait until fd is readable (or hung up) or the deadline: 1, 0 on timeout, -EINTR when a signal
 * handler ran while it slept (platform/interrupt.h), <0 error. A look first: no mask change when
 * it is readable already. */
int mproc__poll_in(int fd, int64_t deadline);

/* The authkey handshake (auth.c), with Python's roles: the server delivers a challenge, then
 * answers the client's; the client does the reverse. 0, MPROC_EAUTH, or an I/O error. */
int mproc__auth_deliver(mproc_conn *c, const void *key, size_t keylen, int64_t deadline);
int mproc__auth_answer(mproc_conn *c, const void *key, size_t keylen, int64_t deadline);
/* The same handshake in pieces with no I/O, for a server with its own event loop (the manager):
 * every message is one frame (mproc__frame_header) of at most MPROC__AUTH_MSG_MAX bytes
 * (CPython's recv_bytes(256)). challenge: the message to deliver ("#CHALLENGE#{sha256}" and 40
 * random bytes); check: the peer's response to it, 0 or MPROC_EAUTH (then send
 * mproc__auth_failure, else mproc__auth_welcome); respond: the answer to the peer's challenge, 0 or
 * MPROC_EAUTH; then the peer's verdict is_welcome or not. */
#define MPROC__AUTH_MSG_MAX 256
#define MPROC__AUTH_CHALLENGE_LEN 59
int mproc__auth_challenge(unsigned char out[MPROC__AUTH_CHALLENGE_LEN]);
int mproc__auth_check(const void *key, size_t keylen,
                      const unsigned char challenge[MPROC__AUTH_CHALLENGE_LEN],
                      const unsigned char *resp, size_t resp_len);
int mproc__auth_respond(const void *key, size_t keylen, const unsigned char *in, size_t in_len,
                        unsigned char out[MPROC__AUTH_MSG_MAX], size_t *out_len);
bool mproc__auth_is_welcome(const unsigned char *m, size_t len);
extern const char *const mproc__auth_welcome, *const mproc__auth_failure;
/* The server's whole side as a step function with no I/O, for servers that run many handshakes
 * side by side (the listener's accept, the manager's event loop): one copy of the protocol for
 * both. start makes the challenge (h->challenge, MPROC__AUTH_CHALLENGE_LEN bytes, the first
 * message to send; 0 or -EIO). step takes one message of the peer and leaves in out the one to send
 * back (*out_len 0: none): 0 go on, 1 passed (the connection is the caller's to use), MPROC_EAUTH
 * failed (out holds #FAILURE# when the peer should learn it: send it best effort, then hang up). */
enum {
    MPROC__AUTH_SRV_RESPONSE,  /* waits for the answer to our challenge */
    MPROC__AUTH_SRV_CHALLENGE, /* waits for the peer's challenge */
    MPROC__AUTH_SRV_VERDICT,   /* waits for the peer's #WELCOME# */
    MPROC__AUTH_SRV_PASSED,
    MPROC__AUTH_SRV_FAILED
};
typedef struct {
    int state;
    unsigned char challenge[MPROC__AUTH_CHALLENGE_LEN];
} mproc__auth_srv;
int mproc__auth_srv_start(mproc__auth_srv *h);
int mproc__auth_srv_step(mproc__auth_srv *h, const void *key, size_t keylen, const unsigned char *m,
                         size_t len, unsigned char out[MPROC__AUTH_MSG_MAX], size_t *out_len);

/* A keyed listener's pending handshakes (handshakes.c): accepted from the listening socket lfd
 * (non-blocking; tcp: TCP_NODELAY on each), each run with mproc__auth_srv_step under key (kept by
 * the caller) within timeout seconds, at most max at once (a new client past that drops the
 * oldest). next is one round that never blocks: a socket whose handshake passed (non-blocking, the
 * caller's), a failed handshake's code (MPROC_EAUTH, MPROC_ECLOSED, -ETIMEDOUT; that connection is
 * closed) or an accept error, or -EAGAIN for nothing yet; fd is readable when a round can make
 * progress. Thread- safe; a fork child's first call drops the copies of its parent's pending ones.
 */
typedef struct mproc__hs_set mproc__hs_set;
int mproc__hs_new(mproc__hs_set **out, int lfd, bool tcp, const void *key, size_t keylen,
                  double timeout);
void mproc__hs_free(mproc__hs_set *s);
int mproc__hs_fd(const mproc__hs_set *s);
void mproc__hs_set_max(mproc__hs_set *s, size_t max);
int mproc__hs_next(mproc__hs_set *s);

/* Addresses (address.c). */
typedef struct {
    int family;
    socklen_t len;
    struct sockaddr_storage sa;
} mproc__addr;

#define MPROC__ADDRESS_MAX 8
/* Resolve "unix:/p", "unix:@n" or "tcp:host:port" into up to max candidates; returns how many
 * (>= 1) or a negative code. passive: for bind (empty host = all interfaces). */
int mproc__address_resolve(const char *address, bool passive, mproc__addr *out, int max);
/* Name a bound tcp socket in the library syntax ("tcp:1.2.3.4:5", "tcp:[::1]:5"). */
int mproc__address_format_tcp(int fd, char *buf, size_t cap);

#endif
