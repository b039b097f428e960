/* Internals shared by the connection, handshake and listener files. */
#ifndef MPROC_CHANNEL_CONN_H
#define MPROC_CHANNEL_CONN_H

#include <stdint.h>
#include <sys/socket.h>

#include "mproc/conn.h"

#define MPROC__CONN_MAGIC 0x436f6e6eu /* "Conn" */

/* Largest frame header: -1 then an 8-byte length. */
#define MPROC__CONN_FRAME_HEADER_MAX 12

struct mproc_conn {
    uint32_t magic;
    int fd;
    bool readable, writable, is_socket;
    bool broken; /* the read side lost framing: every later read fails */
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

/* Wrap fd (ownership passes on success). */
int mproc__conn_wrap(mproc_conn **out, int fd, bool readable, bool writable, bool is_socket);

/* recv with an absolute deadline (mproc__deadline). */
int mproc__conn_recv_deadline(mproc_conn *c, void *buf, size_t cap, size_t *len, int64_t deadline);

/* Wait until fd is readable (or hung up) or the deadline: 1, 0 on timeout, <0 error. */
int mproc__poll_in(int fd, int64_t deadline);

/* The authkey handshake (auth.c), with Python's roles: the server delivers a challenge, then
 * answers the client's; the client does the reverse. 0, MPROC_EAUTH, or an I/O error. */
int mproc__auth_deliver(mproc_conn *c, const void *key, size_t keylen, int64_t deadline);
int mproc__auth_answer(mproc_conn *c, const void *key, size_t keylen, int64_t deadline);

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
