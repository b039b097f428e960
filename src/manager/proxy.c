/* Proxies: the handles an outside process gets from a manager, and the ops table through which
 * the ordinary queue, event, lock and value calls reach them (src/sync/proxy.h; the dict and list
 * ops are in proxy_containers.c). Live proxies are kept in a set, so a call checks a handle
 * without reading through it: garbage still gets -EINVAL and never a fault. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "manager/client.h"
#include "platform/platform.h"
#include "sync/proxy.h"

#define PROXY_MAGIC 0x50727879u /* "Prxy" */

/* ---- the set of live proxies: open addressing on the pointer ---- */

static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *set;
static size_t set_cap, set_n;
#define TOMB ((uintptr_t)1)

static size_t slot_of(uintptr_t p, size_t cap)
{
    return (size_t)((p >> 4) * 0x9e3779b97f4a7c15ull) & (cap - 1);
}

static int set_add_locked(uintptr_t p)
{
    if ((set_n + 1) * 2 > set_cap) {
        size_t cap = set_cap ? set_cap * 2 : 64;
        uintptr_t *n = calloc(cap, sizeof *n);
        if (!n) return -ENOMEM;
        for (size_t i = 0; i < set_cap; i++)
            if (set[i] > TOMB) {
                size_t j = slot_of(set[i], cap);
                while (n[j])
                    j = (j + 1) & (cap - 1);
                n[j] = set[i];
            }
        free(set);
        set = n;
        set_cap = cap;
    }
    size_t j = slot_of(p, set_cap);
    while (set[j] > TOMB)
        j = (j + 1) & (set_cap - 1);
    set[j] = p;
    set_n++;
    return 0;
}

static size_t set_find_locked(uintptr_t p)
{
    if (!set_cap) return SIZE_MAX;
    for (size_t j = slot_of(p, set_cap), k = 0; k < set_cap && set[j]; k++) {
        if (set[j] == p) return j;
        j = (j + 1) & (set_cap - 1);
    }
    return SIZE_MAX;
}

mgr_proxy *mgr_proxy_get(const void *h, uint8_t kind)
{
    if (!h) return NULL;
    pthread_mutex_lock(&set_mu);
    bool in = set_find_locked((uintptr_t)h) != SIZE_MAX;
    pthread_mutex_unlock(&set_mu);
    mgr_proxy *p = (mgr_proxy *)h;
    return in && p->magic == PROXY_MAGIC && p->kind == kind ? p : NULL;
}

void mgr_proxy_free(mgr_proxy *p)
{
    pthread_mutex_lock(&set_mu);
    size_t j = set_find_locked((uintptr_t)p);
    if (j != SIZE_MAX) {
        set[j] = TOMB;
        set_n--;
    }
    pthread_mutex_unlock(&set_mu);
    if (j == SIZE_MAX) return;
    if (p->py) mgr_py_proxy_free(p->py);
    mproc_manager *m = p->m;
    pthread_mutex_lock(&m->mu);
    if (p->prev)
        p->prev->next = p->next;
    else
        m->proxies = p->next;
    if (p->next) p->next->prev = p->prev;
    pthread_mutex_unlock(&m->mu);
    p->magic = 0;
    free(p);
}

/* ---- opening by name ---- */

/* OPEN name: 0 with *id, *ptr, *size, and *family, or a negative code. */
static int open_name(mproc_manager *m, uint8_t kind, const char *name, size_t nlen, uint64_t a,
                     uint64_t b, bool c, uint32_t *id, void **ptr, size_t *size, bool *family,
                     uint64_t *gen)
{
    unsigned char fixed[18], out[20];
    fixed[0] = kind;
    mgr_put64(fixed + 1, a);
    mgr_put64(fixed + 9, b);
    fixed[17] = c;
    struct iovec v[2] = {{fixed, sizeof fixed}, {(void *)name, nlen}};
    mgr_result res = {.buf = out, .cap = sizeof out};
    int r = mgr_call(m, MGR_OPEN, 0, v, 2, false, &res);
    if (r < 0) return r;
    if (res.status < 0) return res.status;
    if (res.len != sizeof out) return MPROC_EPROTO;
    *id = mgr_get32(out);
    *ptr = (void *)(uintptr_t)mgr_get64(out + 4);
    *size = mgr_get64(out + 12);
    pthread_mutex_lock(&m->mu);
    *family = m->family;
    *gen = m->gen;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int mgr_open(mproc_manager *m, uint8_t kind, const char *name, uint64_t a, uint64_t b, bool c,
             void **local, mgr_proxy **proxy)
{
    *local = NULL;
    *proxy = NULL;
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > MPROC__MGR_NAME_MAX) return -EINVAL;
    uint32_t id;
    void *ptr;
    size_t size;
    bool family;
    uint64_t gen;
    int r = open_name(m, kind, name, nlen, a, b, c, &id, &ptr, &size, &family, &gen);
    if (r < 0) return r;
    if (family) {
        *local = ptr; /* the arena object itself: no round trip from here on */
        return 0;
    }
    mgr_proxy_register_ops();
    mgr_proxy *p = calloc(1, sizeof *p + nlen + 1);
    if (!p) return -ENOMEM;
    *p = (mgr_proxy){.magic = PROXY_MAGIC,
                     .kind = kind,
                     .m = m,
                     .obj = id,
                     .gen = gen,
                     .a = a,
                     .b = b,
                     .c = c,
                     .size = size,
                     .nlen = nlen};
    memcpy(p->name, name, nlen);
    if ((r = mgr_proxy_add(m, p)) < 0) {
        free(p);
        return r;
    }
    *proxy = p;
    return 0;
}

int mgr_proxy_add(mproc_manager *m, mgr_proxy *p)
{
    p->magic = PROXY_MAGIC;
    pthread_mutex_lock(&set_mu);
    int r = set_add_locked((uintptr_t)p);
    pthread_mutex_unlock(&set_mu);
    if (r < 0) return r;
    pthread_mutex_lock(&m->mu);
    p->next = m->proxies;
    if (m->proxies) m->proxies->prev = p;
    m->proxies = p;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int mgr_proxy_call(mgr_proxy *p, uint16_t op, const struct iovec *iov, int niov, bool interruptible,
                   mgr_result *res)
{
    mproc_manager *m = p->m;
    for (int tries = 0;; tries++) {
        pthread_mutex_lock(&m->mu);
        bool stale = p->gen != m->gen || !m->conn || m->pid != mproc__pid();
        pthread_mutex_unlock(&m->mu);
        if (stale) {
            /* a new connection (reconnect, fork, or a server back at the address): the object
             * by its name, made again if the server is new */
            uint32_t id;
            void *ptr;
            size_t size;
            bool family;
            uint64_t gen;
            int r = open_name(m, p->kind, p->name, p->nlen, p->a, p->b, p->c, &id, &ptr, &size,
                              &family, &gen);
            if (r < 0) return r;
            p->obj = id;
            p->gen = gen;
            p->size = size;
        }
        int r = mgr_call(m, op, p->obj, iov, niov, interruptible, res);
        if (r < 0) return r;
        /* the connection changed between the look and the call: once more with the new id */
        if (res->status == -EIDRM && tries == 0 && p->gen != m->gen) continue;
        return 0;
    }
}

/* ---- the ops ---- */

/* A call with an optional timeout first and a byte string after it. */
static int simple(mgr_proxy *p, uint16_t op, const double *timeout, const void *data, size_t len,
                  bool intr)
{
    struct iovec v[2];
    int n = 0;
    if (timeout) v[n++] = (struct iovec){(void *)timeout, 8};
    if (len) v[n++] = (struct iovec){(void *)data, len};
    mgr_result res = {0};
    int r = mgr_proxy_call(p, op, v, n, intr, &res);
    return r < 0 ? r : res.status;
}

/* The proxy h is, or -EINVAL; a Python manager's goes to its own op with the same arguments. */
#define PROXY_OR_EINVAL(var, h, kind, op, ...)                                                     \
    mgr_proxy *var = mgr_proxy_get(h, kind);                                                       \
    if (!var) return -EINVAL;                                                                      \
    if (var->py) return mgr_py_ops.op(__VA_ARGS__)
/* Kinds a Python manager's proxies never are. */
#define NATIVE_OR_EINVAL(var, h, kind)                                                             \
    mgr_proxy *var = mgr_proxy_get(h, kind);                                                       \
    if (!var || var->py) return -EINVAL

static int q_put(mproc_queue *q, const void *data, size_t len, double timeout)
{
    PROXY_OR_EINVAL(p, q, MGR_QUEUE, queue_put, q, data, len, timeout);
    if ((!data && len) || mproc__timeout_check(timeout)) return -EINVAL;
    return simple(p, MGR_QUEUE_PUT, &timeout, data, len, timeout != 0);
}

static int q_get_common(mgr_proxy *p, void *buf, size_t cap, size_t *len, void **alloc,
                        double timeout)
{
    unsigned char a[16];
    mgr_putf64(a, timeout);
    mgr_put64(a + 8, alloc ? UINT64_MAX : cap);
    mgr_result res = {.buf = buf, .cap = alloc ? 0 : cap, .alloc = alloc};
    int r = mgr_proxy_call(p, MGR_QUEUE_GET, &(struct iovec){a, 16}, 1, timeout != 0, &res);
    if (r < 0) return r;
    if (res.status == -EMSGSIZE && len) {
        *len = (size_t)mgr_get64(res.err); /* the size needed */
    } else if (res.status == 0 && len) {
        *len = res.len;
    }
    return res.status;
}

static int q_get(mproc_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    PROXY_OR_EINVAL(p, q, MGR_QUEUE, queue_get, q, buf, cap, len, timeout);
    if ((!buf && cap) || mproc__timeout_check(timeout)) return -EINVAL;
    return q_get_common(p, buf, cap, len, NULL, timeout);
}

static int q_get_alloc(mproc_queue *q, void **data, size_t *len, double timeout)
{
    if (data) *data = NULL;
    PROXY_OR_EINVAL(p, q, MGR_QUEUE, queue_get_alloc, q, data, len, timeout);
    if (!data || !len || mproc__timeout_check(timeout)) return -EINVAL;
    int r = q_get_common(p, NULL, 0, len, data, timeout);
    if (r == 0 && !*data && !(*data = malloc(1))) r = -ENOMEM; /* as the local call: 1 byte */
    if (r < 0) {
        free(*data);
        *data = NULL;
    }
    return r;
}

static int q_size(mproc_queue *q, size_t *n)
{
    PROXY_OR_EINVAL(p, q, MGR_QUEUE, queue_size, q, n);
    unsigned char b[8];
    mgr_result res = {.buf = b, .cap = 8};
    int r = mgr_proxy_call(p, MGR_QUEUE_SIZE, NULL, 0, false, &res);
    if (r < 0 || res.status < 0) return r < 0 ? r : res.status;
    *n = res.len == 8 ? (size_t)mgr_get64(b) : 0;
    return 0;
}

#define NOARG(fn, type, kind, op, pyop)                                                            \
    static int fn(type *h)                                                                         \
    {                                                                                              \
        PROXY_OR_EINVAL(p, h, kind, pyop, h);                                                      \
        return simple(p, op, NULL, NULL, 0, false);                                                \
    }
NOARG(q_full, mproc_queue, MGR_QUEUE, MGR_QUEUE_FULL, queue_full)
NOARG(q_close, mproc_queue, MGR_QUEUE, MGR_QUEUE_CLOSE, queue_close)
NOARG(q_closed, mproc_queue, MGR_QUEUE, MGR_QUEUE_CLOSED, queue_closed)
NOARG(q_task_done, mproc_queue, MGR_QUEUE, MGR_QUEUE_TASK_DONE, queue_task_done)
NOARG(e_set, mproc_event, MGR_EVENT, MGR_EVENT_SET, event_set)
NOARG(e_clear, mproc_event, MGR_EVENT, MGR_EVENT_CLEAR, event_clear)
NOARG(e_is_set, mproc_event, MGR_EVENT, MGR_EVENT_IS_SET, event_is_set)
NOARG(l_release, mproc_lock, MGR_LOCK, MGR_LOCK_RELEASE, lock_release)
NOARG(l_locked, mproc_lock, MGR_LOCK, MGR_LOCK_LOCKED, lock_locked)

#define TIMED(fn, type, kind, op, pyop)                                                            \
    static int fn(type *h, double timeout)                                                         \
    {                                                                                              \
        PROXY_OR_EINVAL(p, h, kind, pyop, h, timeout);                                             \
        if (mproc__timeout_check(timeout)) return -EINVAL;                                         \
        return simple(p, op, &timeout, NULL, 0, timeout != 0);                                     \
    }
TIMED(q_join, mproc_queue, MGR_QUEUE, MGR_QUEUE_JOIN, queue_join)
TIMED(e_wait, mproc_event, MGR_EVENT, MGR_EVENT_WAIT, event_wait)
TIMED(l_acquire, mproc_lock, MGR_LOCK, MGR_LOCK_ACQUIRE, lock_acquire)

static int v_load(mproc_value *v, void *buf, size_t len)
{
    NATIVE_OR_EINVAL(p, v, MGR_VALUE);
    if ((!buf && len) || len > p->size) return -EINVAL;
    unsigned char a[8];
    mgr_put64(a, len);
    mgr_result res = {.buf = buf, .cap = len};
    int r = mgr_proxy_call(p, MGR_VALUE_LOAD, &(struct iovec){a, 8}, 1, false, &res);
    if (r < 0) return r;
    if (res.status == 0 && res.len != len) return MPROC_EPROTO;
    return res.status;
}

static int v_store(mproc_value *v, const void *buf, size_t len)
{
    NATIVE_OR_EINVAL(p, v, MGR_VALUE);
    if ((!buf && len) || len > p->size) return -EINVAL;
    return simple(p, MGR_VALUE_STORE, NULL, buf, len, false);
}

static int v_size(mproc_value *v, size_t *n)
{
    NATIVE_OR_EINVAL(p, v, MGR_VALUE);
    *n = p->size;
    return 0;
}

#define FREE_OP(fn, type, kind)                                                                    \
    static void fn(type *h)                                                                        \
    {                                                                                              \
        mgr_proxy *p = mgr_proxy_get(h, kind);                                                     \
        if (p) mgr_proxy_free(p);                                                                  \
    }
FREE_OP(q_free, mproc_queue, MGR_QUEUE)
FREE_OP(e_free, mproc_event, MGR_EVENT)
FREE_OP(l_free, mproc_lock, MGR_LOCK)
FREE_OP(v_free, mproc_value, MGR_VALUE)

static struct mproc__proxy_ops ops = {
    .queue_put = q_put,
    .queue_get = q_get,
    .queue_get_alloc = q_get_alloc,
    .queue_size = q_size,
    .queue_full = q_full,
    .queue_close = q_close,
    .queue_closed = q_closed,
    .queue_task_done = q_task_done,
    .queue_join = q_join,
    .queue_free = q_free,
    .event_set = e_set,
    .event_clear = e_clear,
    .event_is_set = e_is_set,
    .event_wait = e_wait,
    .event_free = e_free,
    .lock_acquire = l_acquire,
    .lock_release = l_release,
    .lock_locked = l_locked,
    .lock_free = l_free,
    .value_load = v_load,
    .value_store = v_store,
    .value_size = v_size,
    .value_free = v_free,
};

static void fill_ops(void)
{
    mgr_proxy_fill_containers(&ops);
    mproc__proxy_register(&ops);
}

void mgr_proxy_register_ops(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_ops);
}
