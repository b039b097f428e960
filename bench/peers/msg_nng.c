/* nng over ipc://: push0/pull0 (one socket pair per direction) and pair1 (one bidirectional
 * pair). Send and receive buffers = the common depth (in messages); messages are received as
 * nng_msg and checked in place. Side 0 listens, side 1 dials without blocking (nng retries until
 * the listener is there). */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "msg.h"

typedef struct {
    char url[2][96];
    int depth;
    size_t len;
    bool pair;
} nst;

typedef struct {
    nng_socket rx, tx;
    nng_msg *msg;
} nend;

static void *prepare(size_t len, size_t depth, bool pair)
{
    nst *st = calloc(1, sizeof *st);
    for (int i = 0; i < 2; i++) {
        snprintf(st->url[i], sizeof st->url[i], "ipc:///tmp/mproc-bench-nng-%d-%d", (int)getpid(),
                 i);
        unlink(st->url[i] + 6);
    }
    st->depth = (int)depth;
    st->len = len;
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

static int sock(nng_socket *s, nst *st, int (*open)(nng_socket *), int chan, bool listen)
{
    if (open(s) || nng_socket_set_int(*s, NNG_OPT_SENDBUF, st->depth) ||
        nng_socket_set_int(*s, NNG_OPT_RECVBUF, st->depth) ||
        nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, st->len + 64))
        return -1;
    return listen ? nng_listen(*s, st->url[chan], NULL, 0)
                  : nng_dial(*s, st->url[chan], NULL, NNG_FLAG_NONBLOCK);
}

static void *nopen(void *p, int side)
{
    nst *st = p;
    nend *h = calloc(1, sizeof *h);
    int r;
    if (st->pair) {
        r = sock(&h->rx, st, nng_pair1_open, 0, side == 0);
        h->tx = h->rx;
    } else {
        r = sock(&h->rx, st, nng_pull0_open, side, side == 0) ||
            sock(&h->tx, st, nng_push0_open, 1 - side, side == 0);
    }
    return r ? NULL : h;
}

static int nsend(void *p, const void *buf, size_t len)
{
    return nng_send(((nend *)p)->tx, (void *)buf, len, 0) ? -1 : 0;
}

static const void *nrecv(void *p, void *buf, size_t len, size_t *got)
{
    (void)buf, (void)len;
    nend *h = p;
    if (h->msg) nng_msg_free(h->msg);
    h->msg = NULL;
    if (nng_recvmsg(h->rx, &h->msg, 0)) return NULL;
    *got = nng_msg_len(h->msg);
    return nng_msg_body(h->msg);
}

static void nclose(void *p)
{
    nend *h = p;
    if (h->msg) nng_msg_free(h->msg);
    nng_close(h->rx);
    if (nng_socket_id(h->tx) != nng_socket_id(h->rx)) nng_close(h->tx);
    free(h);
}

static void ncleanup(void *p)
{
    nst *st = p;
    unlink(st->url[0] + 6);
    unlink(st->url[1] + 6);
    free(st);
}

static const peer_msg_ops push_ops = {"nng push/pull", push_prepare, nopen,   nsend,
                                      nrecv,           nclose,       ncleanup};
static const peer_msg_ops pair_ops = {"nng pair", pair_prepare, nopen,   nsend,
                                      nrecv,      nclose,       ncleanup};

int main(void)
{
    const peer_msg_ops *ops[] = {&push_ops, &pair_ops};
    return peer_msg_main(ops, 2);
}
