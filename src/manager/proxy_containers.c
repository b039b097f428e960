/* The dict and list ops of the proxy table (src/sync/proxy.h): each call is one request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manager/client.h"
#include "sync/proxy.h"

/* The proxy h is, or -EINVAL; a Python manager's goes to its own op with the same arguments. */
#define GET_PROXY(var, h, kind, op, ...)                                                           \
    mgr_proxy *var = mgr_proxy_get(h, kind);                                                       \
    if (!var) return -EINVAL;                                                                      \
    if (var->py) return mgr_py_ops.op(__VA_ARGS__)
#define GET_DICT(var, h, op, ...) GET_PROXY(var, h, MGR_DICT, op, __VA_ARGS__)

static int status_of(int r, const mgr_result *res)
{
    return r < 0 ? r : res->status;
}

/* A request with up to three byte strings and no reply body. */
static int send3(mgr_proxy *p, uint16_t op, const void *a, size_t al, const void *b, size_t bl,
                 const void *c, size_t cl)
{
    struct iovec v[3];
    int n = 0;
    if (al) v[n++] = (struct iovec){(void *)a, al};
    if (bl) v[n++] = (struct iovec){(void *)b, bl};
    if (cl) v[n++] = (struct iovec){(void *)c, cl};
    mgr_result res = {0};
    return status_of(mgr_proxy_call(p, op, v, n, false, &res), &res);
}

/* A reply body copied into buf (cap) or a malloc'd *alloc; -EMSGSIZE with *len the size. */
static int fetch(mgr_proxy *p, uint16_t op, const void *a, size_t al, const void *b, size_t bl,
                 void *buf, size_t cap, void **alloc, size_t *len)
{
    struct iovec v[2];
    int n = 0;
    if (al) v[n++] = (struct iovec){(void *)a, al};
    if (bl) v[n++] = (struct iovec){(void *)b, bl};
    mgr_result res = {.buf = buf, .cap = cap, .alloc = alloc};
    int r = mgr_proxy_call(p, op, v, n, false, &res);
    if (r < 0) return r;
    if (res.status == -EMSGSIZE) {
        if (len) *len = (size_t)mgr_get64(res.err);
        return -EMSGSIZE;
    }
    if (res.status < 0) return res.status;
    if (len) *len = res.len;
    if (!alloc && res.len > cap) return -EMSGSIZE; /* the server was asked for any size */
    if (alloc && res.len <= cap) {
        /* small enough for the (empty) buffer: still the caller's own allocation */
        *alloc = malloc(res.len ? res.len : 1);
        if (!*alloc) return -ENOMEM;
        if (res.len) memcpy(*alloc, buf, res.len);
    }
    return res.status;
}

static int d_set(mproc_dict *d, const void *key, size_t klen, const void *val, size_t vlen)
{
    GET_DICT(p, d, dict_set, d, key, klen, val, vlen);
    if ((!key && klen) || (!val && vlen) || klen > UINT32_MAX) return -EINVAL;
    unsigned char kl[4];
    mgr_put32(kl, (uint32_t)klen);
    return send3(p, MGR_DICT_SET, kl, 4, key, klen, val, vlen);
}

static int d_get(mproc_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *len)
{
    GET_DICT(p, d, dict_get, d, key, klen, buf, cap, len);
    if ((!key && klen) || (!buf && cap)) return -EINVAL;
    return fetch(p, MGR_DICT_GET, key, klen, NULL, 0, buf, cap, NULL, len);
}

static int d_get_alloc(mproc_dict *d, const void *key, size_t klen, void **val, size_t *len)
{
    if (val) *val = NULL;
    GET_DICT(p, d, dict_get_alloc, d, key, klen, val, len);
    if ((!key && klen) || !val) return -EINVAL;
    unsigned char none[1];
    return fetch(p, MGR_DICT_GET, key, klen, NULL, 0, none, 0, val, len);
}

static int d_del(mproc_dict *d, const void *key, size_t klen)
{
    GET_DICT(p, d, dict_del, d, key, klen);
    if (!key && klen) return -EINVAL;
    return send3(p, MGR_DICT_DEL, key, klen, NULL, 0, NULL, 0);
}

static int d_contains(mproc_dict *d, const void *key, size_t klen)
{
    GET_DICT(p, d, dict_contains, d, key, klen);
    if (!key && klen) return -EINVAL;
    return send3(p, MGR_DICT_CONTAINS, key, klen, NULL, 0, NULL, 0);
}

static int count(mgr_proxy *p, uint16_t op, size_t *n)
{
    if (!n) return -EINVAL;
    unsigned char b[8];
    mgr_result res = {.buf = b, .cap = 8};
    int r = status_of(mgr_proxy_call(p, op, NULL, 0, false, &res), &res);
    if (r == 0) *n = res.len == 8 ? (size_t)mgr_get64(b) : 0;
    return r;
}

static int d_len(mproc_dict *d, size_t *n)
{
    GET_DICT(p, d, dict_len, d, n);
    return count(p, MGR_DICT_LEN, n);
}

static int d_clear(mproc_dict *d)
{
    GET_DICT(p, d, dict_clear, d);
    return send3(p, MGR_DICT_CLEAR, NULL, 0, NULL, 0, NULL, 0);
}

/* The batch calls encode into one buffer: one request, one reply. */
static int d_set_many(mproc_dict *d, const mproc_dict_item *items, size_t n)
{
    GET_DICT(p, d, dict_set_many, d, items, n);
    if ((!items && n) || n > UINT32_MAX) return -EINVAL;
    size_t total = 4;
    for (size_t i = 0; i < n; i++) {
        if ((!items[i].key && items[i].klen) || (!items[i].val && items[i].vlen) ||
            items[i].klen > UINT32_MAX || items[i].vlen > UINT32_MAX)
            return -EINVAL;
        total += 8 + items[i].klen + items[i].vlen;
    }
    unsigned char *buf = malloc(total), *q = buf;
    if (!buf) return -ENOMEM;
    q = mgr_put32(q, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        q = mgr_put32(q, (uint32_t)items[i].klen);
        q = mgr_put32(q, (uint32_t)items[i].vlen);
        if (items[i].klen) memcpy(q, items[i].key, items[i].klen);
        q += items[i].klen;
        if (items[i].vlen) memcpy(q, items[i].val, items[i].vlen);
        q += items[i].vlen;
    }
    int r = send3(p, MGR_DICT_SET_MANY, buf, total, NULL, 0, NULL, 0);
    free(buf);
    return r;
}

static int d_get_many(mproc_dict *d, mproc_dict_item *items, size_t n, void **block)
{
    if (block) *block = NULL;
    GET_DICT(p, d, dict_get_many, d, items, n, block);
    if ((!items && n) || !block || n > UINT32_MAX) return -EINVAL;
    size_t total = 4;
    for (size_t i = 0; i < n; i++) {
        if ((!items[i].key && items[i].klen) || items[i].klen > UINT32_MAX) return -EINVAL;
        total += 4 + items[i].klen;
    }
    unsigned char *buf = malloc(total), *q = buf;
    if (!buf) return -ENOMEM;
    q = mgr_put32(q, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        q = mgr_put32(q, (uint32_t)items[i].klen);
        if (items[i].klen) memcpy(q, items[i].key, items[i].klen);
        q += items[i].klen;
    }
    void *rep = NULL;
    size_t len = 0;
    unsigned char none[1];
    int r = fetch(p, MGR_DICT_GET_MANY, buf, total, NULL, 0, none, 0, &rep, &len);
    free(buf);
    if (r < 0) return r;
    /* the values point into the reply itself, which becomes *block */
    const unsigned char *c = rep, *end = c + len;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].val = NULL;
        items[i].vlen = 0;
        if (end - c < 4) continue;
        uint32_t vl = mgr_get32(c);
        c += 4;
        if (vl == UINT32_MAX) continue;
        if ((size_t)(end - c) < vl) break;
        items[i].val = c;
        items[i].vlen = vl;
        c += vl;
        found++;
    }
    if (found == 0) {
        free(rep);
        rep = NULL;
    }
    *block = rep;
    return found;
}

static int d_items(mproc_dict *d, bool keys_only, mproc_dict_item **items, size_t *n)
{
    if (items) *items = NULL;
    if (n) *n = 0;
    GET_DICT(p, d, dict_items, d, keys_only, items, n);
    if (!items || !n) return -EINVAL;
    unsigned char ko = keys_only;
    void *rep = NULL;
    size_t len = 0;
    unsigned char none[1];
    int r = fetch(p, MGR_DICT_ITEMS, &ko, 1, NULL, 0, none, 0, &rep, &len);
    if (r < 0) return r;
    const unsigned char *c = rep, *end = c + len;
    uint32_t cnt = len >= 4 ? mgr_get32(c) : 0;
    c += len >= 4 ? 4 : 0;
    if (cnt == 0 || cnt > len / 8) {
        free(rep);
        return cnt == 0 ? 0 : MPROC_EPROTO;
    }
    /* one block: the array, then the reply's bytes it points into */
    size_t arr = cnt * sizeof(mproc_dict_item);
    mproc_dict_item *out = malloc(arr + len);
    if (!out) {
        free(rep);
        return -ENOMEM;
    }
    unsigned char *bytes = (unsigned char *)out + arr;
    memcpy(bytes, rep, len);
    const unsigned char *base = rep;
    for (uint32_t i = 0; i < cnt; i++) {
        if (end - c < 8) goto bad;
        uint32_t kl = mgr_get32(c), vl = mgr_get32(c + 4);
        c += 8;
        if ((size_t)(end - c) < (size_t)kl + vl) goto bad;
        out[i].key = bytes + (c - base);
        out[i].klen = kl;
        out[i].val = keys_only ? NULL : bytes + (c - base) + kl;
        out[i].vlen = keys_only ? 0 : vl;
        c += (size_t)kl + vl;
    }
    free(rep);
    *items = out;
    *n = cnt;
    return 0;
bad:
    free(rep);
    free(out);
    return MPROC_EPROTO;
}

static void d_free(mproc_dict *d)
{
    mgr_proxy *p = mgr_proxy_get(d, MGR_DICT);
    if (p) mgr_proxy_free(p);
}

/* ---- list ---- */

static int l_append(mproc_list *l, const void *val, size_t len)
{
    GET_PROXY(p, l, MGR_LIST, list_append, l, val, len);
    if (!val && len) return -EINVAL;
    return send3(p, MGR_LIST_APPEND, val, len, NULL, 0, NULL, 0);
}

static int indexed(mgr_proxy *p, uint16_t op, ptrdiff_t index, const void *val, size_t len)
{
    if (!val && len) return -EINVAL;
    unsigned char ix[8];
    mgr_put64(ix, (uint64_t)(int64_t)index);
    return send3(p, op, ix, 8, val, len, NULL, 0);
}

static int l_insert(mproc_list *l, ptrdiff_t index, const void *val, size_t len)
{
    GET_PROXY(p, l, MGR_LIST, list_insert, l, index, val, len);
    return indexed(p, MGR_LIST_INSERT, index, val, len);
}

static int l_set(mproc_list *l, ptrdiff_t index, const void *val, size_t len)
{
    GET_PROXY(p, l, MGR_LIST, list_set, l, index, val, len);
    return indexed(p, MGR_LIST_SET, index, val, len);
}

static int l_get(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    GET_PROXY(p, l, MGR_LIST, list_get, l, index, buf, cap, len);
    if (!buf && cap) return -EINVAL;
    unsigned char ix[8];
    mgr_put64(ix, (uint64_t)(int64_t)index);
    return fetch(p, MGR_LIST_GET, ix, 8, NULL, 0, buf, cap, NULL, len);
}

static int l_get_alloc(mproc_list *l, ptrdiff_t index, void **val, size_t *len)
{
    if (val) *val = NULL;
    GET_PROXY(p, l, MGR_LIST, list_get_alloc, l, index, val, len);
    if (!val) return -EINVAL;
    unsigned char ix[8], none[1];
    mgr_put64(ix, (uint64_t)(int64_t)index);
    return fetch(p, MGR_LIST_GET, ix, 8, NULL, 0, none, 0, val, len);
}

static int l_pop(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len)
{
    GET_PROXY(p, l, MGR_LIST, list_pop, l, index, buf, cap, len);
    if (!buf && cap) return -EINVAL;
    unsigned char a[16];
    mgr_put64(a, (uint64_t)(int64_t)index);
    /* buf NULL and cap 0: just remove, whatever its size */
    mgr_put64(a + 8, buf ? cap : UINT64_MAX);
    struct iovec v = {a, 16};
    mgr_result res = {.buf = buf, .cap = cap};
    int r = mgr_proxy_call(p, MGR_LIST_POP, &v, 1, false, &res);
    if (r < 0) return r;
    if (res.status == -EMSGSIZE && len) *len = (size_t)mgr_get64(res.err);
    if (res.status == 0 && len) *len = res.len;
    return res.status;
}

static int l_len(mproc_list *l, size_t *n)
{
    GET_PROXY(p, l, MGR_LIST, list_len, l, n);
    return count(p, MGR_LIST_LEN, n);
}

static int l_clear(mproc_list *l)
{
    GET_PROXY(p, l, MGR_LIST, list_clear, l);
    return send3(p, MGR_LIST_CLEAR, NULL, 0, NULL, 0, NULL, 0);
}

static void l_free(mproc_list *l)
{
    mgr_proxy *p = mgr_proxy_get(l, MGR_LIST);
    if (p) mgr_proxy_free(p);
}

void mgr_proxy_fill_containers(struct mproc__proxy_ops *ops)
{
    ops->dict_set = d_set;
    ops->dict_get = d_get;
    ops->dict_get_alloc = d_get_alloc;
    ops->dict_del = d_del;
    ops->dict_contains = d_contains;
    ops->dict_len = d_len;
    ops->dict_clear = d_clear;
    ops->dict_set_many = d_set_many;
    ops->dict_get_many = d_get_many;
    ops->dict_items = d_items;
    ops->dict_free = d_free;
    ops->list_append = l_append;
    ops->list_insert = l_insert;
    ops->list_get = l_get;
    ops->list_get_alloc = l_get_alloc;
    ops->list_set = l_set;
    ops->list_pop = l_pop;
    ops->list_len = l_len;
    ops->list_clear = l_clear;
    ops->list_free = l_free;
}
