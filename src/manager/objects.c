/* The manager server's objects: the name table, the requests on queues, events, locks and values
 * (the dict and list ones are in containers.c), and the parked calls.
 *
 * Objects are the family's own arena objects, made by the server, so a family member uses them
 * directly while outside clients go through here. A blocking call is tried at once with timeout
 * 0; if it would block it is parked, with its deadline, and tried again whenever a request may
 * have changed its object, and every TICK_NS (server.c) for changes family members made in the
 * arena without a request. Nothing here waits. A lock taken through the manager is held by the
 * server's thread on behalf of one connection (holder). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "arena/arena.h"
#include "manager/server.h"
#include "platform/platform.h"

#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
/* A queue get first offers this much room, and more once it knows the message's size. */
#define READ_GUESS ((size_t)64 << 10)

static uint64_t name_hash(const char *n, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)n[i]) * 1099511628211ull;
    return h;
}

int mgr_objects_init(mgr_srv *s)
{
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (!s->buckets) return -ENOMEM;
    if (s->o.max_objects > MPROC_MANAGER_MAX_OBJECTS) return -EINVAL;
    int r = mproc__arena_alloc((void **)&s->token, sizeof *s->token);
    if (r < 0) return r;
    uint64_t t = 0;
    while (t == 0)
        if (getrandom(&t, sizeof t, 0) != sizeof t) t = (uint64_t)mproc__now_ns() ^ (uint64_t)s;
    *s->token = t;
    return 0;
}

static void arena_free(uint8_t kind, void *ptr)
{
    switch (kind) {
    case MGR_QUEUE:
        mproc_queue_free(ptr);
        break;
    case MGR_EVENT:
        mproc_event_free(ptr);
        break;
    case MGR_LOCK:
        mproc_lock_free(ptr);
        break; /* also lets go of it if this thread holds it */
    case MGR_VALUE:
        mproc_value_free(ptr);
        break;
    case MGR_PY_ITER:
        mgr_py_iter_free(ptr);
        break;
    case MGR_PY_SYNC:
        free(ptr);
        break;
    default:
        mgr_container_free(kind, ptr);
    }
}

static void obj_free(mgr_obj *o)
{
    arena_free(o->kind, o->ptr);
    free(o);
}

static void unpark(mgr_srv *s, mgr_parked *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        s->parked = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        s->parked_tail = p->prev;
    p->c->nparked--;
    p->o->nparked--;
    s->nparked--;
    free(p);
}

void mgr_objects_destroy(mgr_srv *s)
{
    while (s->parked)
        unpark(s, s->parked);
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i]) obj_free(s->slots[i]);
    free(s->slots);
    free(s->gens);
    free(s->free_slots);
    free(s->buckets);
    if (s->token) {
        *s->token = 0;
        mproc__arena_free(s->token);
    }
}

static mgr_obj **mgr_find_slot(mgr_srv *s, const char *name, size_t len)
{
    mgr_obj **pp = &s->buckets[name_hash(name, len) & (s->nbuckets - 1)];
    while (*pp && !((*pp)->nlen == len && memcmp((*pp)->name, name, len) == 0))
        pp = &(*pp)->hnext;
    return pp;
}

mgr_obj *mgr_find(mgr_srv *s, const char *name, size_t len)
{
    return *mgr_find_slot(s, name, len);
}

mgr_obj *mgr_by_id(mgr_srv *s, uint32_t id)
{
    uint32_t slot = id & SLOT_MASK;
    if (slot >= s->nslots) return NULL;
    mgr_obj *o = s->slots[slot];
    return o && o->id == id ? o : NULL;
}

static void grow_buckets(mgr_srv *s)
{
    size_t n = s->nbuckets * 2;
    mgr_obj **b = calloc(n, sizeof *b);
    if (!b) return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++)
        for (mgr_obj *o = s->buckets[i], *nx; o; o = nx) {
            nx = o->hnext;
            mgr_obj **pp = &b[name_hash(o->name, o->nlen) & (n - 1)];
            o->hnext = *pp;
            *pp = o;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* A slot for a new object: 0 and *slot, or -ENOSPC / -ENOMEM. */
static int take_slot(mgr_srv *s, uint32_t *slot)
{
    if (s->nobjs >= s->o.max_objects) return -ENOSPC;
    if (s->nfree) {
        *slot = s->free_slots[--s->nfree];
        return 0;
    }
    if (s->nslots % 1024 == 0) {
        size_t n = s->nslots + 1024;
        mgr_obj **sl = realloc(s->slots, n * sizeof *sl);
        if (!sl) return -ENOMEM;
        s->slots = sl;
        uint16_t *g = realloc(s->gens, n * sizeof *g);
        if (!g) return -ENOMEM;
        s->gens = g;
        uint32_t *f = realloc(s->free_slots, n * sizeof *f);
        if (!f) return -ENOMEM;
        s->free_slots = f;
    }
    s->slots[s->nslots] = NULL;
    s->gens[s->nslots] = 0;
    *slot = (uint32_t)s->nslots++;
    return 0;
}

static int make(uint8_t kind, uint64_t a, uint64_t bb, bool c, void **ptr, size_t *size)
{
    switch (kind) {
    case MGR_QUEUE: {
        mproc_queue_opts qo = {.max_items = a, .max_bytes = bb, .joinable = c};
        return mproc_queue_new((mproc_queue **)ptr, &qo);
    }
    case MGR_EVENT:
        return mproc_event_new((mproc_event **)ptr);
    case MGR_LOCK:
        return mproc_lock_new((mproc_lock **)ptr);
    case MGR_VALUE:
        *size = a;
        return mproc_value_new((mproc_value **)ptr, a, c);
    case MGR_DICT:
    case MGR_LIST:
        return mgr_container_new(kind, ptr);
    case MGR_PY_ITER: /* filled by their maker */
    case MGR_PY_SYNC:
        return 0;
    default:
        return -EINVAL;
    }
}

int mgr_obj_open(mgr_srv *s, uint8_t kind, uint64_t a, uint64_t b, bool c, const char *name,
                 size_t nlen, mgr_obj **out)
{
    mgr_obj **pp = mgr_find_slot(s, name, nlen), *o = *pp;
    if (o) {
        *out = o;
        return o->kind == kind ? 0 : -EEXIST;
    }
    uint32_t slot;
    void *ptr = NULL;
    size_t size = 0;
    if (kind == 0 || kind > MGR_PY_SYNC) return -EINVAL;
    int r = take_slot(s, &slot);
    if (r < 0) return r;
    if ((r = make(kind, a, b, c, &ptr, &size)) < 0) {
        s->free_slots[s->nfree++] = slot;
        return r;
    }
    if (!(o = calloc(1, sizeof *o + nlen + 1))) {
        arena_free(kind, ptr);
        s->free_slots[s->nfree++] = slot;
        return -ENOMEM;
    }
    if (++s->gens[slot] == 0 || s->gens[slot] >= (1u << (32 - SLOT_BITS))) s->gens[slot] = 1;
    o->id = (uint32_t)s->gens[slot] << SLOT_BITS | slot;
    o->kind = kind;
    o->ptr = ptr;
    o->size = size;
    o->nlen = nlen;
    memcpy(o->name, name, nlen);
    s->slots[slot] = o;
    *pp = o;
    if (++s->nobjs > s->nbuckets) grow_buckets(s);
    *out = o;
    return 0;
}

#define OPEN_FIXED 18 /* u8 kind, u64, u64, u8 */

static void op_open(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *b)
{
    if (h->len <= OPEN_FIXED || h->len - OPEN_FIXED > MPROC__MGR_NAME_MAX || b[0] >= MGR_KINDS) {
        mgr_reply(c, h->id, -EINVAL, NULL, 0);
        return;
    }
    mgr_obj *o;
    int r = mgr_obj_open(s, b[0], mgr_get64(b + 1), mgr_get64(b + 9), b[17],
                         (const char *)b + OPEN_FIXED, h->len - OPEN_FIXED, &o);
    if (r < 0) {
        mgr_reply(c, h->id, r, NULL, 0);
        return;
    }
    unsigned char out[20], *p = out;
    p = mgr_put32(p, o->id);
    p = mgr_put64(p, (uint64_t)(uintptr_t)o->ptr);
    p = mgr_put64(p, o->size);
    mgr_reply(c, h->id, 0, out, sizeof out);
}

/* A parked call ends without being done (-ETIMEDOUT, -EIDRM). */
static void expire(mgr_parked *p, int code)
{
    if (p->c->dialect == DIALECT_PYTHON)
        mgr_py_expired(NULL, p->c, p->op, code);
    else
        mgr_reply(p->c, p->id, code, NULL, 0);
}

void mgr_remove(mgr_srv *s, mgr_obj *o)
{
    for (mgr_parked *p = s->parked, *nx; p; p = nx) {
        nx = p->next;
        if (p->o != o) continue;
        expire(p, -EIDRM);
        unpark(s, p);
    }
    if (o->holder) o->holder->nheld--;
    *mgr_find_slot(s, o->name, o->nlen) = o->hnext;
    uint32_t slot = o->id & SLOT_MASK;
    s->slots[slot] = NULL;
    s->free_slots[s->nfree++] = slot;
    s->nobjs--;
    obj_free(o);
}

static void op_delete(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *b)
{
    mgr_obj *o = h->len ? mgr_find(s, (const char *)b, h->len) : NULL;
    if (o) mgr_remove(s, o);
    mgr_reply(c, h->id, o ? 0 : -ENOENT, NULL, 0);
}

/* ---- blocking calls ---- */

int mgr_reply_fetch(mgr_srv *s, mgr_conn *c, uint32_t id, uint64_t cap,
                    int (*fetch)(void *ctx, void *buf, size_t cap, size_t *len), void *ctx)
{
    size_t lim = cap < s->o.max_message ? (size_t)cap : s->o.max_message;
    size_t room = lim < READ_GUESS ? lim : READ_GUESS, n = 0;
    int r;
    for (;;) {
        unsigned char *p = mgr_reply_begin(c, room);
        if (!p) return 0;
        r = fetch(ctx, p, room, &n);
        if (r == -EAGAIN) return 1;
        if (r == -EMSGSIZE && n <= lim && n > room) {
            room = n; /* it stays where it is: again with room for it */
            continue;
        }
        break;
    }
    if (r >= 0) {
        mgr_reply_end(c, id, r, n);
    } else if (r == -EMSGSIZE) {
        unsigned char b[8];
        mgr_put64(b, n);
        mgr_reply(c, id, r, b, 8);
    } else {
        mgr_reply(c, id, r, NULL, 0);
    }
    return 0;
}

static int queue_fetch(void *q, void *buf, size_t cap, size_t *len)
{
    return mproc_queue_get(q, buf, cap, len, 0);
}

/* Try a blocking call once without waiting: 1 when it would block (nothing replied), else 0
 * with the reply made. */
int mgr_lock_try(mgr_obj *o, mgr_conn *c)
{
    if (o->holder == c) return -EDEADLK;
    if (o->holder) return 1;
    int r = mproc_lock_acquire(o->ptr, 0);
    if (r == -EAGAIN) return 1; /* a family member holds it in the arena */
    if (r == 0 || r == MPROC_EOWNERDEAD) {
        if (o->owner_died) r = MPROC_EOWNERDEAD;
        o->owner_died = false;
        o->holder = c;
        c->nheld++;
    }
    return r;
}

static int try_call(mgr_srv *s, mgr_conn *c, mgr_obj *o, uint32_t id, uint16_t op, uint64_t cap,
                    const void *data, size_t len)
{
    int r;
    if (c->dialect == DIALECT_PYTHON) return mgr_py_try(s, c, o, op, data, len);
    switch (op) {
    case MGR_QUEUE_PUT:
        r = mproc_queue_put(o->ptr, data, len, 0);
        if (r == -EAGAIN) return 1;
        break;
    case MGR_QUEUE_GET:
        return mgr_reply_fetch(s, c, id, cap, queue_fetch, o->ptr);
    case MGR_QUEUE_JOIN:
        r = mproc_queue_join(o->ptr, 0);
        if (r == -ETIMEDOUT) return 1;
        break;
    case MGR_EVENT_WAIT:
        r = mproc_event_wait(o->ptr, 0);
        if (r == -EAGAIN) return 1;
        break;
    case MGR_LOCK_ACQUIRE:
        r = mgr_lock_try(o, c);
        if (r == 1) return 1;
        break;
    default:
        r = -EINVAL;
    }
    mgr_reply(c, id, r, NULL, 0);
    return 0;
}

static int would_block_code(uint16_t op)
{
    return op == MGR_QUEUE_JOIN ? -ETIMEDOUT : -EAGAIN;
}

/* A blocking call: done now, or parked. */
static void blocking(mgr_srv *s, mgr_conn *c, mgr_obj *o, const mproc__mgr_req *h,
                     const unsigned char *b)
{
    if (h->len < 8) {
        mgr_reply(c, h->id, -EINVAL, NULL, 0);
        return;
    }
    double timeout = mgr_getf64(b);
    uint64_t cap = 0;
    const unsigned char *data = b + 8;
    size_t len = h->len - 8;
    if (h->op == MGR_QUEUE_GET) {
        if (len < 8) {
            mgr_reply(c, h->id, -EINVAL, NULL, 0);
            return;
        }
        cap = mgr_get64(data);
        len = 0;
    }
    if (h->op != MGR_QUEUE_PUT) len = 0;
    if (mproc__timeout_check(timeout)) {
        mgr_reply(c, h->id, -EINVAL, NULL, 0);
        return;
    }
    if (try_call(s, c, o, h->id, h->op, cap, data, len) == 0) return;
    if (timeout == 0) {
        mgr_reply(c, h->id, would_block_code(h->op), NULL, 0);
        return;
    }
    int r = mgr_park(s, c, o, h->id, h->op, timeout, cap, data, len);
    if (r < 0) mgr_reply(c, h->id, r, NULL, 0);
}

int mgr_park(mgr_srv *s, mgr_conn *c, mgr_obj *o, uint32_t id, uint16_t op, double timeout,
             uint64_t cap, const void *data, size_t len)
{
    if (s->nparked >= s->o.max_parked) return -ENOSPC;
    mgr_parked *p = malloc(sizeof *p + len);
    if (!p) return -ENOMEM;
    *p = (mgr_parked){.c = c,
                      .o = o,
                      .id = id,
                      .op = op,
                      .deadline = timeout < 0 ? INT64_MAX : mproc__deadline(timeout),
                      .cap = cap,
                      .len = len,
                      .prev = s->parked_tail};
    if (len) memcpy(p->data, data, len);
    if (s->parked_tail)
        s->parked_tail->next = p;
    else
        s->parked = p;
    s->parked_tail = p;
    if (p->deadline < s->next_wake) s->next_wake = p->deadline;
    s->nparked++;
    c->nparked++;
    o->nparked++;
    return 0;
}

void mgr_wake(mgr_srv *s, mgr_obj *o)
{
    if (!s->nparked || (o && !o->nparked)) return;
    int64_t now = mproc__now_ns();
    mgr_obj *broke = NULL;
    if (!o) s->next_wake = INT64_MAX; /* recomputed over every call still parked */
    for (mgr_parked *p = s->parked, *nx; p; p = nx) {
        nx = p->next;
        if (o && p->o != o) continue;
        if (p->c->dead) continue;
        if (try_call(s, p->c, p->o, p->id, p->op, p->cap, p->data, p->len) == 0) {
            unpark(s, p);
        } else if (p->deadline <= now) {
            int k = p->c->dialect == DIALECT_PYTHON ? mgr_py_deadline(s, p) : 0;
            if (k == 1) {
                if (try_call(s, p->c, p->o, p->id, p->op, p->cap, p->data, p->len) == 0)
                    unpark(s, p);
                continue;
            }
            if (k == 2) broke = p->o;
            expire(p, -ETIMEDOUT);
            unpark(s, p);
        } else if (!o && p->deadline < s->next_wake) {
            s->next_wake = p->deadline;
        }
    }
    /* the calls parked on an object a timeout broke, before this one in the list, learn of it */
    if (broke) mgr_wake(s, broke);
}

static void op_cancel(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *b)
{
    if (h->len < 4) return;
    uint32_t target = mgr_get32(b);
    for (mgr_parked *p = s->parked; p; p = p->next)
        if (p->c == c && p->id == target) {
            mgr_reply(c, target, -ECANCELED, NULL, 0);
            unpark(s, p);
            return;
        }
    /* not parked: its reply is on its way already */
}

void mgr_conn_gone(mgr_srv *s, mgr_conn *c)
{
    for (mgr_parked *p = s->parked, *nx; p && c->nparked; p = nx) {
        nx = p->next;
        if (p->c == c) unpark(s, p);
    }
    if (!c->nheld) return;
    for (size_t i = 0; i < s->nslots && c->nheld; i++) {
        mgr_obj *o = s->slots[i];
        if (!o || o->holder != c) continue;
        /* the client died holding it (or went away): the next acquirer learns of it */
        if (o->kind == MGR_PY_SYNC)
            mgr_py_sync_gone(o);
        else
            mproc_lock_release(o->ptr);
        o->holder = NULL;
        o->owner_died = true;
        c->nheld--;
        mgr_wake(s, o);
    }
}

/* ---- the other requests ---- */

static void reply_u64(mgr_conn *c, uint32_t id, uint64_t v)
{
    unsigned char b[8];
    mgr_put64(b, v);
    mgr_reply(c, id, 0, b, 8);
}

static void hello(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *b)
{
    if (h->len < 4 || mgr_get32(b) != MPROC__MGR_VERSION) {
        mgr_reply(c, h->id, MPROC_EPROTO, NULL, 0);
        return;
    }
    unsigned char out[32], *p = out;
    p = mgr_put64(p, (uint64_t)(uintptr_t)mproc__arena_lo);
    p = mgr_put64(p, (uint64_t)(uintptr_t)s->token);
    p = mgr_put64(p, *s->token);
    p = mgr_put64(p, s->o.max_message);
    mgr_reply(c, h->id, 0, out, sizeof out);
}

static void object_op(mgr_srv *s, mgr_conn *c, mgr_obj *o, const mproc__mgr_req *h,
                      const unsigned char *b)
{
    int r;
    void *ptr = o->ptr;
    switch (h->op) {
    case MGR_QUEUE_PUT:
    case MGR_QUEUE_GET:
    case MGR_QUEUE_JOIN:
        if (o->kind != MGR_QUEUE) break;
        blocking(s, c, o, h, b);
        if (h->op != MGR_QUEUE_JOIN) mgr_wake(s, o); /* a put or get frees the other side */
        return;
    case MGR_QUEUE_SIZE:
        if (o->kind != MGR_QUEUE) break;
        reply_u64(c, h->id, mproc_queue_size(ptr));
        return;
    case MGR_QUEUE_FULL:
        if (o->kind != MGR_QUEUE) break;
        mgr_reply(c, h->id, mproc_queue_full(ptr), NULL, 0);
        return;
    case MGR_QUEUE_CLOSED:
        if (o->kind != MGR_QUEUE) break;
        mgr_reply(c, h->id, mproc_queue_closed(ptr), NULL, 0);
        return;
    case MGR_QUEUE_CLOSE:
    case MGR_QUEUE_TASK_DONE:
        if (o->kind != MGR_QUEUE) break;
        r = h->op == MGR_QUEUE_CLOSE ? mproc_queue_close(ptr) : mproc_queue_task_done(ptr);
        mgr_reply(c, h->id, r, NULL, 0);
        mgr_wake(s, o);
        return;
    case MGR_EVENT_SET:
    case MGR_EVENT_CLEAR:
        if (o->kind != MGR_EVENT) break;
        r = h->op == MGR_EVENT_SET ? mproc_event_set(ptr) : mproc_event_clear(ptr);
        mgr_reply(c, h->id, r, NULL, 0);
        if (h->op == MGR_EVENT_SET) mgr_wake(s, o);
        return;
    case MGR_EVENT_IS_SET:
        if (o->kind != MGR_EVENT) break;
        mgr_reply(c, h->id, mproc_event_is_set(ptr), NULL, 0);
        return;
    case MGR_EVENT_WAIT:
        if (o->kind != MGR_EVENT) break;
        blocking(s, c, o, h, b);
        return;
    case MGR_LOCK_ACQUIRE:
        if (o->kind != MGR_LOCK) break;
        blocking(s, c, o, h, b);
        return;
    case MGR_LOCK_RELEASE:
        if (o->kind != MGR_LOCK) break;
        if (o->holder != c) {
            mgr_reply(c, h->id, -EPERM, NULL, 0);
            return;
        }
        r = mproc_lock_release(ptr);
        o->holder = NULL;
        c->nheld--;
        mgr_reply(c, h->id, r, NULL, 0);
        mgr_wake(s, o);
        return;
    case MGR_LOCK_LOCKED:
        if (o->kind != MGR_LOCK) break;
        mgr_reply(c, h->id, o->holder || mproc_lock_locked(ptr), NULL, 0);
        return;
    case MGR_VALUE_LOAD: {
        if (o->kind != MGR_VALUE || h->len < 8) break;
        uint64_t n = mgr_get64(b);
        if (n > o->size) break;
        if (n > s->o.max_message) { /* no reply may be larger: the client refuses it */
            mgr_reply(c, h->id, -EMSGSIZE, NULL, 0);
            return;
        }
        unsigned char *p = mgr_reply_begin(c, n);
        if (!p) return;
        r = mproc_value_load(ptr, p, n);
        mgr_reply_end(c, h->id, r, r == 0 ? n : 0);
        return;
    }
    case MGR_VALUE_STORE:
        if (o->kind != MGR_VALUE) break;
        mgr_reply(c, h->id, mproc_value_store(ptr, b, h->len), NULL, 0);
        return;
    default:
        if (mgr_container_op(s, c, o, h, b) == 0) return;
    }
    mgr_reply(c, h->id, -EINVAL, NULL, 0);
}

void mgr_dispatch(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *b)
{
    switch (h->op) {
    case MGR_HELLO:
        hello(s, c, h, b);
        return;
    case MGR_OPEN:
        op_open(s, c, h, b);
        return;
    case MGR_DELETE:
        op_delete(s, c, h, b);
        return;
    case MGR_CANCEL:
        op_cancel(s, c, h, b);
        return;
    case MGR_SHARE:
        mgr_share_offer(s, c, h);
        return;
    case MGR_SHUTDOWN:
        mgr_reply(c, h->id, 0, NULL, 0);
        s->stop = true;
        return;
    }
    mgr_obj *o = mgr_by_id(s, h->obj);
    if (!o) {
        mgr_reply(c, h->id, -EIDRM, NULL, 0);
        return;
    }
    object_op(s, c, o, h, b);
}
