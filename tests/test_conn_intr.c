/* Ctrl-C (a SIGINT handler, SA_RESTART) at random moments during the blocking calls of
 * connections: recv (also in the middle of a message), a send that waits for room, poll,
 * mproc_wait, accept and the authkey handshake return -EINTR, as Python raises KeyboardInterrupt
 * there, and the connection goes on where it was: no message lost, torn or read twice. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "intr_util.h"

#define ROUNDS 60
#define WAIT_S (2.0 * harness_slow())
#define BODY 64

static void fill(unsigned char *b, size_t n, unsigned seq)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seq * 31 + i);
}

static bool filled(const unsigned char *b, size_t n, unsigned seq)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seq * 31 + i)) return false;
    return true;
}

/* The frame of message seq: a 4-byte big-endian length, then BODY bytes. */
static void frame(unsigned char out[4 + BODY], unsigned seq)
{
    out[0] = out[1] = out[2] = 0;
    out[3] = BODY;
    fill(out + 4, BODY, seq);
}

typedef struct {
    int fd;        /* the writer's fd */
    unsigned seq;  /* the message of the round */
    size_t offset; /* how much of its frame is written already */
} writer;

/* Write the rest of the round's frame. */
static void write_rest(void *arg)
{
    writer *w = arg;
    unsigned char f[4 + BODY];
    frame(f, w->seq);
    if (w->offset < sizeof f)
        CHECK_EQ(write(w->fd, f + w->offset, sizeof f - w->offset), sizeof f - w->offset);
    w->offset = sizeof f;
}

static void new_pair(mproc_conn **rd, mproc_conn **wr, unsigned i)
{
    CHECK_OK(mproc_pipe(rd, wr, i % 2 == 0)); /* odd rounds a pipe, even ones a socket pair */
}

TEST_T(recv_returns_eintr_and_goes_on_where_it_was, 120)
{
    intr_install();
    unsigned owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        mproc_conn *rd, *wr;
        new_pair(&rd, &wr, i);
        writer w = {mproc_conn_fd(wr), i, 0};
        /* every third round the header and part of the body are there already */
        if (i % 3 == 0) {
            unsigned char f[4 + BODY];
            frame(f, i);
            CHECK_EQ(write(w.fd, f, 20), 20);
            w.offset = 20;
        }
        unsigned char buf[BODY];
        void *alloc = NULL;
        size_t len = 0;
        int before = intr_count();
        intr_shot *s = intr_arm(i, write_rest, &w);
        intr_go(s);
        double timeout = i % 4 == 1 ? MPROC_FOREVER : WAIT_S;
        int r = i % 5 == 2 ? mproc_conn_recv_alloc(rd, &alloc, &len, timeout)
                           : mproc_conn_recv(rd, buf, sizeof buf, &len, timeout);
        owed += intr_check(r, i, intr_end(s), before);
        if (r == -EINTR) {
            write_rest(&w);
            r = i % 5 == 2 ? mproc_conn_recv_alloc(rd, &alloc, &len, 30)
                           : mproc_conn_recv(rd, buf, sizeof buf, &len, 30);
        }
        CHECK_OK(r);
        CHECK_EQ(len, BODY);
        CHECK(filled(alloc ? alloc : buf, BODY, i));
        free(alloc);
        CHECK_RC(mproc_conn_poll(rd, 0), 0); /* nothing more */
        mproc_conn_close(rd);
        mproc_conn_close(wr);
    }
    CHECK(owed >= ROUNDS / 4);
}

typedef struct {
    mproc_conn *wr;
    unsigned seq;
    bool sent;
} sender;

static void send_one(void *arg)
{
    sender *w = arg;
    unsigned char b[BODY];
    fill(b, BODY, w->seq);
    if (!w->sent) CHECK_OK(mproc_conn_send(w->wr, b, BODY));
    w->sent = true;
}

TEST_T(poll_and_wait_return_eintr, 120)
{
    intr_install();
    unsigned owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        mproc_conn *rd, *wr;
        new_pair(&rd, &wr, i);
        sender w = {wr, i, false};
        int fd = mproc_conn_fd(rd);
        bool ready = false;
        int before = intr_count();
        intr_shot *s = intr_arm(i, send_one, &w);
        intr_go(s);
        int r = i % 2 ? mproc_conn_poll(rd, WAIT_S) : mproc_wait(&fd, 1, &ready, WAIT_S);
        owed += intr_check(r, i, intr_end(s), before);
        if (r == -EINTR) {
            send_one(&w);
            r = i % 2 ? mproc_conn_poll(rd, 30) : mproc_wait(&fd, 1, &ready, 30);
        }
        CHECK_EQ(r, 1);
        unsigned char buf[BODY];
        size_t len;
        CHECK_OK(mproc_conn_recv(rd, buf, sizeof buf, &len, 0));
        CHECK(len == BODY && filled(buf, BODY, i));
        mproc_conn_close(rd);
        mproc_conn_close(wr);
    }
    CHECK(owed >= ROUNDS / 4);
}

/* ---- a send that waits for room ---- */

#define PAGE_BODY (4096 - 4) /* one frame, one pipe page */
#define PIPE_PAGES 16

typedef struct {
    mproc_conn *rd, *wr;
    unsigned next; /* the message the reader expects */
} pipe_pair;

static void recv_one(void *arg)
{
    pipe_pair *pp = arg;
    static unsigned char buf[PAGE_BODY];
    size_t len;
    CHECK_OK(mproc_conn_recv(pp->rd, buf, sizeof buf, &len, 30));
    CHECK(len == PAGE_BODY && filled(buf, PAGE_BODY, pp->next));
    pp->next++;
}

static bool writable(mproc_conn *c)
{
    struct pollfd p = {.fd = mproc_conn_fd(c), .events = POLLOUT};
    return poll(&p, 1, 0) == 1;
}

TEST_T(send_waiting_for_room_returns_eintr_and_sends_nothing, 120)
{
    intr_install();
    pipe_pair pp = {0};
    CHECK_OK(mproc_pipe(&pp.rd, &pp.wr, false));
    CHECK(fcntl(mproc_conn_fd(pp.wr), F_SETPIPE_SZ, PIPE_PAGES * 4096) >= PIPE_PAGES * 4096);
    static unsigned char msg[PAGE_BODY];
    unsigned seq = 0;
    while (writable(pp.wr)) {
        fill(msg, sizeof msg, seq++);
        CHECK_OK(mproc_conn_send(pp.wr, msg, sizeof msg));
    }
    unsigned owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        fill(msg, sizeof msg, seq);
        int before = intr_count();
        intr_shot *s = intr_arm(i, recv_one, &pp);
        intr_go(s);
        unsigned read_before = pp.next;
        int r = mproc_conn_send(pp.wr, msg, sizeof msg);
        owed += intr_check(r, i, intr_end(s), before);
        if (r == -EINTR) {
            /* nothing of it went out: the reader still finds whole messages in order */
            if (pp.next == read_before) recv_one(&pp);
            r = mproc_conn_send(pp.wr, msg, sizeof msg);
        }
        CHECK_OK(r);
        seq++;
        CHECK(!writable(pp.wr));
    }
    while (pp.next < seq)
        recv_one(&pp);
    CHECK_RC(mproc_conn_poll(pp.rd, 0), 0);
    CHECK(owed >= ROUNDS / 4);
    mproc_conn_close(pp.rd);
    mproc_conn_close(pp.wr);
}

/* ---- accept and the handshake ---- */

typedef struct {
    const char *address;
    mproc_conn *client;
} dialer;

static void dial(void *arg)
{
    dialer *d = arg;
    CHECK_OK(mproc_client_connect(&d->client, d->address, NULL, 0));
}

TEST_T(accept_returns_eintr, 120)
{
    intr_install();
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-intr-%d", (int)getpid());
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, addr, NULL, 0));
    unsigned owed = 0;
    for (unsigned i = 1; i <= ROUNDS; i++) {
        dialer d = {addr, NULL};
        mproc_conn *c = NULL;
        int before = intr_count();
        intr_shot *s = intr_arm(i, dial, &d);
        intr_go(s);
        int r = mproc_listener_accept(l, &c, WAIT_S);
        owed += intr_check(r, i, intr_end(s), before);
        if (r == -EINTR) {
            CHECK(c == NULL);
            if (!d.client) dial(&d);
            r = mproc_listener_accept(l, &c, 30);
        }
        CHECK_OK(r);
        CHECK_OK(mproc_conn_send(d.client, "x", 1));
        char x;
        size_t len;
        CHECK_OK(mproc_conn_recv(c, &x, 1, &len, 30));
        CHECK(len == 1 && x == 'x');
        mproc_conn_close(c);
        mproc_conn_close(d.client);
    }
    CHECK(owed >= ROUNDS / 4);
    mproc_listener_free(l);
}

static void *interrupt_after_50ms(void *arg)
{
    usleep(50000);
    pthread_kill(*(pthread_t *)arg, SIGINT);
    return NULL;
}

static pthread_t interrupt_soon(pthread_t *self)
{
    *self = pthread_self();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, interrupt_after_50ms, self));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return th;
}

/* A client that connects and then says nothing: the server's handshake waits for it. A client
 * whose server never answers: its handshake waits. Both waits return -EINTR, and the listener
 * goes on accepting. */
TEST(handshake_waits_return_eintr)
{
    intr_install();
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-intr-hs-%d", (int)getpid());
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, addr, "key", 3));
    mproc_conn *mute, *c = NULL;
    CHECK_OK(mproc_client_connect(&mute, addr, NULL, 0));
    pthread_t self, th = interrupt_soon(&self);
    double t0 = harness_now();
    CHECK_RC(mproc_listener_accept(l, &c, 10), -EINTR);
    CHECK(harness_now() - t0 < 5 * harness_slow());
    pthread_join(th, NULL);
    CHECK(c == NULL);
    mproc_conn_close(mute);

    /* nobody accepts: the client waits for the challenge */
    th = interrupt_soon(&self);
    t0 = harness_now();
    CHECK_RC(
        mproc_client_connect_opts(&c, addr, "key", 3, &(mproc_conn_opts){.handshake_timeout = 10}),
        -EINTR);
    CHECK(harness_now() - t0 < 5 * harness_slow());
    pthread_join(th, NULL);
    CHECK_EQ(intr_count(), 2);
    /* that client's connection waits in the backlog, closed: the accept fails it */
    CHECK(mproc_listener_accept(l, &c, 5) < 0);
    mproc_listener_free(l);
}
