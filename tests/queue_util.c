/* Helpers shared by the queue suites; see queue_util.h. */
#include "queue_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"

size_t arena_in_use(void)
{
    mproc__arena_stats st;
    mproc__arena_get_stats(&st);
    return st.in_use;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

void fill(unsigned char *b, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
}

size_t make_msg(unsigned char *buf, uint32_t producer, uint64_t seq, size_t payload)
{
    msg_hdr h = {.producer = producer, .len = (uint32_t)payload, .seq = seq};
    fill(buf + sizeof h, payload, ((uint64_t)producer << 40) ^ seq);
    h.sum = fnv(buf + sizeof h, payload, fnv(&h, offsetof(msg_hdr, sum), 0xcbf29ce484222325ULL));
    memcpy(buf, &h, sizeof h);
    return sizeof h + payload;
}

int check_msg(const unsigned char *buf, size_t len, msg_hdr *h)
{
    if (len < sizeof *h) return 1;
    memcpy(h, buf, sizeof *h);
    if (h->len != len - sizeof *h) return 2;
    uint64_t s =
        fnv(buf + sizeof *h, h->len, fnv(h, offsetof(msg_hdr, sum), 0xcbf29ce484222325ULL));
    return s == h->sum ? 0 : 3;
}

int queue_budget_round_trip(mproc_queue *q, size_t budget)
{
    unsigned char *whole = calloc(1, budget);
    if (!whole) return -ENOMEM;
    size_t n = 0;
    int rc = mproc_queue_put(q, whole, budget, 0);
    if (rc == 0) rc = mproc_queue_get(q, whole, budget, &n, 0);
    if (rc == 0 && n != budget) rc = -EPROTO;
    free(whole);
    return rc;
}
