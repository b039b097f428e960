/* The manager server's dict and list requests: each is one call on the arena container (which
 * makes it atomic with respect to family members using it directly). Bodies are parsed with
 * every length checked against what arrived. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manager/server.h"

int mgr_container_new(uint8_t kind, void **out)
{
    return kind == MGR_DICT ? mproc_dict_new((mproc_dict **)out, NULL)
                            : mproc_list_new((mproc_list **)out, NULL);
}

void mgr_container_free(uint8_t kind, void *ptr)
{
    if (kind == MGR_DICT)
        mproc_dict_free(ptr);
    else
        mproc_list_free(ptr);
}

/* A cursor over a request body. */
typedef struct {
    const unsigned char *p;
    size_t left;
    bool bad;
} rd;

static uint32_t rd32(rd *r)
{
    if (r->left < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v = mgr_get32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint64_t rd64(rd *r)
{
    if (r->left < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t v = mgr_get64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

static const void *rdbytes(rd *r, size_t n)
{
    if (r->left < n) {
        r->bad = true;
        return NULL;
    }
    const void *v = r->p;
    r->p += n;
    r->left -= n;
    return v;
}

typedef struct {
    void *obj;
    const void *key;
    size_t klen;
    ptrdiff_t index;
} fetch_ctx;

static int dict_fetch(void *ctx, void *buf, size_t cap, size_t *len)
{
    fetch_ctx *f = ctx;
    return mproc_dict_get(f->obj, f->key, f->klen, buf, cap, len);
}

static int list_fetch(void *ctx, void *buf, size_t cap, size_t *len)
{
    fetch_ctx *f = ctx;
    return mproc_list_get(f->obj, f->index, buf, cap, len);
}

static int list_pop_fetch(void *ctx, void *buf, size_t cap, size_t *len)
{
    fetch_ctx *f = ctx;
    return mproc_list_pop(f->obj, f->index, buf, cap, len);
}

static void set_many(mgr_conn *c, mproc_dict *d, uint32_t id, rd *b)
{
    uint32_t n = rd32(b);
    /* every entry takes at least 8 bytes: a count past that is a lie, refused unallocated */
    if (b->bad || n > b->left / 8) {
        mgr_reply(c, id, -EINVAL, NULL, 0);
        return;
    }
    mproc_dict_item *it = malloc((n ? n : 1) * sizeof *it);
    if (!it) {
        mgr_reply(c, id, -ENOMEM, NULL, 0);
        return;
    }
    for (uint32_t i = 0; i < n && !b->bad; i++) {
        it[i].klen = rd32(b);
        it[i].vlen = rd32(b);
        it[i].key = rdbytes(b, it[i].klen);
        it[i].val = rdbytes(b, it[i].vlen);
    }
    mgr_reply(c, id, b->bad ? -EINVAL : mproc_dict_set_many(d, it, n), NULL, 0);
    free(it);
}

static void get_many(mgr_srv *s, mgr_conn *c, mproc_dict *d, uint32_t id, rd *b)
{
    uint32_t n = rd32(b);
    if (b->bad || n > b->left / 4) {
        mgr_reply(c, id, -EINVAL, NULL, 0);
        return;
    }
    mproc_dict_item *it = calloc(n ? n : 1, sizeof *it);
    if (!it) {
        mgr_reply(c, id, -ENOMEM, NULL, 0);
        return;
    }
    for (uint32_t i = 0; i < n && !b->bad; i++) {
        it[i].klen = rd32(b);
        it[i].key = rdbytes(b, it[i].klen);
    }
    void *block = NULL;
    int r = b->bad ? -EINVAL : mproc_dict_get_many(d, it, n, &block);
    size_t total = 0;
    for (uint32_t i = 0; r >= 0 && i < n; i++)
        total += 4 + (it[i].val ? it[i].vlen : 0);
    if (r >= 0 && total > s->o.max_message) r = -EMSGSIZE;
    unsigned char *p = r >= 0 ? mgr_reply_begin(c, total) : NULL;
    if (p) {
        for (uint32_t i = 0; i < n; i++) {
            p = mgr_put32(p, it[i].val ? (uint32_t)it[i].vlen : UINT32_MAX);
            if (it[i].val && it[i].vlen) memcpy(p, it[i].val, it[i].vlen);
            if (it[i].val) p += it[i].vlen;
        }
        mgr_reply_end(c, id, r, total);
    } else if (r < 0) {
        mgr_reply(c, id, r, NULL, 0);
    }
    free(block);
    free(it);
}

static void items(mgr_srv *s, mgr_conn *c, mproc_dict *d, uint32_t id, rd *b)
{
    bool keys_only = b->left && b->p[0];
    mproc_dict_item *it = NULL;
    size_t n = 0;
    int r = mproc_dict_items(d, keys_only, &it, &n);
    size_t total = 4;
    for (size_t i = 0; r >= 0 && i < n; i++)
        total += 8 + it[i].klen + it[i].vlen;
    if (r >= 0 && (total > s->o.max_message || n > UINT32_MAX)) r = -EMSGSIZE;
    unsigned char *p = r >= 0 ? mgr_reply_begin(c, total) : NULL;
    if (p) {
        p = mgr_put32(p, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            p = mgr_put32(p, (uint32_t)it[i].klen);
            p = mgr_put32(p, (uint32_t)it[i].vlen);
            if (it[i].klen) memcpy(p, it[i].key, it[i].klen);
            p += it[i].klen;
            if (it[i].vlen) memcpy(p, it[i].val, it[i].vlen);
            p += it[i].vlen;
        }
        mgr_reply_end(c, id, 0, total);
    } else if (r < 0) {
        mgr_reply(c, id, r, NULL, 0);
    }
    free(it);
}

int mgr_container_op(mgr_srv *s, mgr_conn *c, mgr_obj *o, const mproc__mgr_req *h,
                     const unsigned char *body)
{
    rd b = {body, h->len, false};
    uint32_t id = h->id;
    size_t n = 0;
    if (h->op >= MGR_DICT_SET && h->op <= MGR_DICT_ITEMS) {
        if (o->kind != MGR_DICT) return -ENOSYS;
        mproc_dict *d = o->ptr;
        switch (h->op) {
        case MGR_DICT_SET: {
            uint32_t kl = rd32(&b);
            const void *k = rdbytes(&b, kl);
            if (b.bad) return -ENOSYS;
            mgr_reply(c, id, mproc_dict_set(d, k, kl, b.p, b.left), NULL, 0);
            return 0;
        }
        case MGR_DICT_GET: {
            fetch_ctx f = {.obj = d, .key = b.p, .klen = b.left};
            mgr_reply_fetch(s, c, id, UINT64_MAX, dict_fetch, &f);
            return 0;
        }
        case MGR_DICT_DEL:
            mgr_reply(c, id, mproc_dict_del(d, b.p, b.left), NULL, 0);
            return 0;
        case MGR_DICT_CONTAINS:
            mgr_reply(c, id, mproc_dict_contains(d, b.p, b.left), NULL, 0);
            return 0;
        case MGR_DICT_LEN: {
            int r = mproc_dict_len(d, &n);
            unsigned char out[8];
            mgr_put64(out, n);
            mgr_reply(c, id, r, out, r == 0 ? 8 : 0);
            return 0;
        }
        case MGR_DICT_CLEAR:
            mgr_reply(c, id, mproc_dict_clear(d), NULL, 0);
            return 0;
        case MGR_DICT_SET_MANY:
            set_many(c, d, id, &b);
            return 0;
        case MGR_DICT_GET_MANY:
            get_many(s, c, d, id, &b);
            return 0;
        case MGR_DICT_ITEMS:
            items(s, c, d, id, &b);
            return 0;
        }
        return -ENOSYS;
    }
    if (h->op < MGR_LIST_APPEND || h->op > MGR_LIST_CLEAR || o->kind != MGR_LIST) return -ENOSYS;
    mproc_list *l = o->ptr;
    switch (h->op) {
    case MGR_LIST_APPEND:
        mgr_reply(c, id, mproc_list_append(l, b.p, b.left), NULL, 0);
        return 0;
    case MGR_LIST_LEN: {
        int r = mproc_list_len(l, &n);
        unsigned char out[8];
        mgr_put64(out, n);
        mgr_reply(c, id, r, out, r == 0 ? 8 : 0);
        return 0;
    }
    case MGR_LIST_CLEAR:
        mgr_reply(c, id, mproc_list_clear(l), NULL, 0);
        return 0;
    }
    ptrdiff_t index = (ptrdiff_t)(int64_t)rd64(&b);
    if (b.bad) return -ENOSYS;
    switch (h->op) {
    case MGR_LIST_INSERT:
        mgr_reply(c, id, mproc_list_insert(l, index, b.p, b.left), NULL, 0);
        return 0;
    case MGR_LIST_SET:
        mgr_reply(c, id, mproc_list_set(l, index, b.p, b.left), NULL, 0);
        return 0;
    case MGR_LIST_GET: {
        fetch_ctx f = {.obj = l, .index = index};
        mgr_reply_fetch(s, c, id, UINT64_MAX, list_fetch, &f);
        return 0;
    }
    case MGR_LIST_POP: {
        uint64_t cap = rd64(&b);
        if (b.bad) return -ENOSYS;
        fetch_ctx f = {.obj = l, .index = index};
        mgr_reply_fetch(s, c, id, cap, list_pop_fetch, &f);
        return 0;
    }
    }
    return -ENOSYS;
}
