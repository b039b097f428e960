/* Both sides of the authkey handshake (src/channel/auth.c) against a peer that sends the
 * fuzzer's bytes. Byte 0: which side we play (even: the server, mproc__auth_deliver; odd: the
 * client, mproc__auth_answer) and the key's length; the rest is the raw stream the peer sends
 * (framing included, so broken frames are fuzzed too), then it ends.
 *
 * Properties: the handshake returns 0, MPROC_EAUTH or MPROC_ECLOSED, never hangs (the stream
 * ends, so every wait ends) and never reads past a frame. The server cannot succeed (the
 * challenge is random and the key secret); the client succeeds only when the reference parser
 * finds a "#CHALLENGE#" frame then a "#WELCOME#" frame, and its reply is then a well-formed
 * frame of a response. */
#include <errno.h>

#include "channel/conn.h"
#include "fuzz_util.h"
#include "platform/platform.h"

static const char key_bytes[] = "fuzz authkey: thirty-two bytes!!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool server = (data[0] & 1) == 0;
    size_t keylen = (size_t)(data[0] >> 1) % sizeof key_bytes;
    data++;
    size--;

    mproc_conn *c, *peer;
    int fd;
    fuzz_pair(&c, &peer, &fd);
    fuzz_feed_all(fd, data, size);
    /* A deadline only as a guard: the stream has ended, so no wait should reach it. */
    int64_t deadline = mproc__deadline(10.0);
    int r = server ? mproc__auth_deliver(c, key_bytes, keylen, deadline)
                   : mproc__auth_answer(c, key_bytes, keylen, deadline);
    /* libFuzzer's timeout alarm (SIGALRM) landed in a wait: the handshake ends with the
     * documented -EINTR and this input says nothing either way. */
    if (r == -EINTR) goto out;
    FUZZ_CHECK(r == 0 || r == MPROC_EAUTH || r == MPROC_ECLOSED, "%s returned %d (%s)",
               server ? "deliver" : "answer", r, mproc_strerror(r));
    if (server) {
        FUZZ_CHECK(r != 0, "the server accepted a peer that cannot know the challenge");
    } else if (r == 0) {
        ref_stream ref = {.data = data, .len = size, .max_message = 256};
        const uint8_t *m;
        uint64_t n, claimed;
        FUZZ_CHECK(ref_next(&ref, &m, &n, &claimed) == REF_MESSAGE && n >= 11 &&
                       memcmp(m, "#CHALLENGE#", 11) == 0,
                   "accepted without a challenge frame");
        FUZZ_CHECK(ref_next(&ref, &m, &n, &claimed) == REF_MESSAGE && n == 9 &&
                       memcmp(m, "#WELCOME#", 9) == 0,
                   "accepted without a welcome frame");
        /* What we sent: one response frame, a bare 16-byte HMAC-MD5 or "{name}" + a digest. */
        unsigned char resp[256];
        size_t len = 0;
        int rr = mproc_conn_recv(peer, resp, sizeof resp, &len, 0);
        FUZZ_CHECK(rr == 0 && (len == 16 || (len > 2 && resp[0] == '{')),
                   "the response sent is not one (%d, %zu bytes)", rr, len);
    }
out:
    mproc_conn_close(c);
    mproc_conn_close(peer);
    return 0;
}
