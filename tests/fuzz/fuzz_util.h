/* What the fuzz targets share: a reference parser of the connection framing (Python's
 * multiprocessing.connection: a 4-byte big-endian signed length, or -1 and an 8-byte length,
 * then the bytes), written from the protocol rather than from src/channel/conn.c, and a stream
 * pair to feed a connection the fuzzer's bytes. */
#ifndef MPROC_FUZZ_UTIL_H
#define MPROC_FUZZ_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mproc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property broken: say which, and abort so that libFuzzer saves the input. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef enum { REF_MESSAGE, REF_END, REF_BROKEN } ref_kind;

typedef struct {
    const uint8_t *data;
    size_t len, at;
    size_t max_message;
} ref_stream;

/* The next frame of the stream: REF_MESSAGE with *msg and *msg_len, REF_END when the stream ends
 * between frames (the reader's MPROC_ECLOSED), REF_BROKEN for a length below -1, a length over
 * max_message, or an end inside a frame (MPROC_EPROTO). *claimed gets the length the header
 * claims when there is a whole header. */
static inline ref_kind ref_next(ref_stream *s, const uint8_t **msg, uint64_t *msg_len,
                                uint64_t *claimed)
{
    size_t rest = s->len - s->at;
    if (rest == 0) return REF_END;
    if (rest < 4) return REF_BROKEN;
    const uint8_t *p = s->data + s->at;
    int32_t v = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    uint64_t n;
    size_t hdr = 4;
    if (v == -1) {
        if (rest < 12) return REF_BROKEN;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[4 + i];
        hdr = 12;
    } else if (v < 0) {
        return REF_BROKEN;
    } else {
        n = (uint64_t)v;
    }
    *claimed = n;
    if (n > s->max_message) return REF_BROKEN;
    if (n > rest - hdr) return REF_BROKEN;
    *msg = p + hdr;
    *msg_len = n;
    s->at += hdr + (size_t)n;
    return REF_MESSAGE;
}

/* A duplex pipe: *ours is the connection under test, *peer_fd the raw other end. */
static inline void fuzz_pair(mproc_conn **ours, mproc_conn **peer, int *peer_fd)
{
    int r = mproc_pipe(ours, peer, true);
    FUZZ_CHECK(r == 0, "mproc_pipe: %s", mproc_strerror(r));
    *peer_fd = mproc_conn_fd(*peer);
}

/* Write all of data to fd (a socket whose buffer holds a fuzz input) and end the stream. */
static inline void fuzz_feed_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        FUZZ_CHECK(n > 0, "send to the peer socket failed");
        data += n;
        len -= (size_t)n;
    }
    shutdown(fd, SHUT_WR);
}

#endif
