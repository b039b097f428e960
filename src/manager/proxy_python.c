/* Proxies of a Python manager's objects (mproc_manager_connect to a BaseManager/SyncManager): the
 * ordinary dict, queue, event and lock calls as Python's proxy methods, over the client in
 * channel/pymanager.c, with values mapped as pyvalue.h says.
 *
 * A Python proxy is one connection that carries one call at a time (Python gives each thread its
 * own). Here a handle keeps "lanes", proxies of the same object each with a connection and a
 * reference of its own: a call takes an idle lane, or makes one when all are busy (a thread
 * waiting in a queue's get must not hold up another thread's put), and gives it back. A lane
 * remembers the thread that used it last, and that thread gets it again: the server's thread of
 * a connection owns the RLocks it acquires, so a thread's acquire and release must take the same
 * connection, and a lock's lanes never go to another thread while they are its. A fork child
 * drops the lanes it inherited (their connections carry its parent's replies, their references
 * are its parent's) and makes its own. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/pymanager.h"
#include "manager/client.h"
#include "manager/pyvalue.h"
#include "platform/platform.h"
#include "sync/proxy.h"

/* idle lanes kept; more are freed when given back (a lock used by more threads than this at
 * once may so lose the connection an RLock was acquired on) */
#define IDLE_MAX 16

struct mgr_pyproxy {
    pthread_mutex_t mu;
    mproc_manager *m;
    pid_t pid;
    mproc__pym_proxy *first; /* what new lanes are copied from (an idle lane too) */
    mproc__pym_proxy *idle[IDLE_MAX];
    pid_t idle_tid[IDLE_MAX]; /* the thread that used it last (0: none yet) */
    size_t nidle;
    bool sticky; /* a lock: a lane used by one thread is never another's */
    /* a queue item taken that did not fit the caller's buffer: the next get returns it */
    void *pending;
    size_t pending_len;
    bool has_pending;
};

/* ---- the calling thread's last exception ---- */

static _Thread_local struct {
    const mproc_manager *m;
    char text[4096];
} last;

void mgr_py_set_error(const mproc_manager *m, const char *text)
{
    last.m = m;
    snprintf(last.text, sizeof last.text, "%s", text ? text : "");
}

const char *mgr_py_error(const mproc_manager *m)
{
    return last.m == m ? last.text : "";
}

/* ---- lanes ---- */

static int lane_take(mgr_pyproxy *y, mproc__pym_proxy **out)
{
    pthread_mutex_lock(&y->mu);
    if (y->pid != getpid()) {
        /* a fork child: first a lane of its own (copying reads only the object's names), then
         * the parent's go, freed without their references (mproc__pym_proxy_free knows) */
        mproc__pym_proxy *mine;
        int r = mproc__pym_proxy_dup(y->first, &mine);
        if (r < 0) {
            pthread_mutex_unlock(&y->mu);
            return r;
        }
        for (size_t i = 0; i < y->nidle; i++)
            mproc__pym_proxy_free(y->idle[i]);
        y->nidle = 0;
        y->first = mine;
        y->idle_tid[y->nidle] = 0;
        y->idle[y->nidle++] = mine;
        y->pid = getpid();
    }
    /* this thread's own lane, else a fresh one, else (not for a lock) another thread's */
    pid_t me = mproc__gettid();
    size_t pick = SIZE_MAX;
    for (size_t i = 0; i < y->nidle && pick == SIZE_MAX; i++)
        if (y->idle_tid[i] == me) pick = i;
    for (size_t i = 0; i < y->nidle && pick == SIZE_MAX; i++)
        if (y->idle_tid[i] == 0) pick = i;
    if (pick == SIZE_MAX && y->nidle && !y->sticky) pick = y->nidle - 1;
    if (pick != SIZE_MAX) {
        *out = y->idle[pick];
        y->nidle--;
        y->idle[pick] = y->idle[y->nidle];
        y->idle_tid[pick] = y->idle_tid[y->nidle];
        pthread_mutex_unlock(&y->mu);
        return 0;
    }
    /* every lane is busy in another thread: one more (a reference of its own, so it outlives
     * nothing it should not) */
    int r = mproc__pym_proxy_dup(y->first, out);
    pthread_mutex_unlock(&y->mu);
    return r;
}

static void lane_give(mgr_pyproxy *y, mproc__pym_proxy *l)
{
    pthread_mutex_lock(&y->mu);
    bool keep = y->nidle < IDLE_MAX && l != NULL;
    if (keep) {
        y->idle_tid[y->nidle] = mproc__gettid();
        y->idle[y->nidle++] = l;
    }
    pthread_mutex_unlock(&y->mu);
    if (!keep && l != y->first) mproc__pym_proxy_free(l);
}

void mgr_py_proxy_free(mgr_pyproxy *y)
{
    if (!y) return;
    bool first_idle = false;
    for (size_t i = 0; i < y->nidle; i++) {
        if (y->idle[i] == y->first) first_idle = true;
        mproc__pym_proxy_free(y->idle[i]);
    }
    if (!first_idle) mproc__pym_proxy_free(y->first);
    free(y->pending);
    pthread_mutex_destroy(&y->mu);
    free(y);
}

/* ---- one call ---- */

typedef struct {
    mgr_pyproxy *y;
    mproc__pym_proxy *lane;
    mproc__pk_doc *d;
    mproc__pk_doc **holds; /* pickles C bytes stood for, alive until the call is sent */
    size_t nholds;
} call;

static int begin(call *c, mgr_pyproxy *y)
{
    *c = (call){.y = y};
    int r = mproc__pk_doc_new(&c->d);
    if (r < 0) return r;
    if ((r = lane_take(y, &c->lane)) < 0) {
        mproc__pk_doc_free(c->d);
        c->d = NULL;
    }
    return r;
}

static void end(call *c)
{
    if (c->lane) lane_give(c->y, c->lane);
    mproc__pk_doc_free(c->d);
    for (size_t i = 0; i < c->nholds; i++)
        mproc__pk_doc_free(c->holds[i]);
    free(c->holds);
}

/* C bytes as an argument. NULL: out of memory. */
static mproc__pk *arg(call *c, const void *p, size_t len)
{
    mproc__pk_doc *hold;
    mproc__pk *v = mgr_pyv_node(c->d, p, len, &hold);
    if (!hold) return v;
    mproc__pk_doc **h = realloc(c->holds, (c->nholds + 1) * sizeof *h);
    if (!h) {
        mproc__pk_doc_free(hold);
        return NULL;
    }
    c->holds = h;
    c->holds[c->nholds++] = hold;
    return v;
}

/* The method, with args a TUPLE (NULL: none); the result stays valid until end(). */
static int invoke(call *c, const char *method, mproc__pk *args, const mproc__pk **res)
{
    const mproc__pk *dummy;
    int r = mproc__pym_call(c->lane, method, args, NULL, res ? res : &dummy);
    mgr_py_set_error(c->y->m, mproc__pym_error(c->lane));
    if (r == MPROC__PYM_PROXY) {
        /* a result that is itself a shared object: not a value C can hold */
        mproc__pym_proxy *made;
        if (mproc__pym_take_proxy(c->lane, &made) == 0) mproc__pym_proxy_free(made);
        r = -ENOTSUP;
    }
    return r;
}

/* A Python value into the caller's buffer (cap) or a malloc'd *alloc; *len the size in any case. */
static int out_value(const mproc__pk *v, void *buf, size_t cap, void **alloc, size_t *len)
{
    void *owned;
    const void *data;
    size_t n;
    int r = mgr_pyv_bytes(v, &owned, &data, &n);
    if (r < 0) return r;
    if (len) *len = n;
    if (alloc) {
        *alloc = malloc(n ? n : 1);
        if (!*alloc)
            r = -ENOMEM;
        else if (n)
            memcpy(*alloc, data, n);
    } else if (n > cap) {
        r = -EMSGSIZE;
    } else if (n) {
        memcpy(buf, data, n);
    }
    free(owned);
    return r;
}

static int truth(const mproc__pk *v)
{
    if (v->kind == MPROC__PK_BOOL) return v->u.b;
    if (v->kind == MPROC__PK_INT) return v->u.i != 0;
    return MPROC_EPROTO;
}

/* A call whose result is a bool (1/0), an int (*n), or nothing (res NULL). */
static int simple(mgr_pyproxy *y, const char *method, mproc__pk *(*mkargs)(call *, const void *),
                  const void *ctx, int *truthy, int64_t *n)
{
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    mproc__pk *args = mkargs ? mkargs(&c, ctx) : NULL;
    const mproc__pk *res;
    r = mkargs && !args ? -ENOMEM : invoke(&c, method, args, &res);
    if (r == 0 && truthy) r = *truthy = truth(res);
    if (r == 0 && n) {
        if (res->kind == MPROC__PK_INT)
            *n = res->u.i;
        else
            r = MPROC_EPROTO;
    }
    end(&c);
    return r;
}

/* A call whose result is a value, into buf (cap) or a malloc'd *alloc. */
static int fetched(mgr_pyproxy *y, const char *method, mproc__pk *(*mkargs)(call *, const void *),
                   const void *ctx, void *buf, size_t cap, void **alloc, size_t *len)
{
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    mproc__pk *args = mkargs(&c, ctx);
    const mproc__pk *res;
    r = args ? invoke(&c, method, args, &res) : -ENOMEM;
    if (r == 0) r = out_value(res, buf, cap, alloc, len);
    end(&c);
    return r;
}

/* len() of the dict or list. */
static int py_len(mgr_pyproxy *y, size_t *n)
{
    int64_t v;
    int r = simple(y, "__len__", NULL, NULL, NULL, &v);
    if (r == 0) *n = (size_t)v;
    return r;
}

#define PY_OR_EINVAL(var, h, kind)                                                                 \
    mgr_proxy *var##_p = mgr_proxy_get(h, kind);                                                   \
    if (!var##_p || !var##_p->py) return -EINVAL;                                                  \
    mgr_pyproxy *var = var##_p->py

/* ---- dict ---- */

typedef struct {
    const void *key, *val;
    size_t klen, vlen;
} kv;

static mproc__pk *key_args(call *c, const void *ctx)
{
    const kv *a = ctx;
    return mproc__pk_tuple(c->d, 1, arg(c, a->key, a->klen));
}

static mproc__pk *kv_args(call *c, const void *ctx)
{
    const kv *a = ctx;
    return mproc__pk_tuple(c->d, 2, arg(c, a->key, a->klen), arg(c, a->val, a->vlen));
}

static int d_set(mproc_dict *h, const void *key, size_t klen, const void *val, size_t vlen)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if ((!key && klen) || (!val && vlen)) return -EINVAL;
    kv a = {key, val, klen, vlen};
    return simple(y, "__setitem__", kv_args, &a, NULL, NULL);
}

static int d_get_common(mgr_pyproxy *y, const void *key, size_t klen, void *buf, size_t cap,
                        void **alloc, size_t *len)
{
    kv a = {.key = key, .klen = klen};
    return fetched(y, "__getitem__", key_args, &a, buf, cap, alloc, len);
}

static int d_get(mproc_dict *h, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if ((!key && klen) || (!buf && cap)) return -EINVAL;
    return d_get_common(y, key, klen, buf, cap, NULL, len);
}

static int d_get_alloc(mproc_dict *h, const void *key, size_t klen, void **val, size_t *len)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if ((!key && klen) || !val) return -EINVAL;
    int r = d_get_common(y, key, klen, NULL, 0, val, len);
    if (r < 0) *val = NULL;
    return r;
}

static int d_del(mproc_dict *h, const void *key, size_t klen)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if (!key && klen) return -EINVAL;
    kv a = {.key = key, .klen = klen};
    return simple(y, "__delitem__", key_args, &a, NULL, NULL);
}

static int d_contains(mproc_dict *h, const void *key, size_t klen)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if (!key && klen) return -EINVAL;
    kv a = {.key = key, .klen = klen};
    int t;
    return simple(y, "__contains__", key_args, &a, &t, NULL);
}

static int d_len(mproc_dict *h, size_t *n)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if (!n) return -EINVAL;
    return py_len(y, n);
}

static int d_clear(mproc_dict *h)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    return simple(y, "clear", NULL, NULL, NULL, NULL);
}

typedef struct {
    const mproc_dict_item *items;
    size_t n;
} many;

/* update({k: v, ...}): one request for the batch */
static mproc__pk *update_args(call *c, const void *ctx)
{
    const many *a = ctx;
    mproc__pk *dict = mproc__pk_container(c->d, MPROC__PK_DICT);
    for (size_t i = 0; dict && i < a->n; i++) {
        mproc__pk *k = arg(c, a->items[i].key, a->items[i].klen);
        mproc__pk *v = arg(c, a->items[i].val, a->items[i].vlen);
        if (!k || !v || mproc__pk_add(c->d, dict, k, v) < 0) return NULL;
    }
    return mproc__pk_tuple(c->d, 1, dict);
}

static int d_set_many(mproc_dict *h, const mproc_dict_item *items, size_t n)
{
    PY_OR_EINVAL(y, h, MGR_DICT);
    if (!items && n) return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((!items[i].key && items[i].klen) || (!items[i].val && items[i].vlen)) return -EINVAL;
    many a = {items, n};
    return simple(y, "update", update_args, &a, NULL, NULL);
}

static int d_get_many(mproc_dict *h, mproc_dict_item *items, size_t n, void **block)
{
    if (block) *block = NULL;
    PY_OR_EINVAL(y, h, MGR_DICT);
    if ((!items && n) || !block) return -EINVAL;
    /* Python's dict proxy has no batch get: one __getitem__ per key (not one atomic step) */
    void **vals = calloc(n ? n : 1, sizeof *vals);
    size_t *lens = calloc(n ? n : 1, sizeof *lens), total = 0;
    int found = 0, r = vals && lens ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (!items[i].key && items[i].klen) {
            r = -EINVAL;
            break;
        }
        r = d_get_common(y, items[i].key, items[i].klen, NULL, 0, &vals[i], &lens[i]);
        if (r == -ENOENT) {
            vals[i] = NULL;
            r = 0;
        } else if (r == 0) {
            total += lens[i];
            found++;
        }
    }
    unsigned char *b = r == 0 && found ? malloc(total ? total : 1) : NULL;
    if (r == 0 && found && !b) r = -ENOMEM;
    for (size_t i = 0, off = 0; i < n; i++) {
        if (r == 0) {
            items[i].val = vals && vals[i] ? b + off : NULL;
            items[i].vlen = vals && vals[i] ? lens[i] : 0;
            if (vals && vals[i] && lens[i]) memcpy(b + off, vals[i], lens[i]);
            if (vals && vals[i]) off += lens[i];
        }
        if (vals) free(vals[i]);
    }
    free(vals);
    free(lens);
    if (r < 0) {
        free(b);
        return r;
    }
    *block = b;
    return found;
}

static int d_items(mproc_dict *h, bool keys_only, mproc_dict_item **items, size_t *n)
{
    if (items) *items = NULL;
    if (n) *n = 0;
    PY_OR_EINVAL(y, h, MGR_DICT);
    if (!items || !n) return -EINVAL;
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    const mproc__pk *res;
    r = invoke(&c, keys_only ? "keys" : "items", NULL, &res);
    /* a dict view comes as a list (of keys, or of (key, value) tuples) */
    if (r == 0 && res->kind != MPROC__PK_LIST && res->kind != MPROC__PK_TUPLE) r = MPROC_EPROTO;
    size_t cnt = r == 0 ? res->n : 0, total = cnt * sizeof(mproc_dict_item);
    void **owned = calloc(cnt ? cnt * 2 : 1, sizeof *owned);
    const void **data = calloc(cnt ? cnt * 2 : 1, sizeof *data);
    size_t *lens = calloc(cnt ? cnt * 2 : 1, sizeof *lens);
    if (r == 0 && (!owned || !data || !lens)) r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < cnt; i++) {
        const mproc__pk *it = res->u.items[i], *k = it, *v = NULL;
        if (!keys_only) {
            if (it->kind != MPROC__PK_TUPLE || it->n != 2) {
                r = MPROC_EPROTO;
                break;
            }
            k = it->u.items[0];
            v = it->u.items[1];
        }
        r = mgr_pyv_bytes(k, &owned[2 * i], &data[2 * i], &lens[2 * i]);
        if (r == 0 && v)
            r = mgr_pyv_bytes(v, &owned[2 * i + 1], &data[2 * i + 1], &lens[2 * i + 1]);
        total += lens[2 * i] + lens[2 * i + 1];
    }
    mproc_dict_item *out = r == 0 && cnt ? malloc(total) : NULL;
    if (r == 0 && cnt && !out) r = -ENOMEM;
    if (r == 0 && cnt) {
        unsigned char *q = (unsigned char *)(out + cnt);
        for (size_t i = 0; i < cnt; i++) {
            out[i].key = q;
            out[i].klen = lens[2 * i];
            if (lens[2 * i]) memcpy(q, data[2 * i], lens[2 * i]);
            q += lens[2 * i];
            out[i].val = keys_only ? NULL : q;
            out[i].vlen = keys_only ? 0 : lens[2 * i + 1];
            if (!keys_only && lens[2 * i + 1]) memcpy(q, data[2 * i + 1], lens[2 * i + 1]);
            q += keys_only ? 0 : lens[2 * i + 1];
        }
        *items = out;
        *n = cnt;
    }
    for (size_t i = 0; owned && i < 2 * cnt; i++)
        free(owned[i]);
    free(owned);
    free(data);
    free(lens);
    end(&c);
    return r;
}

/* ---- list ---- */

typedef struct {
    int64_t index;
    const void *val;
    size_t len;
    bool has_val;
} ix;

static mproc__pk *ix_args(call *c, const void *ctx)
{
    const ix *a = ctx;
    mproc__pk *i = mproc__pk_int(c->d, a->index);
    return a->has_val ? mproc__pk_tuple(c->d, 2, i, arg(c, a->val, a->len))
                      : mproc__pk_tuple(c->d, 1, i);
}

static mproc__pk *val_args(call *c, const void *ctx)
{
    const ix *a = ctx;
    return mproc__pk_tuple(c->d, 1, arg(c, a->val, a->len));
}

static int l_append(mproc_list *h, const void *val, size_t len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!val && len) return -EINVAL;
    ix a = {.val = val, .len = len};
    return simple(y, "append", val_args, &a, NULL, NULL);
}

static int l_insert(mproc_list *h, ptrdiff_t index, const void *val, size_t len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!val && len) return -EINVAL;
    ix a = {index, val, len, true};
    return simple(y, "insert", ix_args, &a, NULL, NULL);
}

static int l_set(mproc_list *h, ptrdiff_t index, const void *val, size_t len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!val && len) return -EINVAL;
    ix a = {index, val, len, true};
    return simple(y, "__setitem__", ix_args, &a, NULL, NULL);
}

/* __getitem__ or pop of an index, into buf (cap) or *alloc. */
static int l_fetch(mgr_pyproxy *y, const char *method, ptrdiff_t index, void *buf, size_t cap,
                   void **alloc, size_t *len)
{
    ix a = {.index = index};
    return fetched(y, method, ix_args, &a, buf, cap, alloc, len);
}

static int l_get(mproc_list *h, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!buf && cap) return -EINVAL;
    return l_fetch(y, "__getitem__", index, buf, cap, NULL, len);
}

static int l_get_alloc(mproc_list *h, ptrdiff_t index, void **val, size_t *len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!val) return -EINVAL;
    int r = l_fetch(y, "__getitem__", index, NULL, 0, val, len);
    if (r < 0) *val = NULL;
    return r;
}

static int l_pop(mproc_list *h, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!buf && cap) return -EINVAL;
    if (buf) {
        /* the size first, so an item too big stays (Python has no pop-if-it-fits: between
         * the two calls another client may change the list) */
        size_t n = 0;
        int r = l_fetch(y, "__getitem__", index, buf, cap, NULL, &n);
        if (len) *len = n;
        if (r < 0) return r;
    }
    void *got = NULL;
    size_t n = 0;
    int r = l_fetch(y, "pop", index, NULL, 0, &got, &n);
    if (r == 0 && buf) {
        if (n > cap)
            r = -EMSGSIZE; /* it changed in between: removed all the same */
        else if (n)
            memcpy(buf, got, n);
    }
    if (r == 0 && len) *len = n;
    free(got);
    return r;
}

static int l_len(mproc_list *h, size_t *n)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    if (!n) return -EINVAL;
    return py_len(y, n);
}

/* ListProxy has no clear: del l[:], a slice rebuilt by Python as slice(None, None, None) */
static mproc__pk *all_args(call *c, const void *ctx)
{
    (void)ctx;
    mproc__pk_doc *d = c->d;
    return mproc__pk_tuple(
        d, 1,
        mproc__pk_object(
            d, MPROC__PK_REDUCE, mproc__pk_global(d, "builtins", "slice"),
            mproc__pk_tuple(d, 3, mproc__pk_none(d), mproc__pk_none(d), mproc__pk_none(d)), NULL));
}

static int l_clear(mproc_list *h)
{
    PY_OR_EINVAL(y, h, MGR_LIST);
    return simple(y, "__delitem__", all_args, NULL, NULL, NULL);
}

/* ---- queue ---- */

static int q_put(mproc_queue *h, const void *data, size_t len, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    if ((!data && len) || mproc__timeout_check(timeout)) return -EINVAL;
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    mproc__pk *item = arg(&c, data, len);
    r = item ? mproc__pym_queue_put(c.lane, item, timeout) : -ENOMEM;
    mgr_py_set_error(y->m, mproc__pym_error(c.lane));
    end(&c);
    return r;
}

static int q_get_common(mgr_pyproxy *y, void *buf, size_t cap, size_t *len, void **alloc,
                        double timeout)
{
    pthread_mutex_lock(&y->mu);
    if (y->has_pending) {
        /* the item an earlier get took but could not hand over */
        int r = 0;
        if (len) *len = y->pending_len;
        if (alloc) {
            *alloc = y->pending;
            y->pending = NULL;
            y->has_pending = false;
        } else if (y->pending_len > cap) {
            r = -EMSGSIZE;
        } else {
            if (y->pending_len) memcpy(buf, y->pending, y->pending_len);
            free(y->pending);
            y->pending = NULL;
            y->has_pending = false;
        }
        pthread_mutex_unlock(&y->mu);
        return r;
    }
    pthread_mutex_unlock(&y->mu);
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    const mproc__pk *item;
    r = mproc__pym_queue_get(c.lane, timeout, &item);
    mgr_py_set_error(y->m, mproc__pym_error(c.lane));
    void *got = NULL;
    size_t n = 0;
    if (r == 0) r = out_value(item, NULL, 0, &got, &n);
    end(&c);
    if (r < 0) return r;
    if (len) *len = n;
    if (alloc) {
        *alloc = got;
        return 0;
    }
    if (n > cap) {
        /* taken from Python's queue already: kept for the next get, as a local get leaves it */
        pthread_mutex_lock(&y->mu);
        y->pending = got;
        y->pending_len = n;
        y->has_pending = true;
        pthread_mutex_unlock(&y->mu);
        return -EMSGSIZE;
    }
    if (n) memcpy(buf, got, n);
    free(got);
    return 0;
}

static int q_get(mproc_queue *h, void *buf, size_t cap, size_t *len, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    if ((!buf && cap) || mproc__timeout_check(timeout)) return -EINVAL;
    return q_get_common(y, buf, cap, len, NULL, timeout);
}

static int q_get_alloc(mproc_queue *h, void **data, size_t *len, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    if (!data || !len || mproc__timeout_check(timeout)) return -EINVAL;
    *data = NULL;
    return q_get_common(y, NULL, 0, len, data, timeout);
}

static int q_size(mproc_queue *h, size_t *n)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    int64_t v;
    int r = simple(y, "qsize", NULL, NULL, NULL, &v);
    if (r == 0) {
        pthread_mutex_lock(&y->mu);
        *n = (size_t)v + y->has_pending;
        pthread_mutex_unlock(&y->mu);
    }
    return r;
}

static int q_full(mproc_queue *h)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    int t;
    return simple(y, "full", NULL, NULL, &t, NULL);
}

static int q_close(mproc_queue *h)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    (void)y;
    return -ENOTSUP; /* Python's queue.Queue has no close */
}

static int q_closed(mproc_queue *h)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    (void)y;
    return 0;
}

static int q_task_done(mproc_queue *h)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    if (!mproc__pym_exposes(y->first, "task_done")) return -ENOTSUP;
    return simple(y, "task_done", NULL, NULL, NULL, NULL);
}

static int q_join(mproc_queue *h, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_QUEUE);
    if (mproc__timeout_check(timeout)) return -EINVAL;
    /* Python's join() takes no timeout */
    if (timeout >= 0 && timeout <= MPROC__TIMEOUT_MAX_S) return -ENOTSUP;
    if (!mproc__pym_exposes(y->first, "join")) return -ENOTSUP;
    return simple(y, "join", NULL, NULL, NULL, NULL);
}

/* ---- event and lock ---- */

static int timed(mgr_pyproxy *y, const char *method, double timeout)
{
    if (mproc__timeout_check(timeout)) return -EINVAL;
    call c;
    int r = begin(&c, y);
    if (r < 0) return r;
    r = mproc__pym_wait(c.lane, method, timeout);
    mgr_py_set_error(y->m, mproc__pym_error(c.lane));
    end(&c);
    return r;
}

static int e_set(mproc_event *h)
{
    PY_OR_EINVAL(y, h, MGR_EVENT);
    return simple(y, "set", NULL, NULL, NULL, NULL);
}

static int e_clear(mproc_event *h)
{
    PY_OR_EINVAL(y, h, MGR_EVENT);
    return simple(y, "clear", NULL, NULL, NULL, NULL);
}

static int e_is_set(mproc_event *h)
{
    PY_OR_EINVAL(y, h, MGR_EVENT);
    int t;
    return simple(y, "is_set", NULL, NULL, &t, NULL);
}

static int e_wait(mproc_event *h, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_EVENT);
    return timed(y, "wait", timeout);
}

static int l_acquire(mproc_lock *h, double timeout)
{
    PY_OR_EINVAL(y, h, MGR_LOCK);
    return timed(y, "acquire", timeout);
}

static int l_release(mproc_lock *h)
{
    PY_OR_EINVAL(y, h, MGR_LOCK);
    return simple(y, "release", NULL, NULL, NULL, NULL);
}

static int l_locked(mproc_lock *h)
{
    PY_OR_EINVAL(y, h, MGR_LOCK);
    (void)y;
    return -ENOTSUP; /* Python's lock proxies expose acquire and release only */
}

/* The frees go through proxy.c (mgr_proxy_free), which owns the handle. */
const struct mproc__proxy_ops mgr_py_ops = {
    .dict_set = d_set,
    .dict_get = d_get,
    .dict_get_alloc = d_get_alloc,
    .dict_del = d_del,
    .dict_contains = d_contains,
    .dict_len = d_len,
    .dict_clear = d_clear,
    .dict_set_many = d_set_many,
    .dict_get_many = d_get_many,
    .dict_items = d_items,
    .list_append = l_append,
    .list_insert = l_insert,
    .list_get = l_get,
    .list_get_alloc = l_get_alloc,
    .list_set = l_set,
    .list_pop = l_pop,
    .list_len = l_len,
    .list_clear = l_clear,
    .queue_put = q_put,
    .queue_get = q_get,
    .queue_get_alloc = q_get_alloc,
    .queue_size = q_size,
    .queue_full = q_full,
    .queue_close = q_close,
    .queue_closed = q_closed,
    .queue_task_done = q_task_done,
    .queue_join = q_join,
    .event_set = e_set,
    .event_clear = e_clear,
    .event_is_set = e_is_set,
    .event_wait = e_wait,
    .lock_acquire = l_acquire,
    .lock_release = l_release,
    .lock_locked = l_locked,
};

/* ---- opening ---- */

/* Whether the object's exposed methods are those of that kind. */
static bool fits(const mproc__pym_proxy *p, uint8_t kind)
{
    switch (kind) {
    case MGR_DICT:
        return mproc__pym_exposes(p, "__getitem__") && mproc__pym_exposes(p, "__setitem__") &&
               mproc__pym_exposes(p, "keys");
    case MGR_LIST:
        return mproc__pym_exposes(p, "append") && mproc__pym_exposes(p, "insert") &&
               mproc__pym_exposes(p, "pop") && mproc__pym_exposes(p, "__getitem__");
    case MGR_QUEUE:
        return mproc__pym_exposes(p, "get") && mproc__pym_exposes(p, "put") &&
               mproc__pym_exposes(p, "qsize");
    case MGR_EVENT:
        return mproc__pym_exposes(p, "wait") && mproc__pym_exposes(p, "set") &&
               mproc__pym_exposes(p, "is_set");
    case MGR_LOCK:
        return mproc__pym_exposes(p, "acquire") && mproc__pym_exposes(p, "release");
    default:
        return false;
    }
}

int mgr_py_open(mproc_manager *m, uint8_t kind, const char *name, const mproc_queue_opts *qo,
                mgr_proxy **out)
{
    *out = NULL;
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > MPROC__MGR_NAME_MAX) return -EINVAL;
    mproc__pk_doc *d;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    /* a new queue's maxsize, as Queue(maxsize) */
    mproc__pk *args = NULL;
    if (kind == MGR_QUEUE && qo->max_items &&
        (strcmp(name, "Queue") == 0 || strcmp(name, "JoinableQueue") == 0)) {
        args = mproc__pk_tuple(d, 1, mproc__pk_int(d, (int64_t)qo->max_items));
        if (!args) r = -ENOMEM;
    }
    mproc__pym_proxy *pp = NULL;
    if (r == 0) r = mproc__pym_create(m->pym, name, args, NULL, &pp);
    mgr_py_set_error(m, mproc__pym_manager_error(m->pym));
    mproc__pk_doc_free(d);
    if (r < 0) return r;
    if (!fits(pp, kind)) {
        mproc__pym_proxy_free(pp);
        return -EEXIST;
    }
    mgr_pyproxy *y = calloc(1, sizeof *y);
    mgr_proxy *p = calloc(1, sizeof *p + nlen + 1);
    if (!y || !p) {
        free(y);
        free(p);
        mproc__pym_proxy_free(pp);
        return -ENOMEM;
    }
    pthread_mutex_init(&y->mu, NULL);
    y->m = m;
    y->pid = getpid();
    y->first = pp;
    y->idle[y->nidle++] = pp;
    y->sticky = kind == MGR_LOCK;
    p->kind = kind;
    p->m = m;
    p->py = y;
    p->nlen = nlen;
    memcpy(p->name, name, nlen);
    mgr_proxy_register_ops(); /* the ordinary calls look for proxies from now on */
    if ((r = mgr_proxy_add(m, p)) < 0) {
        mgr_py_proxy_free(y);
        free(p);
        return r;
    }
    *out = p;
    return 0;
}
