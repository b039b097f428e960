/* The connection frame reader (src/channel/conn.c) against the reference parser (fuzz_util.h).
 *
 * Input: byte 0 picks max_message, byte 1 the size of the pieces the stream arrives in, byte 2
 * how the frames are received (into a small buffer, which gives -EMSGSIZE and a retry; into a
 * large one; with recv_alloc; mixed), the rest is the byte stream. The stream is written piece by
 * piece and received with timeout 0 in between, so a frame is often read across several calls
 * (the partial header and body kept in the connection). Every frame must equal the reference's,
 * the stream must end as the reference says (MPROC_ECLOSED between frames, MPROC_EPROTO for a bad
 * length, an oversize one or an end inside a frame), and a broken connection stays broken. A
 * wait that a signal interrupts (-EINTR) is retried: the frame must still come out whole. */
#include "fuzz_util.h"

static const size_t max_choices[] = {0, 1, 7, 16, 255, 256, 4096, 65536};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    size_t max_message = max_choices[data[0] % (sizeof max_choices / sizeof max_choices[0])];
    size_t piece = data[1] == 0 ? (size_t)-1 : data[1];
    unsigned mode = data[2];
    data += 3;
    size -= 3;

    mproc_conn *c, *peer;
    int fd;
    fuzz_pair(&c, &peer, &fd);
    FUZZ_CHECK(mproc_conn_set_max_message(c, max_message) == 0, "set_max_message");
    ref_stream ref = {.data = data, .len = size, .max_message = max_message};

    size_t written = 0;
    bool ended = false, retry_big = false;
    unsigned char *big = malloc(max_message + 1);
    FUZZ_CHECK(big != NULL, "malloc");
    for (unsigned step = 0;; step++) {
        FUZZ_CHECK(step < 4 * size + 64, "no progress after %u steps", step);
        if (!ended) {
            size_t n = size - written < piece ? size - written : piece;
            if (n > 0) {
                ssize_t w = send(fd, data + written, n, MSG_NOSIGNAL);
                FUZZ_CHECK(w == (ssize_t)n, "send %zu bytes: %zd", n, w);
                written += n;
            }
            if (written == size) {
                shutdown(fd, SHUT_WR);
                ended = true;
            }
        }
        /* How this frame is taken: bits of mode, rotating per step. */
        unsigned how = retry_big ? 1 : (mode >> (2 * (step % 4))) & 3;
        retry_big = false;
        size_t len = 0;
        void *got = NULL;
        int r;
        if (how == 3) {
            r = mproc_conn_recv_alloc(c, &got, &len, 0);
        } else {
            size_t cap = how == 0 ? 3 : how == 1 ? max_message + 1 : 0;
            r = mproc_conn_recv(c, big, cap, &len, 0);
            if (r == 0) got = big;
            if (r == -EMSGSIZE) {
                /* The header is in: the claimed length is the reference's, and a large
                 * enough buffer gets the frame on a later call. */
                FUZZ_CHECK(len > cap && len <= max_message, "EMSGSIZE with len %zu, cap %zu", len,
                           cap);
                retry_big = true;
                continue;
            }
        }
        if (r == -EAGAIN) {
            FUZZ_CHECK(!ended, "EAGAIN after the stream ended (%zu bytes)", size);
            continue;
        }
        /* libFuzzer's timeout alarm (SIGALRM) ran its handler in the wait: the documented
         * -EINTR, with whatever was read kept for the next call. */
        if (r == -EINTR) continue;
        const uint8_t *want;
        uint64_t want_len = 0, claimed = 0;
        ref_kind k = ref_next(&ref, &want, &want_len, &claimed);
        if (r == 0) {
            FUZZ_CHECK(k == REF_MESSAGE, "a frame of %zu bytes where the reference says %d", len,
                       (int)k);
            FUZZ_CHECK(len == want_len && (len == 0 || memcmp(got, want, len) == 0),
                       "frame of %zu bytes differs from the reference's %llu", len,
                       (unsigned long long)want_len);
            if (got != big) free(got);
            continue;
        }
        if (r == MPROC_ECLOSED) {
            FUZZ_CHECK(k == REF_END, "ECLOSED where the reference says %d", (int)k);
        } else {
            FUZZ_CHECK(r == MPROC_EPROTO, "unexpected %d (%s)", r, mproc_strerror(r));
            FUZZ_CHECK(k == REF_BROKEN, "EPROTO where the reference says %d", (int)k);
            /* Broken is for good. */
            r = mproc_conn_recv(c, big, max_message + 1, &len, 0);
            FUZZ_CHECK(r == MPROC_EPROTO, "a broken connection read again gave %d", r);
        }
        break;
    }
    free(big);
    mproc_conn_close(c);
    mproc_conn_close(peer);
    return 0;
}
