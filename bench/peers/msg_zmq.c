/* ZeroMQ over ipc://: PUSH/PULL (one socket pair per direction) and PAIR (one bidirectional
 * socket pair). High-water marks on both ends = the common depth; messages are received into a
 * zmq_msg_t and checked in place; a process owns its own context. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "msg.h"

typedef struct {
    char ep[2][96];
    int depth;
    bool pair;
} zst;

typedef struct {
    void *ctx, *rx, *tx;
    zmq_msg_t msg;
} zend;

static void *prepare(size_t len, size_t depth, bool pair)
{
    (void)len;
    zst *st = calloc(1, sizeof *st);
    for (int i = 0; i < 2; i++) {
        snprintf(st->ep[i], sizeof st->ep[i], "ipc:///tmp/mproc-bench-zmq-%d-%d", (int)getpid(), i);
        unlink(st->ep[i] + 6);
    }
    st->depth = (int)depth;
    st->pair = pair;
    return st;
}

static void *push_prepare(size_t len, size_t depth)
{
    return prepare(len, depth, false);
}

static void *pair_prepare(size_t len, size_t depth)
{
    return prepare(len, depth, true);
}

static void *sock(zend *h, zst *st, int type, int chan, bool bind)
{
    void *s = zmq_socket(h->ctx, type);
    if (!s || zmq_setsockopt(s, ZMQ_SNDHWM, &st->depth, sizeof st->depth) ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &st->depth, sizeof st->depth) ||
        (bind ? zmq_bind(s, st->ep[chan]) : zmq_connect(s, st->ep[chan])))
        return NULL;
    return s;
}

/* Side 0 binds (it is started first), side 1 connects. */
static void *zopen(void *p, int side)
{
    zst *st = p;
    zend *h = calloc(1, sizeof *h);
    h->ctx = zmq_ctx_new();
    zmq_msg_init(&h->msg);
    if (st->pair) {
        h->rx = h->tx = sock(h, st, ZMQ_PAIR, 0, side == 0);
    } else {
        h->rx = sock(h, st, ZMQ_PULL, side, side == 0);
        h->tx = sock(h, st, ZMQ_PUSH, 1 - side, side == 0);
    }
    return h->rx && h->tx ? h : NULL;
}

static int zsend(void *p, const void *buf, size_t len)
{
    return zmq_send(((zend *)p)->tx, buf, len, 0) == (int)len ? 0 : -1;
}

static const void *zrecv(void *p, void *buf, size_t len, size_t *got)
{
    (void)buf, (void)len;
    zend *h = p;
    if (zmq_msg_recv(&h->msg, h->rx, 0) < 0) return NULL;
    *got = zmq_msg_size(&h->msg);
    return zmq_msg_data(&h->msg);
}

static void zclose(void *p)
{
    zend *h = p;
    zmq_msg_close(&h->msg);
    zmq_close(h->rx);
    if (h->tx != h->rx) zmq_close(h->tx);
    zmq_ctx_term(h->ctx);
    free(h);
}

static void zcleanup(void *p)
{
    zst *st = p;
    unlink(st->ep[0] + 6);
    unlink(st->ep[1] + 6);
    free(st);
}

static const peer_msg_ops push_ops = {"zmq push/pull", push_prepare, zopen,   zsend,
                                      zrecv,           zclose,       zcleanup};
static const peer_msg_ops pair_ops = {"zmq pair", pair_prepare, zopen,   zsend,
                                      zrecv,      zclose,       zcleanup};

int main(void)
{
    const peer_msg_ops *ops[] = {&push_ops, &pair_ops};
    return peer_msg_main(ops, 2);
}
