#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel/conn.h"
#include "harness.h"
#include "process/process.h"

/* ---- helpers ---- */

static void write_raw(int fd, const void *p, size_t n)
{
    CHECK_EQ(write(fd, p, n), (ssize_t)n);
}

/* A raw socketpair: sv[0] wrapped as a connection, sv[1] left raw to forge bytes. */
static mproc_conn *raw_pair(int *raw)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    mproc_conn *c;
    CHECK_OK(mproc_conn_from_fd(&c, sv[0], true, true));
    *raw = sv[1];
    return c;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u + seed);
}

/* ---- framing ---- */

TEST(frame_bytes_on_the_wire)
{
    int raw;
    mproc_conn *c = raw_pair(&raw);
    CHECK_OK(mproc_conn_send(c, "abc", 3));
    CHECK_OK(mproc_conn_send(c, "", 0));
    unsigned char got[11];
    CHECK_EQ(read(raw, got, sizeof got), 11);
    static const unsigned char want[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0};
    CHECK(memcmp(got, want, sizeof want) == 0);
    mproc_conn_close(c);
    close(raw);
}

TEST(frame_header_encoding)
{
    unsigned char h[MPROC__CONN_FRAME_HEADER_MAX];
    CHECK_EQ(mproc__frame_header(0x7fffffff, h), 4);
    CHECK(memcmp(h, "\x7f\xff\xff\xff", 4) == 0);
    /* above 0x7fffffff: -1, then the 8-byte length */
    CHECK_EQ(mproc__frame_header(0x80000000u, h), 12);
    CHECK(memcmp(h, "\xff\xff\xff\xff\x00\x00\x00\x00\x80\x00\x00\x00", 12) == 0);
    CHECK_EQ(mproc__frame_header(0x123456789aULL, h), 12);
    CHECK(memcmp(h, "\xff\xff\xff\xff\x00\x00\x00\x12\x34\x56\x78\x9a", 12) == 0);
}

TEST(long_header_form_is_parsed)
{
    int raw;
    mproc_conn *c = raw_pair(&raw);
    /* -1 + 8-byte length is legal for any size; Python parses it whatever the length */
    write_raw(raw, "\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x05hello", 17);
    write_raw(raw, "\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00", 12);
    char buf[16];
    size_t len;
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    void *d;
    CHECK_OK(mproc_conn_recv_alloc(c, &d, &len, 5));
    CHECK_EQ(len, 0);
    CHECK(d != NULL);
    free(d);
    mproc_conn_close(c);
    close(raw);
}

TEST(duplex_zero_length_and_both_directions)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    CHECK_OK(mproc_conn_send(a, "", 0));
    CHECK_OK(mproc_conn_send(b, "pong", 4));
    char buf[8];
    size_t len = 99;
    CHECK_OK(mproc_conn_recv(b, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 0);
    /* a zero-length message needs no buffer at all */
    CHECK_OK(mproc_conn_send(a, "", 0));
    CHECK_OK(mproc_conn_recv(b, NULL, 0, &len, 5));
    CHECK_EQ(len, 0);
    CHECK_OK(mproc_conn_recv(a, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 4);
    CHECK(memcmp(buf, "pong", 4) == 0);
    mproc_conn_close(a);
    mproc_conn_close(b);
}

#define MIB (1024 * 1024)
static mproc_conn *g_end;

static int send_mib(void *arg)
{
    unsigned char *p = malloc(MIB);
    fill(p, MIB, 7);
    int r = mproc_conn_send(g_end, p, MIB);
    free(p);
    return r == 0 ? 0 : 1;
}

/* 1 MiB does not fit in a socket buffer: partial writes on one side, partial reads on the other,
 * across processes. */
TEST(one_mib_message_across_processes)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    g_end = b;
    mproc_process *p = harness_start(send_mib, NULL);
    void *d;
    size_t len;
    CHECK_OK(mproc_conn_recv_alloc(a, &d, &len, 30));
    CHECK_EQ(len, MIB);
    unsigned char *want = malloc(MIB);
    fill(want, MIB, 7);
    CHECK(memcmp(d, want, MIB) == 0);
    free(want);
    free(d);
    CHECK_EQ(harness_join(p), 0);
    mproc_conn_close(a);
    mproc_conn_close(b);
}

static int send_three(void *arg)
{
    (void)arg;
    /* the child inherited the write end of a one-way pipe */
    int r = mproc_conn_send(g_end, "one", 3) | mproc_conn_send(g_end, "", 0) |
            mproc_conn_send(g_end, "three", 5);
    mproc_conn_close(g_end);
    return r == 0 ? 0 : 1;
}

TEST(child_sends_on_inherited_pipe_end)
{
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, false));
    g_end = w;
    mproc_process *p = harness_start(send_three, NULL);
    mproc_conn_close(w); /* so the reader sees end of file once the child is done */
    char buf[8];
    size_t len;
    CHECK_OK(mproc_conn_recv(r, buf, sizeof buf, &len, 30));
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    CHECK_OK(mproc_conn_recv(r, buf, sizeof buf, &len, 30));
    CHECK_EQ(len, 0);
    CHECK_OK(mproc_conn_recv(r, buf, sizeof buf, &len, 30));
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    CHECK_RC(mproc_conn_recv(r, buf, sizeof buf, &len, 30), MPROC_ECLOSED);
    CHECK_EQ(harness_join(p), 0);
    mproc_conn_close(r);
}

/* ---- buffer too small: the message stays ---- */

TEST(small_buffer_keeps_the_message)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    unsigned char msg[100], buf[100];
    fill(msg, sizeof msg, 3);
    CHECK_OK(mproc_conn_send(a, msg, sizeof msg));
    CHECK_OK(mproc_conn_send(a, "next", 4));
    size_t len = 0;
    CHECK_RC(mproc_conn_recv(b, buf, 10, &len, 5), -EMSGSIZE);
    CHECK_EQ(len, 100);
    CHECK_RC(mproc_conn_recv(b, buf, 99, &len, 5), -EMSGSIZE);
    CHECK_EQ(mproc_conn_poll(b, 0), 1);
    CHECK_OK(mproc_conn_recv(b, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 100);
    CHECK(memcmp(buf, msg, sizeof msg) == 0);
    /* and recv_alloc picks up a message a short recv left behind */
    CHECK_RC(mproc_conn_recv(b, buf, 1, &len, 5), -EMSGSIZE);
    void *d;
    CHECK_OK(mproc_conn_recv_alloc(b, &d, &len, 5));
    CHECK(len == 4 && memcmp(d, "next", 4) == 0);
    free(d);
    mproc_conn_close(a);
    mproc_conn_close(b);
}

/* ---- poll and timeouts ---- */

TEST(poll_reports_readability)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    CHECK_EQ(mproc_conn_poll(b, 0), 0);
    double t0 = harness_now();
    CHECK_EQ(mproc_conn_poll(b, 0.2), 0);
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 1.0 * harness_slow());
    CHECK_OK(mproc_conn_send(a, "x", 1));
    CHECK_EQ(mproc_conn_poll(b, 0), 1);
    CHECK_EQ(mproc_conn_poll(b, MPROC_FOREVER), 1);
    char c;
    size_t len;
    CHECK_OK(mproc_conn_recv(b, &c, 1, &len, 0));
    CHECK_EQ(mproc_conn_poll(b, 0), 0);
    /* end of file is "something to read": recv then says MPROC_ECLOSED */
    mproc_conn_close(a);
    CHECK_EQ(mproc_conn_poll(b, 5), 1);
    CHECK_RC(mproc_conn_recv(b, &c, 1, &len, 5), MPROC_ECLOSED);
    mproc_conn_close(b);
}

TEST(recv_timeout_band)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    char buf[4];
    size_t len;
    CHECK_RC(mproc_conn_recv(b, buf, sizeof buf, &len, 0), -EAGAIN);
    double t0 = harness_now();
    CHECK_RC(mproc_conn_recv(b, buf, sizeof buf, &len, 0.25), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.24, 0.25 + 1.0 * harness_slow());
    void *d;
    t0 = harness_now();
    CHECK_RC(mproc_conn_recv_alloc(b, &d, &len, 0.1), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.09, 0.1 + 1.0 * harness_slow());
    /* one-way pipes time out the same way */
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, false));
    t0 = harness_now();
    CHECK_RC(mproc_conn_recv(r, buf, sizeof buf, &len, 0.1), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.09, 0.1 + 1.0 * harness_slow());
    mproc_conn_close(a);
    mproc_conn_close(b);
    mproc_conn_close(r);
    mproc_conn_close(w);
}

TEST(timeout_mid_message_keeps_the_stream_in_step)
{
    int raw;
    mproc_conn *c = raw_pair(&raw);
    char buf[16];
    size_t len;
    /* half a header */
    write_raw(raw, "\x00\x00", 2);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 0.05), -ETIMEDOUT);
    /* the rest of the header and part of the body */
    write_raw(raw,
              "\x00\x0a"
              "0123",
              6);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 0.05), -ETIMEDOUT);
    write_raw(raw, "456", 3);
    void *d;
    CHECK_RC(mproc_conn_recv_alloc(c, &d, &len, 0.05), -ETIMEDOUT);
    write_raw(raw,
              "789"
              "\x00\x00\x00\x02"
              "ab",
              9);
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 5));
    CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);
    /* the same through recv_alloc, which keeps its own buffer across the timeout */
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 5));
    CHECK(len == 2 && memcmp(buf, "ab", 2) == 0);
    write_raw(raw,
              "\x00\x00\x00\x04"
              "wx",
              6);
    CHECK_RC(mproc_conn_recv_alloc(c, &d, &len, 0.05), -ETIMEDOUT);
    write_raw(raw, "yz", 2);
    CHECK_OK(mproc_conn_recv_alloc(c, &d, &len, 5));
    CHECK(len == 4 && memcmp(d, "wxyz", 4) == 0);
    free(d);
    mproc_conn_close(c);
    close(raw);
}

/* ---- end of file, broken streams, limits ---- */

TEST(eof_and_send_to_closed_peer)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    CHECK_OK(mproc_conn_send(a, "last", 4));
    mproc_conn_close(a);
    char buf[8];
    size_t len;
    CHECK_OK(mproc_conn_recv(b, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 4);
    CHECK_RC(mproc_conn_recv(b, buf, sizeof buf, &len, 5), MPROC_ECLOSED);
    CHECK_RC(mproc_conn_recv(b, buf, sizeof buf, &len, MPROC_FOREVER), MPROC_ECLOSED);
    /* the default SIGPIPE disposition would kill us here */
    signal(SIGPIPE, SIG_DFL);
    CHECK_RC(mproc_conn_send(b, "x", 1), -EPIPE);
    mproc_conn_close(b);
}

TEST(peer_closing_mid_message_is_a_protocol_error)
{
    char buf[16];
    size_t len;
    int raw;
    mproc_conn *c = raw_pair(&raw);
    write_raw(raw,
              "\x00\x00\x00\x0a"
              "abc",
              7);
    close(raw);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    CHECK_RC(mproc_conn_poll(c, 0), MPROC_EPROTO);
    mproc_conn_close(c);

    c = raw_pair(&raw);
    write_raw(raw, "\x00\x00", 2); /* mid-header */
    close(raw);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    mproc_conn_close(c);

    c = raw_pair(&raw);
    write_raw(raw, "\xff\xff\xff\xfe", 4); /* a negative length other than -1 */
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    mproc_conn_close(c);
    close(raw);
}

TEST(oversize_frame_refused_before_allocation)
{
    int raw;
    mproc_conn *c = raw_pair(&raw);
    /* 2^62 bytes: allocating it would fail (or abort under ASan); it must not be tried */
    write_raw(raw, "\xff\xff\xff\xff\x40\x00\x00\x00\x00\x00\x00\x00", 12);
    void *d;
    size_t len;
    CHECK_RC(mproc_conn_recv_alloc(c, &d, &len, 5), MPROC_EPROTO);
    CHECK_RC(mproc_conn_recv_alloc(c, &d, &len, 5), MPROC_EPROTO);
    /* the write side still works, as in Python */
    CHECK_OK(mproc_conn_send(c, "ok", 2));
    mproc_conn_close(c);
    close(raw);

    /* a configured limit: a frame at the limit passes, one byte more is refused */
    c = raw_pair(&raw);
    CHECK_OK(mproc_conn_set_max_message(c, 4));
    write_raw(raw,
              "\x00\x00\x00\x04"
              "abcd"
              "\x00\x00\x00\x05"
              "abcde",
              18);
    char buf[8];
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 5));
    CHECK_EQ(len, 4);
    CHECK_RC(mproc_conn_recv(c, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    mproc_conn_close(c);
    close(raw);
}

/* ---- one-way pipes ---- */

TEST(one_way_pipe_directions)
{
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, false));
    CHECK_EQ(fcntl(mproc_conn_fd(r), F_GETFL) & O_ACCMODE, O_RDONLY);
    CHECK_EQ(fcntl(mproc_conn_fd(w), F_GETFL) & O_ACCMODE, O_WRONLY);
    char buf[4];
    size_t len;
    CHECK_RC(mproc_conn_send(r, "x", 1), -EBADF);
    CHECK_RC(mproc_conn_recv(w, buf, sizeof buf, &len, 0), -EBADF);
    CHECK_RC(mproc_conn_poll(w, 0), -EBADF);
    void *d;
    CHECK_RC(mproc_conn_recv_alloc(w, &d, &len, 0), -EBADF);
    CHECK_OK(mproc_conn_send(w, "hi", 2));
    CHECK_OK(mproc_conn_recv(r, buf, sizeof buf, &len, 5));
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0);
    /* the fds are close-on-exec */
    CHECK(fcntl(mproc_conn_fd(r), F_GETFD) & FD_CLOEXEC);
    mproc_conn_close(r);
    mproc_conn_close(w);
}

TEST(pipe_without_reader_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, false));
    mproc_conn_close(r);
    CHECK_RC(mproc_conn_send(w, "x", 1), -EPIPE);
    CHECK_RC(mproc_conn_send(w, "", 0), -EPIPE);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE)); /* consumed, not left for later */
    /* a SIGPIPE the program already had pending stays pending */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGPIPE);
    CHECK_RC(mproc_conn_send(w, "x", 1), -EPIPE);
    sigpending(&pending);
    CHECK(sigismember(&pending, SIGPIPE));
    signal(SIGPIPE, SIG_IGN); /* discard it before unblocking */
    sigprocmask(SIG_SETMASK, &old, NULL);
    mproc_conn_close(w);
}

/* ---- bad input ---- */

TEST(bad_handles_and_arguments)
{
    char buf[4];
    size_t len;
    void *d;
    CHECK_RC(mproc_pipe(NULL, NULL, true), -EINVAL);
    CHECK_RC(mproc_conn_send(NULL, "x", 1), -EINVAL);
    CHECK_RC(mproc_conn_recv(NULL, buf, 4, &len, 0), -EINVAL);
    CHECK_RC(mproc_conn_recv_alloc(NULL, &d, &len, 0), -EINVAL);
    CHECK_RC(mproc_conn_poll(NULL, 0), -EINVAL);
    CHECK_RC(mproc_conn_fd(NULL), -EINVAL);
    CHECK_RC(mproc_conn_set_max_message(NULL, 1), -EINVAL);
    mproc_conn_close(NULL);
    struct {
        uint32_t junk[32];
    } garbage = {{0}};
    CHECK_RC(mproc_conn_send((mproc_conn *)&garbage, "x", 1), -EINVAL);
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, true));
    CHECK_RC(mproc_conn_send(a, NULL, 3), -EINVAL);
    CHECK_RC(mproc_conn_recv(a, NULL, 3, &len, 0), -EINVAL);
    CHECK_RC(mproc_conn_recv(a, buf, 4, NULL, 0), -EINVAL);
    CHECK_RC(mproc_conn_recv_alloc(a, NULL, &len, 0), -EINVAL);
    CHECK_RC(mproc_conn_from_fd(&a, -1, true, true), -EINVAL);
    CHECK_RC(mproc_conn_from_fd(&a, 0, false, false), -EINVAL);
    mproc_conn_close(a);
    mproc_conn_close(b);
}

/* ---- mproc_wait ---- */

static int exit_after_signal(void *arg)
{
    /* waits for the parent's go, so the sentinel is known not ready before it */
    char buf[4];
    size_t len;
    return mproc_conn_recv(g_end, buf, sizeof buf, &len, 30) == 0 ? 0 : 1;
}

TEST(wait_over_connections_fds_and_a_sentinel)
{
    mproc_conn *a[3], *b[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(mproc_pipe(&a[i], &b[i], true));
    mproc_conn *go_r, *go_w;
    CHECK_OK(mproc_pipe(&go_r, &go_w, false));
    g_end = go_r;
    mproc_process *p = harness_start(exit_after_signal, NULL);
    int evfd[2];
    CHECK_OK(pipe2(evfd, O_CLOEXEC)); /* any fd, not a connection */
    int fds[5] = {mproc_conn_fd(b[0]), mproc_conn_fd(b[1]), mproc_conn_fd(b[2]), evfd[0],
                  mproc_process_sentinel(p)};
    bool ready[5];
    double t0 = harness_now();
    CHECK_EQ(mproc_wait(fds, 5, ready, 0.2), 0);
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 1.0 * harness_slow());
    CHECK_EQ(mproc_wait(fds, 5, ready, 0), 0);
    CHECK_OK(mproc_conn_send(a[0], "x", 1));
    CHECK_OK(mproc_conn_send(a[2], "y", 1));
    CHECK_EQ(mproc_wait(fds, 5, ready, 5), 2);
    CHECK(ready[0] && !ready[1] && ready[2] && !ready[3] && !ready[4]);
    write_raw(evfd[1], "e", 1);
    CHECK_EQ(mproc_wait(fds, 5, ready, 5), 3);
    CHECK(ready[3]);
    /* the process ends: its sentinel becomes ready */
    CHECK_OK(mproc_conn_send(go_w, "go", 2));
    CHECK_EQ(mproc_wait(&fds[4], 1, &ready[4], 30), 1);
    CHECK(ready[4]);
    CHECK_EQ(mproc_wait(fds, 5, ready, MPROC_FOREVER), 4);
    CHECK(ready[0] && !ready[1] && ready[2] && ready[3] && ready[4]);
    CHECK_EQ(harness_join(p), 0);
    for (int i = 0; i < 3; i++) {
        mproc_conn_close(a[i]);
        mproc_conn_close(b[i]);
    }
    mproc_conn_close(go_r);
    mproc_conn_close(go_w);
    close(evfd[0]);
    close(evfd[1]);
}

TEST(wait_bad_input)
{
    int fds[2];
    CHECK_OK(pipe2(fds, O_CLOEXEC));
    bool ready[2];
    CHECK_RC(mproc_wait(NULL, 1, ready, 0), -EINVAL);
    CHECK_RC(mproc_wait(fds, 1, NULL, 0), -EINVAL);
    CHECK_RC(mproc_wait(fds, 0, ready, 0), -EINVAL);
    int neg[2] = {fds[0], -1};
    CHECK_RC(mproc_wait(neg, 2, ready, 0), -EINVAL);
    int closed = fds[1];
    close(fds[1]);
    int bad[2] = {fds[0], closed};
    CHECK_RC(mproc_wait(bad, 2, ready, 0), -EBADF);
    close(fds[0]);
}

TEST(wait_many_fds)
{
    enum { N = 40 };
    mproc_conn *a[N], *b[N];
    int fds[N];
    bool ready[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(mproc_pipe(&a[i], &b[i], false));
        fds[i] = mproc_conn_fd(a[i]);
    }
    CHECK_OK(mproc_conn_send(b[N - 1], "z", 1));
    CHECK_EQ(mproc_wait(fds, N, ready, 5), 1);
    CHECK(ready[N - 1] && !ready[0]);
    for (int i = 0; i < N; i++) {
        mproc_conn_close(a[i]);
        mproc_conn_close(b[i]);
    }
}

/* ---- listener and client ---- */

static const char *g_addr;
static const void *g_key;
static size_t g_keylen;

/* Child: connect, echo one message reversed, report the connect result as exit code. */
static int client_echo(void *arg)
{
    (void)arg;
    mproc_conn *c;
    int r = mproc_client_connect(&c, g_addr, g_key, g_keylen);
    if (r == MPROC_EAUTH) return 3;
    if (r < 0) return 2;
    char buf[64];
    size_t len;
    if (mproc_conn_recv(c, buf, sizeof buf, &len, 30) < 0) return 4;
    for (size_t i = 0; i < len / 2; i++) {
        char t = buf[i];
        buf[i] = buf[len - 1 - i];
        buf[len - 1 - i] = t;
    }
    r = mproc_conn_send(c, buf, len);
    mproc_conn_close(c);
    return r == 0 ? 0 : 5;
}

/* Serve one client started in a child with client key ckey; returns the accept result. */
static int serve_one(const char *address, const void *skey, size_t sklen, const void *ckey,
                     size_t cklen, char *bound, size_t bound_cap)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, address, skey, sklen));
    snprintf(bound, bound_cap, "%s", mproc_listener_address(l));
    g_addr = bound;
    g_key = ckey;
    g_keylen = cklen;
    mproc_process *p = harness_start(client_echo, NULL);
    mproc_conn *c;
    int r = mproc_listener_accept(l, &c, 30);
    if (r == 0) {
        CHECK_OK(mproc_conn_send(c, "stressed", 8));
        char buf[16];
        size_t len;
        CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 30));
        CHECK(len == 8 && memcmp(buf, "desserts", 8) == 0);
        mproc_conn_close(c);
        CHECK_EQ(harness_join(p), 0);
    } else {
        CHECK_EQ(harness_join(p), r == MPROC_EAUTH ? 3 : -1);
    }
    mproc_listener_free(l);
    return r;
}

static void temp_socket_path(char *out, size_t cap, char *dir, size_t dcap)
{
    snprintf(dir, dcap, "/tmp/mproc-conn-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(out, cap, "unix:%s/sock", dir);
}

static mproc_listener *g_listener;

static int free_listener_copy(void *arg)
{
    (void)arg;
    mproc_listener_free(g_listener); /* a forked copy: must not unlink the parent's socket */
    return 0;
}

TEST(listener_unix_path_unlinks_on_free)
{
    char addr[128], dir[64], bound[160];
    temp_socket_path(addr, sizeof addr, dir, sizeof dir);
    CHECK_OK(serve_one(addr, NULL, 0, NULL, 0, bound, sizeof bound));
    CHECK(strcmp(bound, addr) == 0);
    struct stat st;
    CHECK(stat(addr + 5, &st) < 0 && errno == ENOENT);
    /* an existing file is not replaced, as in Python */
    mproc_listener *l, *l2;
    CHECK_OK(mproc_listener_new(&l, addr, NULL, 0));
    CHECK(stat(addr + 5, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_RC(mproc_listener_new(&l2, addr, NULL, 0), -EADDRINUSE);
    g_listener = l;
    CHECK_EQ(harness_join(harness_start(free_listener_copy, NULL)), 0);
    CHECK(stat(addr + 5, &st) == 0);
    mproc_listener_free(l);
    CHECK(stat(addr + 5, &st) < 0);
    CHECK_OK(rmdir(dir));
}

TEST(listener_abstract)
{
    char addr[64], bound[160];
    snprintf(addr, sizeof addr, "unix:@mproc-test-%d", (int)getpid());
    CHECK_OK(serve_one(addr, "k", 1, "k", 1, bound, sizeof bound));
    CHECK(strcmp(bound, addr) == 0);
}

TEST(listener_tcp_port_zero_reports_its_port)
{
    char bound[160];
    CHECK_OK(serve_one("tcp:127.0.0.1:0", "secret", 6, "secret", 6, bound, sizeof bound));
    CHECK(strncmp(bound, "tcp:127.0.0.1:", 14) == 0);
    CHECK(atoi(bound + 14) > 0);
}

TEST(auth_sha256_success_and_empty_key)
{
    char bound[160];
    CHECK_OK(serve_one("tcp:127.0.0.1:0", "", 0, "", 0, bound, sizeof bound));
    unsigned char key[64];
    fill(key, sizeof key, 9);
    CHECK_OK(serve_one("tcp:127.0.0.1:0", key, sizeof key, key, sizeof key, bound, sizeof bound));
}

TEST(auth_wrong_key_fails_both_sides)
{
    char bound[160];
    /* serve_one checks that the client saw MPROC_EAUTH too (exit code 3) */
    CHECK_RC(serve_one("tcp:127.0.0.1:0", "right", 5, "wrong", 5, bound, sizeof bound),
             MPROC_EAUTH);
    CHECK_RC(serve_one("tcp:127.0.0.1:0", "right", 5, "", 0, bound, sizeof bound), MPROC_EAUTH);
}

static int raw_client(void *arg)
{
    /* a client that does not speak the protocol: an oversized reply to the challenge */
    mproc_conn *c;
    if (mproc_client_connect(&c, g_addr, NULL, 0) < 0) return 2;
    void *d;
    size_t len;
    if (mproc_conn_recv_alloc(c, &d, &len, 30) < 0) return 4;
    free(d);
    static char big[300];
    memset(big, 'x', sizeof big);
    int r = mproc_conn_send(c, big, arg ? sizeof big : 5);
    /* wait for the server to hang up (it may say #FAILURE# first) */
    while (mproc_conn_recv_alloc(c, &d, &len, 30) == 0)
        free(d);
    mproc_conn_close(c);
    return r == 0 ? 0 : 5;
}

TEST(auth_handshake_reads_are_capped)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, "tcp:127.0.0.1:0", "k", 1));
    g_addr = mproc_listener_address(l);
    for (int big = 0; big < 2; big++) {
        mproc_process *p = harness_start(raw_client, big ? (void *)1 : NULL);
        mproc_conn *c;
        CHECK_RC(mproc_listener_accept(l, &c, 30), MPROC_EAUTH);
        CHECK_EQ(harness_join(p), 0);
    }
    mproc_listener_free(l);
}

static int silent_client(void *arg)
{
    mproc_conn *c;
    if (mproc_client_connect(&c, g_addr, NULL, 0) < 0) return 2;
    char buf[4];
    size_t len;
    /* swallow the challenge, answer nothing, wait for the hang-up */
    void *d;
    if (mproc_conn_recv_alloc(c, &d, &len, 30) == 0) free(d);
    int r = mproc_conn_recv(c, buf, sizeof buf, &len, 30);
    mproc_conn_close(c);
    return r == MPROC_ECLOSED ? 0 : 1;
}

TEST(handshake_timeout)
{
    mproc_listener *l;
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-hs-timeout-%d", (int)getpid());
    CHECK_OK(
        mproc_listener_new_opts(&l, addr, "k", 1, &(mproc_conn_opts){.handshake_timeout = 0.3}));
    g_addr = mproc_listener_address(l);
    mproc_process *p = harness_start(silent_client, NULL);
    mproc_conn *c;
    double t0 = harness_now();
    CHECK_RC(mproc_listener_accept(l, &c, 30), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.29, 0.3 + 2.0 * harness_slow());
    CHECK_EQ(harness_join(p), 0);
    mproc_listener_free(l);
}

TEST(accept_timeout_and_refused_connect)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0));
    mproc_conn *c;
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN);
    double t0 = harness_now();
    CHECK_RC(mproc_listener_accept(l, &c, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 1.0 * harness_slow());
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mproc_listener_address(l));
    CHECK(mproc_listener_fd(l) >= 0);
    mproc_listener_free(l);
    CHECK_RC(mproc_client_connect(&c, addr, NULL, 0), -ECONNREFUSED);
    CHECK_RC(mproc_client_connect(&c, "unix:@mproc-nobody-listens-here", NULL, 0), -ECONNREFUSED);
}

/* ---- many handshakes at once (a keyed listener) ---- */

typedef struct {
    const char *addr;
    mproc_conn *c;
    int r;
    pthread_t th;
} dialer;

static void *dial_with_key(void *arg)
{
    dialer *d = arg;
    d->r = mproc_client_connect(&d->c, d->addr, "k", 1);
    return NULL;
}

static void dial_start(dialer *d, const char *addr)
{
    *d = (dialer){.addr = addr};
    CHECK_OK(pthread_create(&d->th, NULL, dial_with_key, d));
}

/* The client's side passed, and the two ends talk. */
static void dial_end(dialer *d, mproc_conn *server_end)
{
    CHECK_OK(pthread_join(d->th, NULL));
    CHECK_OK(d->r);
    CHECK_OK(mproc_conn_send(d->c, "hi", 2));
    char buf[4];
    size_t len;
    CHECK_OK(mproc_conn_recv(server_end, buf, sizeof buf, &len, 10));
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0);
    mproc_conn_close(d->c);
    mproc_conn_close(server_end);
}

/* A client that connects without a key and never answers the challenge. */
static mproc_conn *mute(const char *addr)
{
    mproc_conn *c;
    CHECK_OK(mproc_client_connect(&c, addr, NULL, 0));
    return c;
}

/* A mute client takes the challenge the listener sent it. */
static void swallow(mproc_conn *c)
{
    void *d;
    size_t len;
    CHECK_OK(mproc_conn_recv_alloc(c, &d, &len, 10));
    free(d);
}

/* What the listener did with a mute client whose challenge was swallowed: 1 still pending,
 * 0 dropped (end of file). */
static int mute_pending(mproc_conn *c)
{
    void *d;
    size_t len;
    int r = mproc_conn_recv_alloc(c, &d, &len, 0);
    if (r == 0) free(d);
    CHECK(r == -EAGAIN || r == MPROC_ECLOSED);
    return r == -EAGAIN;
}

static void keyed_listener(mproc_listener **l, char *addr, size_t cap, const char *tag)
{
    snprintf(addr, cap, "unix:@mproc-%s-%d", tag, (int)getpid());
    CHECK_OK(mproc_listener_new(l, addr, "k", 1));
}

TEST(listener_set_max_handshakes_checks_its_arguments)
{
    mproc_listener *l, *plain;
    char addr[64];
    keyed_listener(&l, addr, sizeof addr, "maxhs-args");
    CHECK_RC(mproc_listener_set_max_handshakes(NULL, 4), -EINVAL);
    CHECK_RC(mproc_listener_set_max_handshakes(l, 0), -EINVAL);
    CHECK_OK(mproc_listener_set_max_handshakes(l, 1));
    CHECK_OK(mproc_listener_set_max_handshakes(l, MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES));
    CHECK_OK(mproc_listener_new(&plain, "tcp:127.0.0.1:0", NULL, 0));
    CHECK_OK(mproc_listener_set_max_handshakes(plain, 3)); /* no handshakes: nothing to bound */
    mproc_listener_free(plain);
    mproc_listener_free(l);
}

/* Past the bound a new client drops the oldest pending one, and lowering the bound drops the
 * oldest beyond it at once; the good client that comes after is served. */
TEST(listener_drops_the_oldest_handshake_past_its_bound)
{
    mproc_listener *l;
    char addr[64];
    keyed_listener(&l, addr, sizeof addr, "maxhs-drop");
    CHECK_OK(mproc_listener_set_max_handshakes(l, 2));
    mproc_conn *m[4], *c;
    for (int i = 0; i < 3; i++) {
        m[i] = mute(addr);
        CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN); /* taken in, in this order */
    }
    for (int i = 0; i < 3; i++)
        swallow(m[i]);
    CHECK_EQ(mute_pending(m[0]), 0);
    CHECK_EQ(mute_pending(m[1]), 1);
    CHECK_EQ(mute_pending(m[2]), 1);
    m[3] = mute(addr);
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN);
    swallow(m[3]);
    CHECK_EQ(mute_pending(m[1]), 0);
    CHECK_EQ(mute_pending(m[2]), 1);
    CHECK_EQ(mute_pending(m[3]), 1);
    CHECK_OK(mproc_listener_set_max_handshakes(l, 1));
    CHECK_EQ(mute_pending(m[2]), 0);
    CHECK_EQ(mute_pending(m[3]), 1);
    /* a good client drops the last mute one and passes */
    dialer d;
    dial_start(&d, addr);
    CHECK_OK(mproc_listener_accept(l, &c, 10));
    dial_end(&d, c);
    void *x;
    size_t len;
    CHECK_RC(mproc_conn_recv_alloc(m[3], &x, &len, 10), MPROC_ECLOSED);
    for (int i = 0; i < 4; i++)
        mproc_conn_close(m[i]);
    mproc_listener_free(l);
}

/* A client that says nothing holds up nobody: the good one is accepted at once while the silent
 * one's handshake is still pending (its 20 s default are far from over). */
TEST(listener_silent_client_does_not_delay_a_good_one)
{
    mproc_listener *l;
    char addr[64];
    keyed_listener(&l, addr, sizeof addr, "silent-good");
    mproc_conn *m = mute(addr), *c;
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN); /* the silent one is pending first */
    dialer d;
    dial_start(&d, addr);
    double t0 = harness_now();
    CHECK_OK(mproc_listener_accept(l, &c, 10));
    CHECK(harness_now() - t0 < 2.0 * harness_slow());
    dial_end(&d, c);
    swallow(m);
    CHECK_EQ(mute_pending(m), 1);
    mproc_conn_close(m);
    /* it closed: the next accept reports that handshake (as Python's accept raises) */
    CHECK_RC(mproc_listener_accept(l, &c, 10), MPROC_ECLOSED);
    mproc_listener_free(l);
}

/* accept's own timeout holds while a handshake is pending: it does not wait for that one's. */
TEST(listener_accept_timeout_holds_with_a_pending_handshake)
{
    mproc_listener *l;
    char addr[64];
    keyed_listener(&l, addr, sizeof addr, "silent-timeout");
    mproc_conn *m = mute(addr), *c;
    double t0 = harness_now();
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN);
    CHECK(harness_now() - t0 < 1.0 * harness_slow());
    t0 = harness_now();
    CHECK_RC(mproc_listener_accept(l, &c, 0.2), -ETIMEDOUT);
    CHECK_BETWEEN(harness_now() - t0, 0.19, 0.2 + 1.0 * harness_slow());
    swallow(m);
    CHECK_EQ(mute_pending(m), 1);
    mproc_conn_close(m);
    mproc_listener_free(l);
}

static int wait_readable(int fd, double timeout)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)(timeout * 1000));
    return r > 0 && (p.revents & POLLIN);
}

/* An event loop over mproc_listener_fd: readable while accept can make progress, accept with
 * timeout 0 never blocks (a silent client is pending), and the good client comes out. Then the
 * fd becomes readable when a pending handshake's deadline passes, and accept reports it. */
TEST(listener_fd_drives_handshakes_from_an_event_loop)
{
    mproc_listener *l;
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-hs-fd-%d", (int)getpid());
    CHECK_OK(mproc_listener_new_opts(&l, addr, "k", 1, &(mproc_conn_opts){.handshake_timeout = 5}));
    int fd = mproc_listener_fd(l);
    CHECK(fd >= 0);
    CHECK(!wait_readable(fd, 0));
    mproc_conn *m = mute(addr), *c = NULL;
    CHECK(wait_readable(fd, 10));
    dialer d;
    dial_start(&d, addr);
    double t0 = harness_now();
    int rounds = 0, r;
    do {
        CHECK(wait_readable(fd, 10));
        r = mproc_listener_accept(l, &c, 0);
        if (r != 0) CHECK_RC(r, -EAGAIN);
        CHECK(++rounds < 1000);
    } while (r != 0);
    CHECK(harness_now() - t0 < 2.0 * harness_slow());
    dial_end(&d, c);
    CHECK(!wait_readable(fd, 0)); /* the silent one pending, nothing to do */
    mproc_conn_close(m);
    CHECK(wait_readable(fd, 10)); /* its end of file */
    CHECK_RC(mproc_listener_accept(l, &c, 0), MPROC_ECLOSED);
    CHECK(!wait_readable(fd, 0));
    mproc_listener_free(l);

    /* a deadline: readable once it passed, with no byte from anyone */
    CHECK_OK(
        mproc_listener_new_opts(&l, addr, "k", 1, &(mproc_conn_opts){.handshake_timeout = 0.3}));
    fd = mproc_listener_fd(l);
    m = mute(addr);
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN);
    swallow(m);
    CHECK_EQ(mute_pending(m), 1);
    t0 = harness_now();
    CHECK(wait_readable(fd, 10));
    CHECK_BETWEEN(harness_now() - t0, 0.2, 0.3 + 2.0 * harness_slow());
    CHECK_RC(mproc_listener_accept(l, &c, 0), -ETIMEDOUT);
    CHECK(!wait_readable(fd, 0));
    mproc_conn_close(m);
    mproc_listener_free(l);
}

static mproc_listener *g_keyed;

/* A fork child accepting on its copy of a keyed listener: it starts its own pending set (its
 * parent's handshakes are not its to answer, even when their clients spoke), serves its own
 * client, and frees its copy. */
static int accept_in_child(void *arg)
{
    mproc_conn *c;
    if (mproc_listener_accept(g_keyed, &c, 0.3) != -ETIMEDOUT) return 1;
    dialer d;
    dial_start(&d, arg);
    int r = mproc_listener_accept(g_keyed, &c, 10);
    if (r == 0) dial_end(&d, c);
    mproc_listener_free(g_keyed);
    return r == 0 ? 0 : 2;
}

TEST(listener_fork_child_accepts_without_disturbing_its_parents_handshakes)
{
    SKIP_IN_THREAD_MODE("a child here shares the parent's listener");
    mproc_listener *l;
    char addr[64];
    keyed_listener(&l, addr, sizeof addr, "hs-fork");
    mproc_conn *m = mute(addr), *bad = mute(addr), *c;
    CHECK_RC(mproc_listener_accept(l, &c, 0), -EAGAIN);
    swallow(m);
    swallow(bad);
    CHECK_OK(mproc_conn_send(bad, "wrong", 5)); /* a response for the parent to refuse */
    g_keyed = l;
    CHECK_EQ(harness_join(harness_start(accept_in_child, addr)), 0);
    CHECK_EQ(mute_pending(m), 1); /* the child closed only its copies */
    CHECK_RC(mproc_listener_accept(l, &c, 10), MPROC_EAUTH);
    mproc_conn_close(bad);
    dialer d;
    dial_start(&d, addr);
    CHECK_OK(mproc_listener_accept(l, &c, 10));
    dial_end(&d, c);
    mproc_conn_close(m);
    CHECK_RC(mproc_listener_accept(l, &c, 10), MPROC_ECLOSED);
    mproc_listener_free(l);
}

TEST(bad_addresses)
{
    mproc_listener *l;
    mproc_conn *c;
    CHECK_RC(mproc_listener_new(&l, "nonsense", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "unix:", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "unix:@", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1:", NULL, 0), -EINVAL);
    /* Ports out of range or not numbers: getaddrinfo alone would wrap them (65536 listened on a
     * random port, 4294967297 on port 1) or look a service name up. */
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1:65536", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1:4294967297", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1:-1", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "tcp:127.0.0.1:http", NULL, 0), -EINVAL);
    CHECK_RC(mproc_client_connect(&c, "tcp:127.0.0.1:65536", NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, NULL, NULL, 0), -EINVAL);
    CHECK_RC(mproc_listener_new(&l, "unix:@x", NULL, 3), -EINVAL); /* keylen without key */
    char longp[200];
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "unix:/", 6);
    longp[sizeof longp - 1] = '\0';
    CHECK_RC(mproc_listener_new(&l, longp, NULL, 0), -ENAMETOOLONG);
    CHECK_RC(mproc_client_connect(&c, "tcp:no-such-host.invalid:1", NULL, 0), -EADDRNOTAVAIL);
    CHECK_RC(mproc_listener_accept(NULL, &c, 0), -EINVAL);
    CHECK(mproc_listener_address(NULL) == NULL);
    mproc_listener_free(NULL);
}

TEST(address_parsing)
{
    mproc__addr a[MPROC__ADDRESS_MAX];
    CHECK_EQ(mproc__address_resolve("unix:@abc", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK_EQ(a[0].family, AF_UNIX);
    /* abstract names are exactly their bytes after a NUL: what Python's "\0abc" binds */
    CHECK_EQ(a[0].len, offsetof(struct sockaddr_un, sun_path) + 4);
    CHECK_EQ(((struct sockaddr_un *)&a[0].sa)->sun_path[0], 0);
    CHECK_EQ(mproc__address_resolve("unix:/tmp/x", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK(strcmp(((struct sockaddr_un *)&a[0].sa)->sun_path, "/tmp/x") == 0);
    /* numeric literals only: nothing here touches the network */
    CHECK_EQ(mproc__address_resolve("tcp:[::1]:5", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK_EQ(a[0].family, AF_INET6);
    CHECK_EQ(ntohs(((struct sockaddr_in6 *)&a[0].sa)->sin6_port), 5);
    CHECK_EQ(mproc__address_resolve("tcp:::1:6", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK_EQ(a[0].family, AF_INET6);
    CHECK_EQ(mproc__address_resolve("tcp:127.0.0.1:7", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK_EQ(a[0].family, AF_INET);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&a[0].sa)->sin_port), 7);
    CHECK_EQ(mproc__address_resolve("tcp:127.0.0.1:65535", false, a, MPROC__ADDRESS_MAX), 1);
    CHECK_EQ(ntohs(((struct sockaddr_in *)&a[0].sa)->sin_port), 65535);
    CHECK_RC(mproc__address_resolve("tcp:127.0.0.1:65536", false, a, MPROC__ADDRESS_MAX), -EINVAL);
}

TEST(listener_max_message_applies_to_accepted_connections)
{
    mproc_listener *l;
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-maxmsg-%d", (int)getpid());
    CHECK_OK(mproc_listener_new_opts(&l, addr, NULL, 0, &(mproc_conn_opts){.max_message = 8}));
    mproc_conn *cl, *sv;
    CHECK_OK(mproc_client_connect(&cl, addr, NULL, 0));
    CHECK_OK(mproc_listener_accept(l, &sv, 5));
    CHECK_OK(mproc_conn_send(cl, "12345678", 8));
    CHECK_OK(mproc_conn_send(cl, "123456789", 9));
    char buf[16];
    size_t len;
    CHECK_OK(mproc_conn_recv(sv, buf, sizeof buf, &len, 5));
    CHECK_RC(mproc_conn_recv(sv, buf, sizeof buf, &len, 5), MPROC_EPROTO);
    mproc_conn_close(cl);
    mproc_conn_close(sv);
    mproc_listener_free(l);
}

/* ---- the Pipe idiom under every start method (issue 13.6, 13.7) ---- */

typedef struct {
    mproc_conn *mine, *theirs; /* the parent's end, the child's end */
    bool duplex;
} pipe_pair;

/* The child closes the end it does not use, then answers (duplex) or just talks (one way). */
static int pipe_child(void *arg)
{
    pipe_pair *pp = arg;
    mproc_conn_close(pp->mine);
    char buf[64];
    size_t n = 0;
    if (pp->duplex) {
        int r = mproc_conn_recv(pp->theirs, buf, sizeof buf - 6, &n, 10.0);
        if (r != 0) return 10 + (r == -EINVAL);
        char out[64] = "pong:";
        memcpy(out + 5, buf, n);
        if (mproc_conn_send(pp->theirs, out, n + 5) != 0) return 2;
    } else if (mproc_conn_send(pp->theirs, "one way", 7) != 0) {
        return 3;
    }
    mproc_conn_close(pp->theirs);
    return 0;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

TEST(pipe_idiom_under_every_start_method)
{
    unsetenv("MPROC_START"); /* the environment would win over each start's method */
    const char *methods[] = {"fork", "forkserver", "thread", "forkserver"};
    for (int m = 0; m < 4; m++) {
        /* The forkserver helper exists before the pipe is made, as after mproc_init; the second
         * time it is forked after the pipe, and must not keep a copy of it open. */
        if (m == 3)
            mproc__forkserver_stop();
        else
            harness_join(harness_start_opts(
                &(mproc_process_opts){.run = nothing, .start_method = methods[m]}));
        for (int duplex = 1; duplex >= 0; duplex--) {
            pipe_pair *pp = mproc_shared_alloc(sizeof *pp);
            CHECK(pp != NULL);
            mproc_conn *a, *b;
            CHECK_OK(mproc_pipe(&a, &b, duplex));
            if (m == 3 && duplex) mproc__forkserver_stop(); /* the next start forks a new one */
            /* one way: the parent reads (a), the child writes (b) */
            *pp = (pipe_pair){.mine = a, .theirs = b, .duplex = duplex};
            mproc_process *p = harness_start_opts(
                &(mproc_process_opts){.run = pipe_child, .arg = pp, .start_method = methods[m]});
            mproc_conn_close(b); /* the end the parent does not use */
            char buf[64];
            size_t n;
            if (duplex) {
                CHECK_OK(mproc_conn_send(a, "ping", 4));
                CHECK_OK(mproc_conn_recv(a, buf, sizeof buf, &n, 10.0));
                CHECK_EQ(n, 9);
                CHECK(memcmp(buf, "pong:ping", 9) == 0);
            } else {
                CHECK_OK(mproc_conn_recv(a, buf, sizeof buf, &n, 10.0));
                CHECK_EQ(n, 7);
                CHECK(memcmp(buf, "one way", 7) == 0);
            }
            CHECK_EQ(harness_join(p), 0);
            /* Every copy of the child's end is closed now (the child's, ours, and no helper's):
             * end of file, not a timeout. */
            CHECK_RC(mproc_conn_recv(a, buf, sizeof buf, &n, 5.0), MPROC_ECLOSED);
            mproc_conn_close(a);
            mproc_shared_free(pp);
        }
    }
}

/* More connections than one SCM_RIGHTS message carries: the forkserver start fails with a code of
 * its own before anything reaches the helper, and works again once they are closed. */
TEST(forkserver_start_with_too_many_connections_fails_clearly)
{
    unsetenv("MPROC_START"); /* the environment would win over each start's method */
    enum { PAIRS = MPROC__CONN_PASS_MAX / 2 + 1 };
    static mproc_conn *a[PAIRS], *b[PAIRS];
    for (int i = 0; i < PAIRS; i++)
        CHECK_OK(mproc_pipe(&a[i], &b[i], true));
    mproc_process *p;
    CHECK_OK(
        mproc_process_new(&p, &(mproc_process_opts){.run = nothing, .start_method = "forkserver"}));
    CHECK_RC(mproc_process_start(p), -ETOOMANYREFS);
    mproc_process_free(p);
    for (int i = 0; i < PAIRS; i++) {
        mproc_conn_close(a[i]);
        mproc_conn_close(b[i]);
    }
    CHECK_EQ(harness_join(harness_start_opts(
                 &(mproc_process_opts){.run = nothing, .start_method = "forkserver"})),
             0);
}
