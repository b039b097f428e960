/* The manager server's native protocol (src/manager/protocol.h) as a client past the handshake
 * speaks it: the fuzzer's bytes are that client's stream, fed to the server's own step after a
 * read (mgr_conn_parse: framing, then mgr_dispatch and the objects' requests) on an in-process
 * server state, with no sockets and no loop. A blocking request that cannot be done parks in the
 * server's list and never waits, so no input blocks; parked calls are retried and expired as the
 * loop's tick would (mgr_wake) after every frame.
 *
 * The input is cut into frames by a reference reader of the framing (a 16-byte little-endian
 * header, then len bytes), and each frame is fed on its own so that its replies can be counted.
 * Properties:
 * - every reply names a request id the client sent, and its body is within max_message; after
 *   every frame, the requests sent (CANCEL excepted: it answers the call it cancels) equal the
 *   replies received plus the calls still parked: every request is answered exactly once;
 * - a frame claiming more than max_message closes the connection before the server allocates
 *   for it; a truncated last frame is held (never dispatched), its buffer within max_message;
 *   a well-framed request never closes the connection;
 * - once that client is gone, a new client of the same server state still works (HELLO, OPEN a
 *   dict, SET and GET a key, DELETE it): the server survives any garbage;
 * - nothing leaks: the heap (LSan) and the arena (its bytes in use are as they were).
 * An input whose first frame looks like a pickle picks the Python dialect (server.c): not this
 * target's protocol, it is skipped. Nothing here waits, so the replay's SIGALRM (replay.c) has no
 * wait to interrupt; a parked call's expiry depends on the clock only for timeouts shorter than
 * the input's run (a millisecond), and the properties hold either way. */
#include <errno.h>

#include "arena/arena.h"
#include "fuzz_util.h"
#include "manager/server.h"

#define MAX_MESSAGE ((size_t)64 << 10)
#define HDR sizeof(mproc__mgr_req)
#define MAX_FRAMES 2048

typedef struct {
    uint32_t ids[MAX_FRAMES]; /* of the requests sent */
    size_t nids;
    size_t requests, replies; /* requests that must be answered, replies received */
} client;

static mgr_conn *conn_new(void)
{
    mgr_conn *c = calloc(1, sizeof *c);
    FUZZ_CHECK(c, "out of memory");
    c->fd = -1;
    c->ready = true; /* no key: past the handshake */
    return c;
}

/* As server.c's conn_close, less the socket. */
static void conn_free(mgr_srv *s, mgr_conn *c)
{
    mgr_conn_gone(s, c);
    free(c->in);
    free(c->out);
    free(c);
}

static bool sent(const client *k, uint32_t id)
{
    for (size_t i = 0; i < k->nids; i++)
        if (k->ids[i] == id) return true;
    return false;
}

/* Take the replies out of c's output buffer, as a flush would; the last one's status and body
 * (the caller's buffer, up to cap bytes) for the survivor's checks. */
static void drain(mgr_conn *c, client *k, int32_t *status, unsigned char *body, size_t cap,
                  size_t *blen)
{
    size_t at = c->out_off;
    while (at < c->out_len) {
        mproc__mgr_rep h;
        FUZZ_CHECK(c->out_len - at >= sizeof h, "a reply cut short (%zu bytes)", c->out_len - at);
        memcpy(&h, c->out + at, sizeof h);
        FUZZ_CHECK(h.len <= MAX_MESSAGE, "a reply of %u bytes, over max_message", h.len);
        FUZZ_CHECK(c->out_len - at - sizeof h >= h.len, "a reply's body cut short");
        FUZZ_CHECK(sent(k, h.id), "a reply to id %u, never sent", h.id);
        if (status) *status = h.status;
        if (body) {
            *blen = h.len;
            memcpy(body, c->out + at + sizeof h, h.len < cap ? h.len : cap);
        }
        k->replies++;
        at += sizeof h + h.len;
    }
    c->out_off = c->out_len = 0;
    c->throttled = false; /* the replies are read */
}

/* Bytes arrive on c, as conn_read takes them: the parse's result. */
static int feed(mgr_srv *s, mgr_conn *c, const void *data, size_t len)
{
    if (c->in_cap - c->in_len < len) {
        unsigned char *q = realloc(c->in, c->in_len + len);
        FUZZ_CHECK(q, "out of memory");
        c->in = q;
        c->in_cap = c->in_len + len;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    return mgr_conn_parse(s, c);
}

/* One request of the survivor, answered at once with status want (and, with body, that body). */
static void call(mgr_srv *s, mgr_conn *c, client *k, uint16_t op, uint32_t obj, const void *b,
                 size_t len, int32_t want, const void *body, size_t body_len, unsigned char *out)
{
    unsigned char m[HDR + 512];
    FUZZ_CHECK(len <= 512, "survivor request too long");
    mproc__mgr_req h = {.len = (uint32_t)len, .id = (uint32_t)k->nids + 1, .op = op, .obj = obj};
    memcpy(m, &h, HDR);
    memcpy(m + HDR, b, len);
    k->ids[k->nids++] = h.id;
    int r = feed(s, c, m, HDR + len);
    FUZZ_CHECK(r == 0, "the survivor's op %u closed its connection", op);
    int32_t st = INT32_MIN;
    unsigned char rb[64];
    size_t rl = 0;
    size_t before = k->replies;
    drain(c, k, &st, rb, sizeof rb, &rl);
    FUZZ_CHECK(k->replies == before + 1, "the survivor's op %u got %zu replies", op,
               k->replies - before);
    FUZZ_CHECK(st == want, "the survivor's op %u: status %d, not %d", op, st, want);
    if (body)
        FUZZ_CHECK(rl == body_len && memcmp(rb, body, body_len) == 0,
                   "the survivor's op %u: wrong reply body (%zu bytes)", op, rl);
    if (out) memcpy(out, rb, rl < sizeof rb ? rl : sizeof rb);
}

static void survivor(mgr_srv *s)
{
    static const char name[] = "fuzz-survivor";
    client k = {0};
    mgr_conn *c = conn_new();
    unsigned char b[64], rb[64];
    mgr_put32(b, MPROC__MGR_VERSION);
    call(s, c, &k, MGR_HELLO, 0, b, 4, 0, NULL, 0, NULL);
    /* the fuzzed client may have made that name, of any kind: it goes first */
    mgr_obj *old = mgr_find(s, name, sizeof name - 1);
    if (old) call(s, c, &k, MGR_DELETE, 0, name, sizeof name - 1, 0, NULL, 0, NULL);
    memset(b, 0, 18);
    b[0] = MGR_DICT;
    memcpy(b + 18, name, sizeof name - 1);
    call(s, c, &k, MGR_OPEN, 0, b, 18 + sizeof name - 1, 0, NULL, 0, rb);
    uint32_t obj = mgr_get32(rb);
    unsigned char *p = mgr_put32(b, 3);
    memcpy(p, "keyvalue", 8);
    call(s, c, &k, MGR_DICT_SET, obj, b, 4 + 8, 0, NULL, 0, NULL);
    call(s, c, &k, MGR_DICT_GET, obj, "key", 3, 0, "value", 5, NULL);
    call(s, c, &k, MGR_DELETE, 0, name, sizeof name - 1, 0, NULL, 0, NULL);
    FUZZ_CHECK(c->nparked == 0, "the survivor parked a call");
    conn_free(s, c);
}

/* Whether a well-framed OPEN of the input makes a large object: a queue's ring (up to 192 MiB,
 * MPROC_QUEUE_MAX_ITEMS) or a value (up to the arena), which the manager makes for an
 * authenticated client by design (it has no bound of its own on an object's size). Zeroing that
 * much takes 10-50 ms an input, so those inputs are skipped; larger sizes, refused at once, are
 * kept. */
static bool makes_a_large_object(const uint8_t *data, size_t size)
{
    for (size_t at = 0; size - at >= HDR;) {
        mproc__mgr_req h;
        memcpy(&h, data + at, HDR);
        if (h.len > MAX_MESSAGE || size - at - HDR < h.len) return false;
        const uint8_t *b = data + at + HDR;
        if (h.op == MGR_OPEN && h.len > 18) {
            uint64_t a = mgr_get64(b + 1);
            if (b[0] == MGR_QUEUE && a > 4096 && a <= MPROC_QUEUE_MAX_ITEMS) return true;
            if (b[0] == MGR_VALUE && a > ((size_t)1 << 20) && a <= mproc__arena_size()) return true;
        }
        at += HDR + h.len;
    }
    return false;
}

static bool is_pickle_frame(const uint8_t *p)
{
    return p[0] == 0 && p[4] == 0x80 && p[5] >= 2 && p[5] <= 5;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the objects a client may make stay bounded by the input's size */
    if (size > 8192 || (size >= 6 && is_pickle_frame(data))) return 0;
    FUZZ_CHECK(mproc__arena_ensure() == 0, "no arena");
    if (makes_a_large_object(data, size)) return 0;
    mproc__arena_stats st0, st1;
    mproc__arena_get_stats(&st0);
    mgr_srv s = {.o = {.max_message = MAX_MESSAGE,
                       .max_objects = 1024,
                       .max_connections = 4,
                       .max_parked = 64,
                       .share_arena = MPROC_MANAGER_SHARE_NONE},
                 .ep = -1,
                 .next_wake = INT64_MAX};
    int r = mgr_objects_init(&s);
    FUZZ_CHECK(r == 0, "mgr_objects_init: %s", mproc_strerror(r));
    static client k; /* 8 KiB of ids: not on the stack */
    memset(&k, 0, sizeof k);
    mgr_conn *c = conn_new();
    size_t at = 0;
    while (at < size && !s.stop) {
        size_t rest = size - at;
        mproc__mgr_req h;
        if (rest < HDR) { /* a truncated header: held, nothing happens */
            r = feed(&s, c, data + at, rest);
            FUZZ_CHECK(r == 0, "a partial header dropped the client");
            FUZZ_CHECK(c->in_len == rest, "a partial header was not held");
            break;
        }
        memcpy(&h, data + at, HDR);
        if (h.len > MAX_MESSAGE) { /* refused: the connection closes */
            size_t cap = c->in_cap;
            r = feed(&s, c, data + at, rest);
            FUZZ_CHECK(r < 0, "a frame of %u bytes, over max_message, was accepted", h.len);
            FUZZ_CHECK(c->in_cap <= cap + rest, "the server allocated %zu bytes for it", c->in_cap);
            drain(c, &k, NULL, NULL, 0, NULL);
            break;
        }
        if (rest - HDR < h.len) { /* a truncated frame: held until the rest comes */
            r = feed(&s, c, data + at, rest);
            FUZZ_CHECK(r == 0, "a truncated frame dropped the client");
            FUZZ_CHECK(c->in_cap <= HDR + MAX_MESSAGE + rest, "the server allocated %zu bytes",
                       c->in_cap);
            drain(c, &k, NULL, NULL, 0, NULL);
            FUZZ_CHECK(c->in_len == rest, "a truncated frame was not held");
            break;
        }
        FUZZ_CHECK(k.nids < MAX_FRAMES, "too many frames");
        k.ids[k.nids++] = h.id;
        if (h.op != MGR_CANCEL) k.requests++;
        r = feed(&s, c, data + at, HDR + h.len);
        FUZZ_CHECK(r == 0, "a well-framed request (op %u, %u bytes) dropped the client", h.op,
                   h.len);
        FUZZ_CHECK(c->in_len == 0, "a whole frame was not taken (%zu bytes left)", c->in_len);
        mgr_wake(&s, NULL); /* the loop's tick */
        drain(c, &k, NULL, NULL, 0, NULL);
        FUZZ_CHECK(k.requests == k.replies + c->nparked,
                   "%zu requests, %zu replies and %u parked after op %u (id %u)", k.requests,
                   k.replies, c->nparked, h.op, h.id);
        at += HDR + h.len;
    }
    conn_free(&s, c);
    s.stop = false; /* a SHUTDOWN ends the loop, not this state: the survivor may still look */
    survivor(&s);
    mgr_objects_destroy(&s);
    mproc__arena_get_stats(&st1);
    FUZZ_CHECK(st1.in_use == st0.in_use, "the arena holds %zu bytes more after the input",
               st1.in_use - st0.in_use);
    return 0;
}
