/* mproc: pipes, connections, listeners and clients; wire-compatible with Python's
 * multiprocessing.connection (send_bytes/recv_bytes framing and the authkey handshake).
 *
 * A connection carries whole messages (byte strings, zero length allowed) over a stream fd.
 * Frame: a 4-byte big-endian signed length, then the payload; payloads above 0x7fffffff bytes
 * are framed as the length -1 followed by an 8-byte big-endian length (as Python does).
 *
 * Error codes of the connection calls:
 *   MPROC_ECLOSED  the peer closed the connection (end of file) between messages
 *   MPROC_EPROTO   malformed stream: the peer closed in the middle of a message, a negative
 *                  length, or a frame longer than the connection's max_message. The connection
 *                  is then broken for reading (every later recv/poll returns MPROC_EPROTO);
 *                  sending still works, as in Python.
 *   -EMSGSIZE      recv's buffer is too small: *len says how big the message is and the message
 *                  stays in the connection for the next recv/recv_alloc (Python discards it with
 *                  BufferTooShort; keeping it loses nothing).
 *   -EPIPE         send to a peer that has gone away (never a SIGPIPE, for sockets and pipes)
 *   -EBADF         the wrong direction of a one-way pipe end (send on the read end, ...)
 *   -ETIMEDOUT     recv/accept timed out; -EAGAIN for timeout 0 with nothing to read
 *   -EINTR         a signal handler ran while the call waited (SA_RESTART or not; ignored signals
 *                  interrupt nothing): recv, recv_alloc, poll, mproc_wait, accept, connect and the
 *                  handshakes; send only while it waits for room before the first byte of its
 *                  message is out (nothing sent: send it again). Once a part is out, send finishes
 *                  the message, so a frame is never torn.
 *   -EINVAL        NULL or garbage handle, bad argument
 * A recv that times out or is interrupted in the middle of a message keeps what it has read; the
 * next recv continues the same message, so neither desynchronises the stream.
 *
 * A connection is used by one thread at a time (like a Python Connection). A child process holds
 * its own copy of every connection its parent held at its start, under every start method: the
 * same handle, sharing the same open file, so Python's Pipe idiom (each side closes the end it does
 * not use) works; only one side should read a given message. fork: inherited. forkserver: passed
 * to the child with SCM_RIGHTS at the same fd numbers (at most 253 connections: a start with more
 * fails with -ETOOMANYREFS). thread: the thread holds its own reference, and a close lets go of
 * the caller's only. Details: docs/connection.md. All fds the library creates are close-on-exec.
 */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_conn mproc_conn;
typedef struct mproc_listener mproc_listener;

/* Default limit on the size of one received frame (1 GiB). Python has no limit; a limit keeps a
 * hostile or confused peer from making us allocate whatever its header claims. */
#define MPROC_CONN_DEFAULT_MAX_MESSAGE ((size_t)1 << 30)
/* Default time allowed for connecting and for the authkey handshake (Python's
 * CONNECTION_TIMEOUT). */
#define MPROC_CONN_DEFAULT_HANDSHAKE_TIMEOUT 20.0

/* Options for listeners and clients (NULL or zero fields: defaults). */
typedef struct {
    size_t max_message;       /* frame limit of the connections made; 0: 1 GiB */
    double handshake_timeout; /* connect (client) and authkey handshake (both); 0: 20 s;
                                 MPROC_FOREVER: no limit */
} mproc_conn_opts;

/* A connected pair. duplex: a socketpair, both ends read and write. Otherwise a pipe: *a is the
 * read end and *b the write end, as Python's Pipe(duplex=False) returns (reader, writer). */
int mproc_pipe(mproc_conn **a, mproc_conn **b, bool duplex);

/* Wrap an existing stream fd (socket or pipe end; ownership passes to the connection, which
 * closes it). At least one of readable/writable. */
int mproc_conn_from_fd(mproc_conn **out, int fd, bool readable, bool writable);

/* Send one message (blocks until it is all written; handles partial writes; -EINTR above). */
int mproc_conn_send(mproc_conn *c, const void *data, size_t len);

/* Receive one message into buf. *len receives its length (also on -EMSGSIZE). */
int mproc_conn_recv(mproc_conn *c, void *buf, size_t cap, size_t *len, double timeout);

/* Receive one message into a malloc'd buffer (free() it; non-NULL even for length 0). */
int mproc_conn_recv_alloc(mproc_conn *c, void **data, size_t *len, double timeout);

/* 1 if there is something to read (a message, or end of file: recv then says which), 0 if
 * not within timeout. */
int mproc_conn_poll(mproc_conn *c, double timeout);

/* The connection's fd, for poll/epoll/mproc_wait; -EINVAL for a bad handle. */
int mproc_conn_fd(const mproc_conn *c);

/* Frames longer than max are refused before any allocation (MPROC_EPROTO, connection broken). */
int mproc_conn_set_max_message(mproc_conn *c, size_t max);

/* Close the fd and free the connection. NULL-safe. In thread mode: drop the calling process-
 * thread's reference; the fd is closed with the last one. */
void mproc_conn_close(mproc_conn *c);

/* Listen on an address:
 *   "unix:/path"      filesystem socket; the file is unlinked by mproc_listener_free (in the
 *                     process that created the listener), and binding fails with -EADDRINUSE if
 *                     the file exists, as in Python
 *   "unix:@name"      Linux abstract socket (Python's "\0name")
 *   "tcp:host:port"   IPv4 or IPv6 (brackets optional for IPv6: "tcp:[::1]:0"); port 0 picks a
 *                     free port (see mproc_listener_address); an empty host listens on all
 *                     interfaces
 * authkey: NULL for no handshake. Otherwise (even with keylen 0, like Python's b"") every
 * accepted connection must pass Python's mutual HMAC challenge/response first.
 * Unresolvable host: -EADDRNOTAVAIL; malformed address: -EINVAL; path too long: -ENAMETOOLONG. */
int mproc_listener_new(mproc_listener **out, const char *address, const void *authkey,
                       size_t keylen);
int mproc_listener_new_opts(mproc_listener **out, const char *address, const void *authkey,
                            size_t keylen, const mproc_conn_opts *opts);

/* Accept one connection, after the handshake if there is an authkey. timeout bounds the wait;
 * each handshake has its own limit (handshake_timeout), counted from when its client was taken
 * from the backlog. A keyed listener runs the handshakes of several clients side by side (at most
 * mproc_listener_set_max_handshakes at once) and returns the first that passed, so a slow or
 * silent client holds up nobody else; the pending ones go on in the next call (they are kept in
 * the listener, across -ETIMEDOUT and -EINTR). A handshake that failed is reported by a call with
 * no connection to return (several that failed together, once), its connection closed, no
 * message delivered: a peer with the wrong key (or that does not speak
 * the protocol): MPROC_EAUTH, for the peer too; a peer that closed, MPROC_ECLOSED; one
 * that ran out of handshake_timeout, -ETIMEDOUT. Call it again for the next client. -EINTR while
 * waiting. */
int mproc_listener_accept(mproc_listener *l, mproc_conn **out, double timeout);

/* How many handshakes a keyed listener runs at once (default
 * MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES). A new client that finds them all running drops the
 * oldest (closed, not reported), so a flood of silent clients cannot lock out good ones; lowering
 * it drops the oldest beyond the new bound at once. No effect without an authkey. 0 or NULL:
 * -EINVAL. */
#define MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES 64
int mproc_listener_set_max_handshakes(mproc_listener *l, size_t n);

/* The bound address in the syntax above, e.g. "tcp:127.0.0.1:41234" for "tcp:127.0.0.1:0".
 * Valid until mproc_listener_free; NULL for a bad handle. */
const char *mproc_listener_address(const mproc_listener *l);

/* An fd to poll for event loops, readable when accept can make progress. Without an authkey the
 * listening socket (readable when a peer waits to be accepted); with one an epoll fd over the
 * listening socket (non-blocking then), the pending handshakes and their deadlines: readable when
 * a client waits, a pending handshake has something to read, or one's deadline passed. An accept
 * with timeout 0 then does what can be done without blocking (-EAGAIN while no handshake has
 * finished). Owned by the listener: do not close it. */
int mproc_listener_fd(const mproc_listener *l);

/* Close the listener (and unlink its socket file). NULL-safe. */
void mproc_listener_free(mproc_listener *l);

/* Connect to a listener (same addresses); handshake as the client if authkey is not NULL. */
int mproc_client_connect(mproc_conn **out, const char *address, const void *authkey, size_t keylen);
int mproc_client_connect_opts(mproc_conn **out, const char *address, const void *authkey,
                              size_t keylen, const mproc_conn_opts *opts);

/* Python's multiprocessing.connection.wait: wait until at least one of fds (connection fds,
 * process sentinels, any fd) is readable or at end of file/hung up. Fills ready[i] for each and
 * returns how many are ready; 0 on timeout (not an error, as Python returns []). -EINVAL for NULL
 * arrays, n == 0 or a negative fd; -EBADF for an fd that is not open. */
int mproc_wait(const int *fds, size_t n, bool *ready, double timeout);

#ifdef __cplusplus
}
#endif
#endif
