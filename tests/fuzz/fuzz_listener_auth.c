/* The server's side of the authkey handshake as a keyed listener runs it (src/channel/handshakes.c:
 * its non-blocking framing and mproc__auth_srv_step), against a client that sends the fuzzer's
 * bytes (framing included) and then ends its stream.
 *
 * Properties: one accept reports that handshake as MPROC_EAUTH or MPROC_ECLOSED, never passes it
 * (the challenge is random and the key secret) and never hangs (the stream ends, so every wait
 * ends); the listener then holds nothing (an accept with timeout 0 says -EAGAIN). */
#include <errno.h>

#include "fuzz_util.h"

static const char key_bytes[] = "fuzz authkey: thirty-two bytes!!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mproc_listener *l; /* one for every input: binding is not what is fuzzed */
    static char addr[64];
    if (size > 65536) return 0; /* what one socket buffer holds */
    int r;
    if (!l) {
        snprintf(addr, sizeof addr, "unix:@mproc-fuzz-listener-%d", (int)getpid());
        r = mproc_listener_new(&l, addr, key_bytes, sizeof key_bytes - 1);
        FUZZ_CHECK(r == 0, "mproc_listener_new: %s", mproc_strerror(r));
    }
    mproc_conn *c, *s;
    r = mproc_client_connect(&c, addr, NULL, 0); /* no key: the bytes are the client's side */
    FUZZ_CHECK(r == 0, "connect: %s", mproc_strerror(r));
    fuzz_feed_all(mproc_conn_fd(c), data, size);
    /* an interrupted accept (the replay's SIGALRM) leaves the handshake pending: go on with it */
    do
        r = mproc_listener_accept(l, &s, 10);
    while (r == -EINTR);
    FUZZ_CHECK(r == MPROC_EAUTH || r == MPROC_ECLOSED, "accept returned %d (%s)", r,
               mproc_strerror(r));
    do
        r = mproc_listener_accept(l, &s, 0);
    while (r == -EINTR);
    FUZZ_CHECK(r == -EAGAIN, "the listener still had %d (%s)", r, mproc_strerror(r));
    mproc_conn_close(c);
    return 0;
}
