/* The transport's sends and receives for one process (link.h). */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "platform/platform.h"
#include "pool/remote/link.h"

void mproc__wbuf_start(mproc__wbuf *w, uint32_t type, uint32_t pool)
{
    w->len = 0;
    wire_hdr *h = mproc__wbuf_add(w, sizeof *h);
    if (h) *h = (wire_hdr){type, pool, 0, 0};
}

void *mproc__wbuf_add(mproc__wbuf *w, size_t n)
{
    n = WIRE_PAD(n);
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : MPROC__WIRE_BATCH + 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *b = realloc(w->b, cap);
        if (!b) return NULL;
        w->b = b;
        w->cap = cap;
    }
    void *at = w->b + w->len;
    if (n) memset((char *)at + n - 8, 0, 8); /* the padding travels zeroed */
    w->len += n;
    return at;
}

static int send_buf(mproc__link *l, int dest, void *buf, size_t len)
{
    if (l->dead) {
        free(buf);
        return -EPIPE;
    }
    if (l->nsends == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        mproc__link_send_t *s = realloc(l->sends, cap * sizeof *s);
        if (!s) {
            free(buf);
            return -ENOMEM;
        }
        l->sends = s;
        l->cap = cap;
    }
    void *req;
    int r = l->t->isend(dest, buf, len, &req);
    if (r < 0) {
        free(buf);
        return r;
    }
    l->sends[l->nsends++] = (mproc__link_send_t){req, buf};
    return 0;
}

int mproc__link_send_wbuf(mproc__link *l, int dest, mproc__wbuf *w)
{
    void *buf = w->b;
    size_t len = w->len;
    w->b = NULL;
    w->len = w->cap = 0;
    return send_buf(l, dest, buf, len);
}

int mproc__link_send_hdr(mproc__link *l, int dest, uint32_t type, uint32_t pool, uint32_t n)
{
    wire_hdr *h = malloc(sizeof *h);
    if (!h) return -ENOMEM;
    *h = (wire_hdr){type, pool, n, 0};
    return send_buf(l, dest, h, sizeof *h);
}

bool mproc__link_progress(mproc__link *l)
{
    size_t k = 0;
    for (size_t i = 0; i < l->nsends; i++) {
        int r = l->dead ? 1 : l->t->test(l->sends[i].req);
        if (r != 0) {
            free(l->sends[i].buf);
            if (r < 0) l->dead = true;
        } else {
            l->sends[k++] = l->sends[i];
        }
    }
    bool finished = k < l->nsends;
    l->nsends = k;
    return finished;
}

int mproc__link_recv(mproc__link *l, int *src, void **buf, size_t *len)
{
    if (l->dead) return 0;
    int r = l->t->probe(src, len);
    if (r <= 0) return r;
    void *b = malloc(*len ? *len : 1);
    if (!b) return -ENOMEM;
    r = l->t->recv(*src, b, *len);
    if (r < 0) {
        free(b);
        return r;
    }
    if (*len < sizeof(wire_hdr)) {
        free(b);
        return -EPROTO;
    }
    *buf = b;
    return 1;
}

void mproc__link_flush(mproc__link *l, int64_t timeout_ns)
{
    int64_t end = mproc__now_ns() + timeout_ns;
    for (mproc__link_progress(l); l->nsends && mproc__now_ns() < end; mproc__link_progress(l))
        sched_yield();
}

int64_t mproc__idle_step(mproc__idle *w, bool did, bool sending)
{
    int64_t now = mproc__now_ns();
    if (did || !w->last_active) {
        w->last_active = now;
        w->sleep_ns = 0;
        return 0;
    }
    if (sending || now - w->last_active < MPROC__LINK_POLL_NS) {
        mproc__yield_look(&w->y, now);
        return 0;
    }
    /* Then sleeps growing from 20 us to the longest step: a reply a little late costs tens of
     * microseconds, not a whole step, and an idle process still wakes rarely. */
    w->sleep_ns = w->sleep_ns ? w->sleep_ns * 2 : 20000;
    if (w->sleep_ns > MPROC__LINK_SLEEP_NS) w->sleep_ns = MPROC__LINK_SLEEP_NS;
    return w->sleep_ns;
}
