/* The manager server's Python dialect: what a CPython BaseManager/SyncManager client sends after
 * the handshake (docs/manager.md, "Python clients"). Requests are pickled tuples
 * (ident, methodname, args, kwds), read by the safe reader (channel/pickle.h: nothing executes);
 * replies are ('#RETURN', v), ('#ERROR', exception), ('#TRACEBACK', text) or
 * ('#PROXY', (exposed, token)), one per request, in order (a Python client waits for each).
 *
 * A fresh connection carries manager requests (create, incref, decref, get_methods, ...); after
 * accept_connection it is a proxy's, carrying method calls on objects named by ident (the object's
 * id in hex). Objects are the server's own (dicts, queues, events, locks in the arena), so native
 * clients and family members see what Python clients do. Values are kept as bytes: a Python bytes
 * value as itself, anything else as its pickle (written by our writer, so equal keys make equal
 * bytes once numbers are normalised: 1, 1.0 and True are one key, as in Python). Blocking calls
 * park like native ones (objects.c) and are answered by mgr_py_try / mgr_py_expired. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel/pickle.h"
#include "manager/server.h"

enum {
    PY_NONE,
    PY_DICT,
    PY_LIST,
    PY_NAMESPACE,
    PY_QUEUE,
    PY_EVENT,
    PY_LOCK,
    PY_ITER,
    PY_VALUE,
    PY_RLOCK,
    PY_SEMAPHORE,
    PY_BOUNDED,
    PY_CONDITION,
    PY_BARRIER,
};

/* The exposed tuples CPython 3.11's SyncManager gives each typeid (a proxy type built from them,
 * AutoProxy's, has exactly these methods). dict's lists __iter__ twice: its method_to_typeid is
 * appended, as CPython does. */
static const char *const dict_exposed[] = {
    "__contains__", "__delitem__", "__getitem__", "__iter__", "__len__",  "__setitem__",
    "clear",        "copy",        "get",         "items",    "keys",     "pop",
    "popitem",      "setdefault",  "update",      "values",   "__iter__", NULL};
static const char *const list_exposed[] = {
    "__add__",  "__contains__", "__delitem__", "__getitem__", "__len__",  "__mul__", "__reversed__",
    "__rmul__", "__setitem__",  "append",      "count",       "extend",   "index",   "insert",
    "pop",      "remove",       "reverse",     "sort",        "__imul__", NULL};
static const char *const namespace_exposed[] = {"__getattribute__", "__setattr__", "__delattr__",
                                                NULL};
static const char *const queue_exposed[] = {"empty", "full",       "get",   "get_nowait", "join",
                                            "put",   "put_nowait", "qsize", "task_done",  NULL};
static const char *const event_exposed[] = {"is_set", "set", "clear", "wait", NULL};
static const char *const lock_exposed[] = {"acquire", "release", NULL};
static const char *const value_exposed[] = {"get", "set", NULL};
static const char *const iter_exposed[] = {"__next__", "send", "throw", "close", NULL};
/* ConditionProxy's wait_for is the client's: a loop of wait() and its predicate. */
static const char *const condition_exposed[] = {"acquire", "release",    "wait",
                                                "notify",  "notify_all", NULL};
/* BarrierProxy's parties, n_waiting and broken are __getattribute__ calls. */
static const char *const barrier_exposed[] = {"__getattribute__", "wait", "abort", "reset", NULL};

static const struct pytype {
    const char *typeid;
    uint8_t py, kind;
    const char *const *exposed;
} pytypes[] = {
    {"dict", PY_DICT, MGR_DICT, dict_exposed},
    {"list", PY_LIST, MGR_LIST, list_exposed},
    {"Namespace", PY_NAMESPACE, MGR_DICT, namespace_exposed},
    {"Queue", PY_QUEUE, MGR_QUEUE, queue_exposed},
    {"JoinableQueue", PY_QUEUE, MGR_QUEUE, queue_exposed},
    {"Event", PY_EVENT, MGR_EVENT, event_exposed},
    {"Lock", PY_LOCK, MGR_LOCK, lock_exposed},
    {"Value", PY_VALUE, MGR_LIST, value_exposed}, /* a list of one item */
    {"RLock", PY_RLOCK, MGR_PY_SYNC, lock_exposed},
    {"Semaphore", PY_SEMAPHORE, MGR_PY_SYNC, lock_exposed},
    {"BoundedSemaphore", PY_BOUNDED, MGR_PY_SYNC, lock_exposed},
    {"Condition", PY_CONDITION, MGR_PY_SYNC, condition_exposed},
    {"Barrier", PY_BARRIER, MGR_PY_SYNC, barrier_exposed},
    {"Iterator", PY_ITER, MGR_PY_ITER, iter_exposed},
};
#define NTYPES (sizeof pytypes / sizeof pytypes[0])

static const struct pytype *type_of(const mgr_obj *o)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (o->pytype ? pytypes[i].py == o->pytype : pytypes[i].kind == o->kind) return &pytypes[i];
    return NULL;
}

static const struct pytype *type_named(const char *typeid)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(pytypes[i].typeid, typeid) == 0) return &pytypes[i];
    return NULL;
}

typedef struct {
    mproc_dict_item *items;
    size_t n, pos;
} py_iter;

void mgr_py_iter_free(void *it)
{
    py_iter *i = it;
    if (!i) return;
    free(i->items);
    free(i);
}

/* An RLock or a Condition's lock (holder: the mgr_obj's, per connection), a Semaphore (no
 * holder), or a Barrier. */
typedef struct {
    int64_t value, bound; /* a semaphore's count, and a bounded one's limit */
    uint32_t depth;       /* an RLock's acquisitions by its holder */
    /* a Barrier: parties, arrivals of this round, its number, whether it is broken, and the
     * timeout its waits default to (< 0: none) */
    int64_t parties, waiting;
    uint64_t round;
    bool broken;
    double timeout;
} py_sync;

/* A Condition's parked wait: state, then the u32 depth of the lock it gave up. */
enum { COND_WAITING, COND_NOTIFIED, COND_TIMED_OUT };
#define COND_STATE 5
/* A Barrier's parked wait: u64 round, i64 arrival index. */
#define BARRIER_STATE 16

static bool reentrant(const mgr_obj *o)
{
    return o->pytype == PY_RLOCK || o->pytype == PY_CONDITION;
}

void mgr_py_sync_gone(mgr_obj *o)
{
    ((py_sync *)o->ptr)->depth = 0;
}

/* Acquire once without waiting: 1 would block, else 0. */
static int sync_try(mgr_obj *o, mgr_conn *c)
{
    py_sync *y = o->ptr;
    if (!reentrant(o)) {
        if (y->value <= 0) return 1;
        y->value--;
        return 0;
    }
    if (o->holder && o->holder != c) return 1;
    if (!o->holder) {
        o->holder = c;
        c->nheld++;
    }
    y->depth++;
    return 0;
}

/* One request being answered: the reply's nodes live in d, values decoded from storage in docs. */
typedef struct {
    mgr_srv *s;
    mgr_conn *c;
    mproc__pk_doc *d;
    mproc__pk_doc **docs;
    size_t ndocs, capdocs;
    bool failed; /* out of memory somewhere: the reply is a traceback */
} req;

static int req_init(req *r, mgr_srv *s, mgr_conn *c)
{
    *r = (req){.s = s, .c = c};
    return mproc__pk_doc_new(&r->d);
}

static void req_done(req *r)
{
    for (size_t i = 0; i < r->ndocs; i++)
        mproc__pk_doc_free(r->docs[i]);
    free(r->docs);
    mproc__pk_doc_free(r->d);
}

static void send_pickle(mgr_conn *c, const mproc__pk *msg)
{
    void *buf = NULL;
    size_t len = 0;
    if (!msg || mproc__pickle_write(msg, &buf, &len) < 0) {
        /* a reply we cannot write (out of memory): the client would wait forever, so hang up */
        c->dead = true;
        return;
    }
    if (mgr_send_frame(c, buf, len) < 0) c->dead = true;
    free(buf);
}

static void reply(req *r, const char *kind, mproc__pk *v)
{
    if (r->failed) {
        kind = "#TRACEBACK";
        v = mproc__pk_cstr(r->d, "MemoryError: in the mproc manager");
    }
    send_pickle(r->c, mproc__pk_tuple(r->d, 2, mproc__pk_cstr(r->d, kind), v));
}

static void ret(req *r, mproc__pk *v)
{
    reply(r, "#RETURN", v);
}

static void ret_none(req *r)
{
    ret(r, mproc__pk_none(r->d));
}

static void traceback(req *r, const char *fmt, const char *arg)
{
    char text[512];
    snprintf(text, sizeof text, fmt, arg);
    reply(r, "#TRACEBACK", mproc__pk_cstr(r->d, text));
}

/* ('#ERROR', module.name(arg)) with arg a node (NULL: no argument). */
static void raise_obj(req *r, const char *module, const char *name, const mproc__pk *arg)
{
    mproc__pk *args = arg ? mproc__pk_tuple(r->d, 1, (mproc__pk *)arg)
                          : mproc__pk_container(r->d, MPROC__PK_TUPLE);
    reply(
        r, "#ERROR",
        mproc__pk_object(r->d, MPROC__PK_REDUCE, mproc__pk_global(r->d, module, name), args, NULL));
}

static void raise_str(req *r, const char *module, const char *name, const char *text)
{
    raise_obj(r, module, name, text ? mproc__pk_cstr(r->d, text) : NULL);
}

/* An errno from an arena call as the exception Python would raise nearby. */
static void raise_code(req *r, int code)
{
    char text[64];
    snprintf(text, sizeof text, "mproc manager: error %d", code);
    raise_str(r, "builtins", code == -ENOMEM || code == -ENOSPC ? "MemoryError" : "OSError", text);
}

/* ---- values: Python objects <-> stored bytes ---- */

static bool looks_pickled(const void *p, size_t len)
{
    return len >= 2 && ((const unsigned char *)p)[0] == 0x80;
}

/* Python's equal keys made one: bool and integral floats become ints (in tuples too). */
static const mproc__pk *norm_key(req *r, const mproc__pk *k)
{
    switch (k->kind) {
    case MPROC__PK_BOOL:
        return mproc__pk_int(r->d, k->u.b);
    case MPROC__PK_FLOAT:
        if (k->u.f == trunc(k->u.f) && fabs(k->u.f) < 9.2e18)
            return mproc__pk_int(r->d, (int64_t)k->u.f);
        return k;
    case MPROC__PK_TUPLE: {
        mproc__pk *t = NULL;
        for (size_t i = 0; i < k->n; i++) {
            const mproc__pk *item = norm_key(r, k->u.items[i]);
            if (!item) return NULL;
            if (item != k->u.items[i] && !t) {
                t = mproc__pk_container(r->d, MPROC__PK_TUPLE);
                for (size_t j = 0; t && j < i; j++)
                    if (mproc__pk_add(r->d, t, k->u.items[j], NULL) < 0) t = NULL;
                if (!t) return NULL;
            }
            if (t && mproc__pk_add(r->d, t, (mproc__pk *)item, NULL) < 0) return NULL;
        }
        return t ? t : k;
    }
    default:
        return k;
    }
}

static bool hashable(const mproc__pk *k)
{
    switch (k->kind) {
    case MPROC__PK_LIST:
    case MPROC__PK_DICT:
    case MPROC__PK_SET:
    case MPROC__PK_BYTEARRAY:
        return false;
    case MPROC__PK_TUPLE:
        for (size_t i = 0; i < k->n; i++)
            if (!hashable(k->u.items[i])) return false;
        return true;
    default:
        return true;
    }
}

/* The bytes stored for v. *owned: *out is malloc'd. 0, or -ENOMEM / -EINVAL. */
typedef struct {
    const void *p;
    size_t len;
    void *owned;
} enc_t;

static int encode(req *r, const mproc__pk *v, bool key, enc_t *e)
{
    *e = (enc_t){0};
    if (key) {
        v = norm_key(r, v);
        if (!v) return -ENOMEM;
    }
    if (v->kind == MPROC__PK_BYTES && !looks_pickled(v->u.bytes, v->n)) {
        e->p = v->u.bytes;
        e->len = v->n;
        return 0;
    }
    int rc = mproc__pickle_write(v, &e->owned, &e->len);
    e->p = e->owned;
    return rc;
}

/* A key argument: encoded, or the exception raised (TypeError for unhashable ones): false. */
static bool key_arg(req *r, const mproc__pk *k, enc_t *e)
{
    if (!k) {
        raise_str(r, "builtins", "TypeError", "missing a key argument");
        return false;
    }
    if (!hashable(k)) {
        raise_str(r, "builtins", "TypeError", "unhashable type");
        return false;
    }
    if (encode(r, k, true, e) < 0) {
        raise_str(r, "builtins", "ValueError", "key not storable");
        return false;
    }
    return true;
}

/* The Python value of stored bytes (a pickle we can read, else bytes). NULL: out of memory. */
static mproc__pk *decode(req *r, const void *p, size_t len)
{
    if (looks_pickled(p, len)) {
        mproc__pk_doc *doc;
        mproc__pk *root;
        mproc__pickle_limits lim = {.max_input = len};
        if (mproc__pickle_read(p, len, &lim, &doc, &root) == 0) {
            if (r->ndocs == r->capdocs) {
                size_t cap = r->capdocs ? r->capdocs * 2 : 8;
                mproc__pk_doc **d = realloc(r->docs, cap * sizeof *d);
                if (!d) {
                    mproc__pk_doc_free(doc);
                    r->failed = true;
                    return NULL;
                }
                r->docs = d;
                r->capdocs = cap;
            }
            r->docs[r->ndocs++] = doc;
            return root;
        }
    }
    mproc__pk *b = mproc__pk_bytes(r->d, MPROC__PK_BYTES, p, len);
    if (!b) r->failed = true;
    return b;
}

/* ---- arguments ---- */

/* Positional argument i, else keyword name, else NULL. */
static const mproc__pk *param(const mproc__pk *args, const mproc__pk *kwds, size_t i,
                              const char *name)
{
    if (args && i < args->n) return args->u.items[i];
    if (!kwds || !name) return NULL;
    for (size_t j = 0; j < kwds->n; j++)
        if (mproc__pk_is_str(kwds->u.items[2 * j], name)) return kwds->u.items[2 * j + 1];
    return NULL;
}

static bool truthy(const mproc__pk *v, bool dflt)
{
    if (!v) return dflt;
    switch (v->kind) {
    case MPROC__PK_NONE:
        return false;
    case MPROC__PK_BOOL:
        return v->u.b;
    case MPROC__PK_INT:
        return v->u.i != 0;
    case MPROC__PK_FLOAT:
        return v->u.f != 0;
    default:
        return true;
    }
}

/* A Python timeout (None or absent: forever) in mproc's convention (< 0: forever). false: not a
 * number (TypeError raised). */
static bool timeout_arg(req *r, const mproc__pk *v, double *t)
{
    *t = -1;
    if (!v || v->kind == MPROC__PK_NONE) return true;
    if (v->kind == MPROC__PK_INT || v->kind == MPROC__PK_BOOL)
        *t = v->kind == MPROC__PK_INT ? (double)v->u.i : v->u.b;
    else if (v->kind == MPROC__PK_FLOAT && !isnan(v->u.f))
        *t = v->u.f;
    else {
        raise_str(r, "builtins", "TypeError", "timeout must be a number");
        return false;
    }
    return true;
}

static mproc__pk *ident_of(req *r, const mgr_obj *o)
{
    char id[16];
    snprintf(id, sizeof id, "%" PRIx32, o->id);
    return mproc__pk_cstr(r->d, id);
}

static mgr_obj *obj_of(mgr_srv *s, const mproc__pk *ident)
{
    if (!ident || ident->kind != MPROC__PK_STR || ident->n == 0 || ident->n > 8) return NULL;
    char *end;
    unsigned long v = strtoul(ident->u.bytes, &end, 16);
    if (*end || v > UINT32_MAX) return NULL;
    return mgr_by_id(s, (uint32_t)v);
}

static mproc__pk *exposed_tuple(req *r, const struct pytype *t)
{
    mproc__pk *e = mproc__pk_container(r->d, MPROC__PK_TUPLE);
    for (const char *const *m = t->exposed; e && *m; m++)
        if (mproc__pk_add(r->d, e, mproc__pk_cstr(r->d, *m), NULL) < 0) e = NULL;
    if (!e) r->failed = true;
    return e;
}

/* ---- blocking calls (parked by objects.c) ---- */

int mgr_py_try(mgr_srv *s, mgr_conn *c, mgr_obj *o, uint16_t op, const void *data, size_t len)
{
    req r;
    if (req_init(&r, s, c) < 0) {
        c->dead = true;
        return 0;
    }
    int rc;
    switch (op) {
    case MGR_QUEUE_PUT:
        rc = mproc_queue_put(o->ptr, data, len, 0);
        if (rc == -EAGAIN) goto blocked;
        if (rc < 0)
            raise_code(&r, rc);
        else
            ret_none(&r);
        break;
    case MGR_QUEUE_GET: {
        void *item = NULL;
        size_t n = 0;
        rc = mproc_queue_get_alloc(o->ptr, &item, &n, 0);
        if (rc == -EAGAIN) goto blocked;
        if (rc < 0) {
            raise_code(&r, rc);
            break;
        }
        ret(&r, decode(&r, item, n));
        free(item);
        break;
    }
    case MGR_QUEUE_JOIN:
        if (mproc_queue_join(o->ptr, 0) == -ETIMEDOUT) goto blocked;
        ret_none(&r);
        break;
    case MGR_EVENT_WAIT:
        if (!mproc_event_is_set(o->ptr)) goto blocked;
        ret(&r, mproc__pk_bool(r.d, true));
        break;
    case MGR_LOCK_ACQUIRE:
        /* a Lock is not reentrant: its holder acquiring again waits (for its timeout) */
        rc = o->kind == MGR_PY_SYNC ? sync_try(o, c) : o->holder == c ? 1 : mgr_lock_try(o, c);
        if (rc == 1) goto blocked;
        if (rc < 0 && rc != MPROC_EOWNERDEAD)
            raise_code(&r, rc);
        else
            ret(&r, mproc__pk_bool(r.d, true)); /* a dead holder's lock: a normal acquire */
        break;
    case MGR_PY_COND_WAIT: {
        /* notified or timed out: done once it has its lock back, at its old depth */
        unsigned char *st = (unsigned char *)data;
        if (st[0] == COND_WAITING || o->holder) goto blocked;
        o->holder = c;
        c->nheld++;
        memcpy(&((py_sync *)o->ptr)->depth, st + 1, 4);
        ret(&r, mproc__pk_bool(r.d, st[0] == COND_NOTIFIED));
        break;
    }
    case MGR_PY_BARRIER_WAIT: {
        py_sync *y = o->ptr;
        uint64_t round;
        int64_t index;
        memcpy(&round, data, 8);
        memcpy(&index, (const unsigned char *)data + 8, 8);
        if (y->round != round)
            ret(&r, mproc__pk_int(r.d, index));
        else if (y->broken)
            raise_obj(&r, "threading", "BrokenBarrierError", NULL);
        else
            goto blocked;
        break;
    }
    default:
        traceback(&r, "mproc manager: bad parked call%s", "");
    }
    req_done(&r);
    return 0;
blocked:
    req_done(&r);
    return 1;
}

void mgr_py_expired(mgr_srv *s, mgr_conn *c, uint16_t op, int code)
{
    req r;
    if (req_init(&r, s, c) < 0) {
        c->dead = true;
        return;
    }
    if (code == -EIDRM)
        traceback(&r, "mproc manager: the object was deleted%s", "");
    else if (op == MGR_PY_BARRIER_WAIT)
        raise_obj(&r, "threading", "BrokenBarrierError", NULL);
    else if (op == MGR_QUEUE_GET)
        raise_obj(&r, "queue", "Empty", NULL);
    else if (op == MGR_QUEUE_PUT)
        raise_obj(&r, "queue", "Full", NULL);
    else
        ret(&r, mproc__pk_bool(r.d, false));
    req_done(&r);
}

/* A blocking call: answered now, or parked until done or timed out. */
static void blocking(req *r, mgr_obj *o, uint16_t op, double timeout, const void *data, size_t len)
{
    if (mgr_py_try(r->s, r->c, o, op, data, len) == 0) return;
    if (timeout == 0) {
        mgr_py_expired(r->s, r->c, op, -ETIMEDOUT);
        return;
    }
    int rc = mgr_park(r->s, r->c, o, 0, op, timeout, 0, data, len);
    if (rc < 0) raise_code(r, rc);
}

/* ---- dict and Namespace ---- */

static mproc__pk *dict_snapshot(req *r, mproc_dict *d, int what /* 0 keys, 1 values, 2 items,
                                                                  3 a dict */)
{
    mproc_dict_item *it = NULL;
    size_t n = 0;
    if (mproc_dict_items(d, what == 0, &it, &n) < 0) {
        r->failed = true;
        return NULL;
    }
    mproc__pk *out = mproc__pk_container(r->d, what == 3 ? MPROC__PK_DICT : MPROC__PK_LIST);
    for (size_t i = 0; out && i < n; i++) {
        mproc__pk *k = what != 1 ? decode(r, it[i].key, it[i].klen) : NULL;
        mproc__pk *v = what != 0 ? decode(r, it[i].val, it[i].vlen) : NULL;
        int rc;
        if (what == 3)
            rc = mproc__pk_add(r->d, out, k, v);
        else if (what == 2)
            rc = mproc__pk_add(r->d, out, mproc__pk_tuple(r->d, 2, k, v), NULL);
        else
            rc = mproc__pk_add(r->d, out, what == 0 ? k : v, NULL);
        if (rc < 0) out = NULL;
    }
    free(it);
    if (!out) r->failed = true;
    return out;
}

/* Store every pair of a dict or a sequence of pairs, and the keywords. 0, or raised. */
static int dict_update(req *r, mproc_dict *d, const mproc__pk *src, const mproc__pk *kwds)
{
    const mproc__pk *srcs[2] = {src, kwds};
    for (int s = 0; s < 2; s++) {
        const mproc__pk *m = srcs[s];
        if (!m) continue;
        bool pairs = m->kind == MPROC__PK_LIST || m->kind == MPROC__PK_TUPLE;
        if (!pairs && m->kind != MPROC__PK_DICT) {
            raise_str(r, "builtins", "TypeError", "update() needs a dict or pairs");
            return -1;
        }
        for (size_t i = 0; i < m->n; i++) {
            const mproc__pk *k, *v;
            if (pairs) {
                const mproc__pk *p = m->u.items[i];
                if ((p->kind != MPROC__PK_TUPLE && p->kind != MPROC__PK_LIST) || p->n != 2) {
                    raise_str(r, "builtins", "ValueError", "update() needs pairs");
                    return -1;
                }
                k = p->u.items[0];
                v = p->u.items[1];
            } else {
                k = m->u.items[2 * i];
                v = m->u.items[2 * i + 1];
            }
            enc_t ek, ev;
            if (!key_arg(r, k, &ek)) return -1;
            int rc = encode(r, v, false, &ev);
            if (rc == 0) rc = mproc_dict_set(d, ek.p, ek.len, ev.p, ev.len);
            free(ek.owned);
            free(ev.owned);
            if (rc < 0) {
                raise_code(r, rc);
                return -1;
            }
        }
    }
    return 0;
}

static void new_iterator(req *r, mgr_obj *o)
{
    static uint64_t anon_seq;
    char name[32];
    py_iter *it = calloc(1, sizeof *it);
    mgr_obj *io;
    int rc = it ? mproc_dict_items(o->ptr, true, &it->items, &it->n) : -ENOMEM;
    int len = snprintf(name, sizeof name, "\001py-iter:%" PRIu64, ++anon_seq);
    if (rc == 0) rc = mgr_obj_open(r->s, MGR_PY_ITER, 0, 0, false, name, (size_t)len, &io);
    if (rc < 0) {
        mgr_py_iter_free(it);
        raise_code(r, rc);
        return;
    }
    io->ptr = it;
    io->pytype = PY_ITER;
    io->anon = true;
    io->pyrefs = 1; /* the server's, which the client's decref after its incref drops */
    mproc__pk *token = mproc__pk_token(r->d, mproc__pk_cstr(r->d, "Iterator"), mproc__pk_none(r->d),
                                       ident_of(r, io));
    reply(r, "#PROXY", mproc__pk_tuple(r->d, 2, exposed_tuple(r, type_named("Iterator")), token));
}

static void dict_call(req *r, mgr_obj *o, bool ns, const char *m, const mproc__pk *args,
                      const mproc__pk *kwds)
{
    mproc_dict *d = o->ptr;
    const mproc__pk *a0 = param(args, NULL, 0, NULL), *a1 = param(args, NULL, 1, NULL);
    enc_t k = {0}, v = {0};
    int rc;
    if (ns) { /* Namespace: attributes are the dict's str keys */
        if (strcmp(m, "__getattribute__") == 0)
            m = "__getitem__";
        else if (strcmp(m, "__setattr__") == 0)
            m = "__setitem__";
        else if (strcmp(m, "__delattr__") == 0)
            m = "__delitem__";
    }
    bool needs_key = strcmp(m, "__getitem__") == 0 || strcmp(m, "get") == 0 ||
                     strcmp(m, "__setitem__") == 0 || strcmp(m, "__delitem__") == 0 ||
                     strcmp(m, "__contains__") == 0 || strcmp(m, "pop") == 0 ||
                     strcmp(m, "setdefault") == 0;
    if (needs_key && !key_arg(r, a0, &k)) return;
    if (strcmp(m, "__setitem__") == 0) {
        if (!a1) {
            raise_str(r, "builtins", "TypeError", "__setitem__ needs a value");
        } else if ((rc = encode(r, a1, false, &v)) < 0 ||
                   (rc = mproc_dict_set(d, k.p, k.len, v.p, v.len)) < 0) {
            raise_code(r, rc);
        } else {
            ret_none(r);
        }
    } else if (strcmp(m, "__getitem__") == 0 || strcmp(m, "get") == 0 || strcmp(m, "pop") == 0 ||
               strcmp(m, "setdefault") == 0) {
        void *val;
        size_t vlen;
        rc = mproc_dict_get_alloc(d, k.p, k.len, &val, &vlen);
        if (rc == 0) {
            ret(r, decode(r, val, vlen));
            free(val);
            if (strcmp(m, "pop") == 0) mproc_dict_del(d, k.p, k.len);
        } else if (rc != -ENOENT) {
            raise_code(r, rc);
        } else if (strcmp(m, "get") == 0) {
            ret(r, a1 ? (mproc__pk *)a1 : mproc__pk_none(r->d));
        } else if (strcmp(m, "pop") == 0 && a1) {
            ret(r, (mproc__pk *)a1);
        } else if (strcmp(m, "setdefault") == 0) {
            mproc__pk *dv = a1 ? (mproc__pk *)a1 : mproc__pk_none(r->d);
            if (!dv || (rc = encode(r, dv, false, &v)) < 0 ||
                (rc = mproc_dict_set(d, k.p, k.len, v.p, v.len)) < 0)
                raise_code(r, rc ? rc : -ENOMEM);
            else
                ret(r, dv);
        } else if (ns) {
            raise_obj(r, "builtins", "AttributeError", a0);
        } else {
            raise_obj(r, "builtins", "KeyError", a0);
        }
    } else if (strcmp(m, "__delitem__") == 0) {
        rc = mproc_dict_del(d, k.p, k.len);
        if (rc == -ENOENT)
            raise_obj(r, "builtins", ns ? "AttributeError" : "KeyError", a0);
        else if (rc < 0)
            raise_code(r, rc);
        else
            ret_none(r);
    } else if (strcmp(m, "__contains__") == 0) {
        ret(r, mproc__pk_bool(r->d, mproc_dict_contains(d, k.p, k.len) > 0));
    } else if (strcmp(m, "__len__") == 0) {
        size_t n = 0;
        mproc_dict_len(d, &n);
        ret(r, mproc__pk_int(r->d, (int64_t)n));
    } else if (strcmp(m, "clear") == 0) {
        mproc_dict_clear(d);
        ret_none(r);
    } else if (strcmp(m, "keys") == 0 || strcmp(m, "values") == 0 || strcmp(m, "items") == 0) {
        ret(r, dict_snapshot(r, d, m[0] == 'k' ? 0 : m[0] == 'v' ? 1 : 2));
    } else if (strcmp(m, "copy") == 0 || strcmp(m, "#GETVALUE") == 0) {
        ret(r, dict_snapshot(r, d, 3));
    } else if (strcmp(m, "update") == 0) {
        if (dict_update(r, d, a0, kwds) == 0) ret_none(r);
    } else if (strcmp(m, "popitem") == 0) {
        mproc_dict_item *it = NULL;
        size_t n = 0;
        if (mproc_dict_items(d, false, &it, &n) < 0 || n == 0) {
            raise_str(r, "builtins", "KeyError", "popitem(): dictionary is empty");
        } else {
            mproc_dict_item *last = &it[n - 1]; /* Python pops the newest */
            ret(r, mproc__pk_tuple(r->d, 2, decode(r, last->key, last->klen),
                                   decode(r, last->val, last->vlen)));
            mproc_dict_del(d, last->key, last->klen);
        }
        free(it);
    } else if (strcmp(m, "__iter__") == 0) {
        new_iterator(r, o);
    } else if (strcmp(m, "__repr__") == 0 || strcmp(m, "__str__") == 0) {
        char text[4096];
        mproc__pk *snap = ns ? NULL : dict_snapshot(r, d, 3);
        if (snap)
            mproc__pk_repr(snap, text, sizeof text);
        else
            snprintf(text, sizeof text, "Namespace(%.*s)", (int)o->nlen, o->name);
        ret(r, mproc__pk_cstr(r->d, text));
    } else {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
    }
    free(k.owned);
    free(v.owned);
}

/* ---- the other kinds ---- */

static void queue_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                       const mproc__pk *kwds)
{
    mproc_queue *q = o->ptr;
    bool nowait = strcmp(m, "get_nowait") == 0 || strcmp(m, "put_nowait") == 0;
    if (strcmp(m, "put") == 0 || strcmp(m, "put_nowait") == 0) {
        const mproc__pk *item = param(args, kwds, 0, "item");
        bool block = !nowait && truthy(param(args, kwds, 1, "block"), true);
        double t;
        if (!item) {
            raise_str(r, "builtins", "TypeError", "put() needs an item");
            return;
        }
        if (!timeout_arg(r, nowait ? NULL : param(args, kwds, 2, "timeout"), &t)) return;
        enc_t e;
        int rc = encode(r, item, false, &e);
        if (rc < 0) {
            raise_code(r, rc);
            return;
        }
        blocking(r, o, MGR_QUEUE_PUT, block ? t : 0, e.p, e.len);
        free(e.owned);
        mgr_wake(r->s, o); /* a getter may be parked */
    } else if (strcmp(m, "get") == 0 || strcmp(m, "get_nowait") == 0) {
        bool block = !nowait && truthy(param(args, kwds, 0, "block"), true);
        double t;
        if (!timeout_arg(r, nowait ? NULL : param(args, kwds, 1, "timeout"), &t)) return;
        blocking(r, o, MGR_QUEUE_GET, block ? t : 0, NULL, 0);
        mgr_wake(r->s, o); /* a putter may be parked */
    } else if (strcmp(m, "qsize") == 0) {
        ret(r, mproc__pk_int(r->d, (int64_t)mproc_queue_size(q)));
    } else if (strcmp(m, "empty") == 0) {
        ret(r, mproc__pk_bool(r->d, mproc_queue_size(q) == 0));
    } else if (strcmp(m, "full") == 0) {
        ret(r, mproc__pk_bool(r->d, mproc_queue_full(q)));
    } else if (strcmp(m, "task_done") == 0) {
        if (mproc_queue_task_done(q) < 0)
            raise_str(r, "builtins", "ValueError", "task_done() called too many times");
        else
            ret_none(r);
        mgr_wake(r->s, o);
    } else if (strcmp(m, "join") == 0) {
        blocking(r, o, MGR_QUEUE_JOIN, -1, NULL, 0);
    } else {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
    }
}

static void event_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                       const mproc__pk *kwds)
{
    if (strcmp(m, "set") == 0) {
        mproc_event_set(o->ptr);
        ret_none(r);
        mgr_wake(r->s, o);
    } else if (strcmp(m, "clear") == 0) {
        mproc_event_clear(o->ptr);
        ret_none(r);
    } else if (strcmp(m, "is_set") == 0) {
        ret(r, mproc__pk_bool(r->d, mproc_event_is_set(o->ptr)));
    } else if (strcmp(m, "wait") == 0) {
        double t;
        if (timeout_arg(r, param(args, kwds, 0, "timeout"), &t))
            blocking(r, o, MGR_EVENT_WAIT, t, NULL, 0);
    } else {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
    }
}

static void lock_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                      const mproc__pk *kwds)
{
    if (strcmp(m, "acquire") == 0) {
        bool block = truthy(param(args, kwds, 0, "blocking"), true);
        double t;
        if (!timeout_arg(r, param(args, kwds, 1, "timeout"), &t)) return;
        blocking(r, o, MGR_LOCK_ACQUIRE, block ? t : 0, NULL, 0);
    } else if (strcmp(m, "release") == 0) {
        /* Python's Lock may be released by anyone, not just its holder */
        if (!o->holder) {
            raise_str(r, "builtins", "RuntimeError", "release unlocked lock");
            return;
        }
        mproc_lock_release(o->ptr);
        o->holder->nheld--;
        o->holder = NULL;
        ret_none(r);
        mgr_wake(r->s, o);
    } else {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
    }
}

/* ---- list and Value ---- */

static int int_arg(req *r, const mproc__pk *v, int64_t dflt, int64_t *out)
{
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (v->kind == MPROC__PK_INT || v->kind == MPROC__PK_BOOL) {
        *out = v->kind == MPROC__PK_INT ? v->u.i : v->u.b;
        return 0;
    }
    raise_str(r, "builtins", "TypeError", "list indices must be integers (slices are not served)");
    return -1;
}

/* Item i, decoded; NULL when raised (IndexError) or out of memory. */
static mproc__pk *list_item(req *r, mproc_list *l, int64_t i, bool pop)
{
    size_t cap = 256, len = 0;
    void *buf = NULL;
    int rc;
    if (!pop) {
        rc = mproc_list_get_alloc(l, (ptrdiff_t)i, &buf, &len);
    } else {
        /* pop leaves an item too large for the buffer in place, with its size: again with room */
        while ((buf = malloc(cap)) &&
               (rc = mproc_list_pop(l, (ptrdiff_t)i, buf, cap, &len)) == -EMSGSIZE) {
            free(buf);
            cap = len;
        }
        if (!buf) rc = -ENOMEM;
    }
    if (rc == 0) {
        mproc__pk *v = decode(r, buf, len);
        free(buf);
        return v;
    }
    if (pop) free(buf);
    if (rc == -ERANGE)
        raise_str(r, "builtins", "IndexError",
                  pop ? "pop index out of range" : "list index out of range");
    else
        raise_code(r, rc);
    return NULL;
}

static mproc__pk *list_snapshot(req *r, mproc_list *l)
{
    size_t n = 0;
    mproc_list_len(l, &n);
    mproc__pk *out = mproc__pk_container(r->d, MPROC__PK_LIST);
    for (size_t i = 0; out && i < n; i++) {
        mproc__pk *v = list_item(r, l, (int64_t)i, false);
        if (!v || mproc__pk_add(r->d, out, v, NULL) < 0) out = NULL;
    }
    return out;
}

static int list_store(req *r, mproc_list *l, const mproc__pk *v, bool insert, int64_t at)
{
    enc_t e;
    int rc = encode(r, v, false, &e);
    if (rc == 0)
        rc = at == INT64_MAX ? mproc_list_append(l, e.p, e.len)
             : insert        ? mproc_list_insert(l, (ptrdiff_t)at, e.p, e.len)
                             : mproc_list_set(l, (ptrdiff_t)at, e.p, e.len);
    free(e.owned);
    if (rc == -ERANGE)
        raise_str(r, "builtins", "IndexError", "list assignment index out of range");
    else if (rc < 0)
        raise_code(r, rc);
    return rc;
}

static void list_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args)
{
    mproc_list *l = o->ptr;
    const mproc__pk *a0 = param(args, NULL, 0, NULL), *a1 = param(args, NULL, 1, NULL);
    int64_t i;
    size_t n = 0;
    if (strcmp(m, "append") == 0 && a0) {
        if (list_store(r, l, a0, false, INT64_MAX) == 0) ret_none(r);
    } else if (strcmp(m, "extend") == 0 && a0 &&
               (a0->kind == MPROC__PK_LIST || a0->kind == MPROC__PK_TUPLE)) {
        for (size_t j = 0; j < a0->n; j++)
            if (list_store(r, l, a0->u.items[j], false, INT64_MAX) < 0) return;
        ret_none(r);
    } else if (strcmp(m, "insert") == 0 && a1) {
        if (int_arg(r, a0, 0, &i) == 0 && list_store(r, l, a1, true, i) == 0) ret_none(r);
    } else if (strcmp(m, "__setitem__") == 0 && a1) {
        if (int_arg(r, a0, 0, &i) == 0 && list_store(r, l, a1, false, i) == 0) ret_none(r);
    } else if (strcmp(m, "__getitem__") == 0 || strcmp(m, "pop") == 0 ||
               strcmp(m, "__delitem__") == 0) {
        bool get = m[2] == 'g';
        if (int_arg(r, a0, -1, &i) < 0) return;
        mproc__pk *v = list_item(r, l, i, !get);
        if (v) ret(r, m[0] == '_' && !get ? mproc__pk_none(r->d) : v);
    } else if (strcmp(m, "__len__") == 0) {
        mproc_list_len(l, &n);
        ret(r, mproc__pk_int(r->d, (int64_t)n));
    } else if (strcmp(m, "#GETVALUE") == 0 || strcmp(m, "__repr__") == 0 ||
               strcmp(m, "__str__") == 0) {
        mproc__pk *all = list_snapshot(r, l);
        if (!all || m[0] == '#') {
            ret(r, all);
            return;
        }
        char text[4096];
        mproc__pk_repr(all, text, sizeof text);
        ret(r, mproc__pk_cstr(r->d, text));
    } else if ((strcmp(m, "__contains__") == 0 || strcmp(m, "count") == 0 ||
                strcmp(m, "index") == 0 || strcmp(m, "remove") == 0) &&
               a0) {
        mproc__pk *all = list_snapshot(r, l);
        if (!all) {
            ret(r, all);
            return;
        }
        int64_t count = 0, first = -1;
        for (size_t j = 0; j < all->n; j++)
            if (mproc__pk_equal(all->u.items[j], a0)) {
                if (first < 0) first = (int64_t)j;
                count++;
            }
        if (m[0] == '_')
            ret(r, mproc__pk_bool(r->d, count > 0));
        else if (m[0] == 'c')
            ret(r, mproc__pk_int(r->d, count));
        else if (first < 0)
            raise_str(r, "builtins", "ValueError", "x not in list");
        else if (m[0] == 'i')
            ret(r, mproc__pk_int(r->d, first));
        else if (list_item(r, l, first, true))
            ret_none(r);
    } else {
        traceback(r, "NotImplementedError: list.%s is not served by the mproc manager", m);
    }
}

static void value_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args)
{
    const mproc__pk *a0 = param(args, NULL, 0, NULL);
    if (strcmp(m, "get") == 0) {
        mproc__pk *v = list_item(r, o->ptr, 0, false);
        if (v) ret(r, v);
    } else if (strcmp(m, "set") == 0 && a0) {
        if (list_store(r, o->ptr, a0, false, 0) == 0) ret_none(r);
    } else {
        traceback(r, "TypeError: Value.%s", m);
    }
}

static void sync_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                      const mproc__pk *kwds)
{
    py_sync *y = o->ptr;
    if (strcmp(m, "acquire") == 0) {
        lock_call(r, o, m, args, kwds);
        return;
    }
    if (strcmp(m, "release") != 0) {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
        return;
    }
    if (reentrant(o)) {
        if (o->holder != r->c) {
            raise_str(r, "builtins", "RuntimeError", "cannot release un-acquired lock");
            return;
        }
        if (--y->depth == 0) {
            o->holder = NULL;
            r->c->nheld--;
        }
    } else {
        int64_t n;
        if (int_arg(r, param(args, kwds, 0, "n"), 1, &n) < 0) return;
        if (n < 1) {
            raise_str(r, "builtins", "ValueError", "n must be one or more");
            return;
        }
        if (o->pytype == PY_BOUNDED && y->value + n > y->bound) {
            raise_str(r, "builtins", "ValueError", "Semaphore released too many times");
            return;
        }
        y->value += n;
    }
    ret_none(r);
    mgr_wake(r->s, o);
}

/* ---- Condition and Barrier: their state is the server's, their waits park ---- */

static void cond_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                      const mproc__pk *kwds)
{
    py_sync *y = o->ptr;
    if (strcmp(m, "acquire") == 0 || strcmp(m, "release") == 0) {
        sync_call(r, o, m, args, kwds);
        return;
    }
    bool wait = strcmp(m, "wait") == 0, all = strcmp(m, "notify_all") == 0;
    if (!wait && !all && strcmp(m, "notify") != 0) {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
        return;
    }
    if (o->holder != r->c) {
        raise_str(r, "builtins", "RuntimeError",
                  wait ? "cannot wait on un-acquired lock" : "cannot notify on un-acquired lock");
        return;
    }
    if (wait) {
        double t;
        if (!timeout_arg(r, param(args, kwds, 0, "timeout"), &t)) return;
        /* give the lock up whole (its depth comes back with it), then wait for a notify */
        unsigned char st[COND_STATE];
        st[0] = t == 0 ? COND_TIMED_OUT : COND_WAITING;
        memcpy(st + 1, &y->depth, 4);
        y->depth = 0;
        o->holder = NULL;
        r->c->nheld--;
        int rc = mgr_park(r->s, r->c, o, 0, MGR_PY_COND_WAIT, t == 0 ? -1 : t, 0, st, sizeof st);
        if (rc < 0) {
            memcpy(&y->depth, st + 1, 4); /* not waiting after all: still its holder */
            o->holder = r->c;
            r->c->nheld++;
            raise_code(r, rc);
            return;
        }
        mgr_wake(r->s, o); /* the lock is free: acquirers (and this wait, timed out) go */
        return;
    }
    int64_t n = INT64_MAX;
    if (!all && int_arg(r, param(args, kwds, 0, "n"), 1, &n) < 0) return;
    /* the longest waiting first, as threading.Condition; they take the lock back once the
     * notifier releases it */
    for (mgr_parked *p = r->s->parked; p && n > 0; p = p->next)
        if (p->o == o && p->op == MGR_PY_COND_WAIT && p->data[0] == COND_WAITING) {
            p->data[0] = COND_NOTIFIED;
            n--;
        }
    ret_none(r);
}

static void barrier_call(req *r, mgr_obj *o, const char *m, const mproc__pk *args,
                         const mproc__pk *kwds)
{
    py_sync *y = o->ptr;
    if (strcmp(m, "__getattribute__") == 0) {
        const mproc__pk *name = param(args, kwds, 0, NULL);
        if (mproc__pk_is_str(name, "parties"))
            ret(r, mproc__pk_int(r->d, y->parties));
        else if (mproc__pk_is_str(name, "n_waiting"))
            ret(r, mproc__pk_int(r->d, y->waiting));
        else if (mproc__pk_is_str(name, "broken"))
            ret(r, mproc__pk_bool(r->d, y->broken));
        else
            raise_str(r, "builtins", "AttributeError", "a Barrier has no such attribute here");
    } else if (strcmp(m, "wait") == 0) {
        double t;
        if (!timeout_arg(r, param(args, kwds, 0, "timeout"), &t)) return;
        if (t < 0) t = y->timeout;
        if (y->broken) {
            raise_obj(r, "threading", "BrokenBarrierError", NULL);
            return;
        }
        int64_t index = y->waiting++;
        if (y->waiting == y->parties) {
            /* the last arrival: the round is done, every party goes with its index */
            y->waiting = 0;
            y->round++;
            ret(r, mproc__pk_int(r->d, index));
            mgr_wake(r->s, o);
            return;
        }
        unsigned char st[BARRIER_STATE];
        memcpy(st, &y->round, 8);
        memcpy(st + 8, &index, 8);
        /* a wait that would time out at once breaks the barrier, as Python's */
        int rc =
            mgr_park(r->s, r->c, o, 0, MGR_PY_BARRIER_WAIT, t == 0 ? 1e-9 : t, 0, st, sizeof st);
        if (rc < 0) {
            y->waiting--;
            raise_code(r, rc);
        }
    } else if (strcmp(m, "abort") == 0 || strcmp(m, "reset") == 0) {
        /* the parties waiting now get BrokenBarrierError; reset then starts a fresh round */
        y->broken = true;
        mgr_wake(r->s, o);
        if (m[0] == 'r') {
            y->broken = false;
            y->waiting = 0;
            y->round++;
        }
        ret_none(r);
    } else {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
    }
}

int mgr_py_deadline(mgr_srv *s, mgr_parked *p)
{
    (void)s;
    if (p->op == MGR_PY_COND_WAIT) {
        p->data[0] = COND_TIMED_OUT;
        p->deadline = INT64_MAX;
        return 1;
    }
    if (p->op == MGR_PY_BARRIER_WAIT) {
        py_sync *y = p->o->ptr;
        y->broken = true;
        return 2;
    }
    return 0;
}

static void iter_call(req *r, mgr_obj *o, const char *m)
{
    py_iter *it = o->ptr;
    if (strcmp(m, "__next__") == 0 || strcmp(m, "send") == 0) {
        if (it->pos >= it->n) {
            raise_obj(r, "builtins", "StopIteration", NULL);
            return;
        }
        mproc_dict_item *k = &it->items[it->pos++];
        ret(r, decode(r, k->key, k->klen));
    } else if (strcmp(m, "close") == 0) {
        it->pos = it->n;
        ret_none(r);
    } else {
        traceback(r, "AttributeError: method '%s' is not supported", m);
    }
}

static void method_call(req *r, const mproc__pk *ident, const char *m, const mproc__pk *args,
                        const mproc__pk *kwds)
{
    mgr_obj *o = obj_of(r->s, ident);
    const struct pytype *t = o ? type_of(o) : NULL;
    if (!o || !t) {
        traceback(r, "KeyError: no shared object %s",
                  ident && ident->kind == MPROC__PK_STR ? ident->u.bytes : "(bad ident)");
        return;
    }
    bool exposed = false;
    for (const char *const *e = t->exposed; *e && !exposed; e++)
        exposed = strcmp(*e, m) == 0;
    bool fallback =
        strcmp(m, "__repr__") == 0 || strcmp(m, "__str__") == 0 || strcmp(m, "#GETVALUE") == 0;
    if (!exposed && !fallback) {
        traceback(r, "AttributeError: method '%s' is not exposed", m);
        return;
    }
    switch (t->py) {
    case PY_DICT:
    case PY_NAMESPACE:
        dict_call(r, o, t->py == PY_NAMESPACE, m, args, kwds);
        return;
    case PY_QUEUE:
        if (!fallback) {
            queue_call(r, o, m, args, kwds);
            return;
        }
        break;
    case PY_EVENT:
        if (!fallback) {
            event_call(r, o, m, args, kwds);
            return;
        }
        break;
    case PY_LOCK:
        if (!fallback) {
            lock_call(r, o, m, args, kwds);
            return;
        }
        break;
    case PY_ITER:
        iter_call(r, o, m);
        return;
    case PY_LIST:
        list_call(r, o, m, args);
        return;
    case PY_VALUE:
        if (!fallback) {
            value_call(r, o, m, args);
            return;
        }
        break;
    case PY_RLOCK:
    case PY_SEMAPHORE:
    case PY_BOUNDED:
        if (!fallback) {
            sync_call(r, o, m, args, kwds);
            return;
        }
        break;
    case PY_CONDITION:
        if (!fallback) {
            cond_call(r, o, m, args, kwds);
            return;
        }
        break;
    case PY_BARRIER:
        if (!fallback) {
            barrier_call(r, o, m, args, kwds);
            return;
        }
        break;
    }
    char text[300];
    snprintf(text, sizeof text, "<mproc %s '%.*s'>", t->typeid, (int)o->nlen, o->name);
    if (o->anon) snprintf(text, sizeof text, "<mproc %s %" PRIx32 ">", t->typeid, o->id);
    if (strcmp(m, "#GETVALUE") == 0)
        traceback(r, "TypeError: %s cannot be copied out of the manager", t->typeid);
    else
        ret(r, mproc__pk_cstr(r->d, text));
}

/* ---- manager requests ---- */

/* create(typeid, *args, **kwds): a new object of a SyncManager typeid, or for a registered name
 * get_<name> the named object (a dict unless it exists as another kind). */
static void create(req *r, const mproc__pk *args, const mproc__pk *kwds)
{
    static uint64_t anon_seq;
    const mproc__pk *tid = param(args, NULL, 0, NULL);
    if (!tid || tid->kind != MPROC__PK_STR) {
        traceback(r, "TypeError: create() needs a typeid%s", "");
        return;
    }
    const char *typeid = tid->u.bytes;
    const struct pytype *t = type_named(typeid);
    mgr_obj *o = NULL;
    int rc;
    if (strncmp(typeid, "get_", 4) == 0 && tid->n > 4 && tid->n - 4 <= MPROC__MGR_NAME_MAX) {
        o = mgr_find(r->s, typeid + 4, tid->n - 4);
        rc = o ? 0 : mgr_obj_open(r->s, MGR_DICT, 0, 0, false, typeid + 4, tid->n - 4, &o);
        if (rc == 0 && !(t = type_of(o))) {
            traceback(r, "TypeError: '%s' is not an object Python can use", typeid);
            return;
        }
    } else if (!t || t->py == PY_ITER) {
        traceback(r, "KeyError: '%s' (no such typeid in the mproc manager)", typeid);
        return;
    } else {
        char name[32];
        int len = snprintf(name, sizeof name, "\001py:%" PRIu64, ++anon_seq);
        uint64_t maxsize = 0;
        const mproc__pk *a1 = param(args, NULL, 1, NULL);
        if (t->py == PY_QUEUE) {
            const mproc__pk *ms = param(args, kwds, 1, "maxsize");
            if (ms && ms->kind == MPROC__PK_INT && ms->u.i > 0) maxsize = (uint64_t)ms->u.i;
        }
        rc = mgr_obj_open(r->s, t->kind, maxsize, 0, t->py == PY_QUEUE, name, (size_t)len, &o);
        if (rc == 0) {
            o->pytype = t->py;
            o->anon = true;
            if (t->py == PY_DICT && (a1 || (kwds && kwds->n)) &&
                dict_update(r, o->ptr, a1, kwds) < 0) {
                mgr_remove(r->s, o);
                return;
            }
            if (t->py == PY_LIST && a1 &&
                (a1->kind == MPROC__PK_LIST || a1->kind == MPROC__PK_TUPLE)) {
                for (size_t j = 0; j < a1->n; j++)
                    if (list_store(r, o->ptr, a1->u.items[j], false, INT64_MAX) < 0) {
                        mgr_remove(r->s, o);
                        return;
                    }
            }
            const mproc__pk *init = param(args, kwds, 2, "value");
            if (t->py == PY_VALUE &&
                list_store(r, o->ptr, init ? init : mproc__pk_int(r->d, 0), false, INT64_MAX) < 0) {
                mgr_remove(r->s, o);
                return;
            }
            if (t->kind == MGR_PY_SYNC) {
                py_sync *y = calloc(1, sizeof *y);
                const mproc__pk *v = param(args, kwds, 1, "value");
                int64_t n = 1;
                bool counted = t->py == PY_SEMAPHORE || t->py == PY_BOUNDED;
                if (t->py == PY_BARRIER) v = param(args, kwds, 1, "parties");
                if (!y || ((counted || t->py == PY_BARRIER) && int_arg(r, v, 1, &n) < 0) ||
                    n < (t->py == PY_BARRIER)) {
                    if (y && n < (t->py == PY_BARRIER))
                        raise_str(r, "builtins", "ValueError",
                                  t->py == PY_BARRIER ? "parties must be > 0"
                                                      : "semaphore initial value must be >= 0");
                    else if (!y)
                        raise_code(r, -ENOMEM);
                    free(y);
                    mgr_remove(r->s, o);
                    return;
                }
                y->value = y->bound = n;
                y->parties = n;
                y->timeout = -1;
                if (t->py == PY_BARRIER &&
                    !timeout_arg(r, param(args, kwds, 3, "timeout"), &y->timeout)) {
                    free(y);
                    mgr_remove(r->s, o);
                    return;
                }
                o->ptr = y;
            }
            if (t->py == PY_NAMESPACE && kwds && kwds->n &&
                dict_update(r, o->ptr, kwds, NULL) < 0) {
                mgr_remove(r->s, o);
                return;
            }
        }
    }
    if (rc < 0) {
        raise_code(r, rc);
        return;
    }
    o->pyrefs++; /* Python's create takes a reference, which the caller's decref drops */
    ret(r, mproc__pk_tuple(r->d, 2, ident_of(r, o), exposed_tuple(r, t)));
}

static void refcount(req *r, const mproc__pk *args, int delta)
{
    const mproc__pk *ident = param(args, NULL, 0, NULL);
    mgr_obj *o = obj_of(r->s, ident);
    if (!o) {
        traceback(r, "KeyError: %s", ident && ident->kind == MPROC__PK_STR ? ident->u.bytes : "?");
        return;
    }
    if (delta > 0)
        o->pyrefs++;
    else if (o->pyrefs > 0 && --o->pyrefs == 0 && o->anon)
        mgr_remove(r->s, o); /* named objects live on until deleted */
    ret_none(r);
}

static void manager_request(req *r, const char *m, const mproc__pk *args, const mproc__pk *kwds)
{
    if (strcmp(m, "dummy") == 0) {
        ret_none(r);
    } else if (strcmp(m, "mproc_native") == 0) {
        /* an mproc client's dialect probe (client.c): answered in Python's framing, then this
         * connection speaks the native protocol, starting with the client's HELLO */
        ret(r, mproc__pk_int(r->d, MPROC__MGR_VERSION));
        r->c->dialect = DIALECT_NATIVE;
    } else if (strcmp(m, "accept_connection") == 0) {
        r->c->py_accepted = true;
        ret_none(r);
    } else if (strcmp(m, "create") == 0) {
        create(r, args, kwds);
    } else if (strcmp(m, "incref") == 0 || strcmp(m, "decref") == 0) {
        refcount(r, args, m[0] == 'i' ? 1 : -1);
    } else if (strcmp(m, "get_methods") == 0) {
        const mproc__pk *tok = param(args, NULL, 0, NULL), *state;
        const struct pytype *t = NULL;
        if (tok && tok->kind == MPROC__PK_OBJECT && (state = tok->u.o.state) &&
            state->kind == MPROC__PK_TUPLE && state->n == 3) {
            mgr_obj *o = obj_of(r->s, state->u.items[2]);
            t = o ? type_of(o) : NULL;
        }
        if (t)
            ret(r, exposed_tuple(r, t));
        else
            traceback(r, "KeyError: get_methods() of an unknown token%s", "");
    } else if (strcmp(m, "number_of_objects") == 0) {
        int64_t n = 0;
        for (size_t i = 0; i < r->s->nslots; i++)
            if (r->s->slots[i] && r->s->slots[i]->pyrefs) n++;
        ret(r, mproc__pk_int(r->d, n));
    } else if (strcmp(m, "debug_info") == 0) {
        char text[128];
        snprintf(text, sizeof text, "mproc manager: %zu objects, %zu connections", r->s->nobjs,
                 r->s->nconns);
        ret(r, mproc__pk_cstr(r->d, text));
    } else if (strcmp(m, "shutdown") == 0) {
        ret_none(r); /* CPython answers twice: its shutdown, then its request handler */
        ret_none(r);
        r->s->stop = true;
    } else {
        traceback(r, "AssertionError: '%s' unrecognized", m);
    }
}

void mgr_py_request(mgr_srv *s, mgr_conn *c, const unsigned char *m, size_t len)
{
    req r;
    if (req_init(&r, s, c) < 0) {
        c->dead = true;
        return;
    }
    mproc__pk_doc *in = NULL;
    mproc__pk *q;
    mproc__pickle_limits lim = {.max_input = s->o.max_message};
    int rc = mproc__pickle_read(m, len, &lim, &in, &q);
    if (rc < 0) {
        /* a value outside the safe subset (an instance of some class) lands here too */
        traceback(&r,
                  "mproc manager: request not readable (only plain values are stored: "
                  "None, bool, int, float, str, bytes, tuple, list, dict, set)%s",
                  "");
    } else if (q->kind != MPROC__PK_TUPLE || q->n != 4 || q->u.items[1]->kind != MPROC__PK_STR ||
               (q->u.items[2]->kind != MPROC__PK_TUPLE && q->u.items[2]->kind != MPROC__PK_LIST) ||
               q->u.items[3]->kind != MPROC__PK_DICT) {
        traceback(&r, "ValueError: a request is (ident, methodname, args, kwds)%s", "");
    } else {
        const char *method = q->u.items[1]->u.bytes;
        if (c->py_accepted)
            method_call(&r, q->u.items[0], method, q->u.items[2], q->u.items[3]);
        else
            manager_request(&r, method, q->u.items[2], q->u.items[3]);
    }
    mproc__pk_doc_free(in);
    req_done(&r);
}
