/* The public helpers for Python values as bytes (mproc_pyvalue_*), and the mapping between C bytes
 * and pickled values that the Python-dialect proxies use (pyvalue.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manager/pyvalue.h"
#include "mproc/manager.h"

static bool looks_pickled(const void *p, size_t len)
{
    return len >= 2 && ((const unsigned char *)p)[0] == 0x80;
}

mproc__pk *mgr_pyv_node(mproc__pk_doc *d, const void *p, size_t len, mproc__pk_doc **hold)
{
    *hold = NULL;
    if (looks_pickled(p, len)) {
        mproc__pk *root;
        mproc__pickle_limits lim = {.max_input = len};
        if (mproc__pickle_read(p, len, &lim, hold, &root) == 0) return root;
        *hold = NULL; /* not a pickle after all: the bytes themselves */
    }
    return mproc__pk_bytes(d, MPROC__PK_BYTES, p, len);
}

int mgr_pyv_bytes(const mproc__pk *v, void **owned, const void **data, size_t *len)
{
    *owned = NULL;
    if (v->kind == MPROC__PK_BYTES && !looks_pickled(v->u.bytes, v->n)) {
        *data = v->u.bytes;
        *len = v->n;
        return 0;
    }
    int r = mproc__pickle_write(v, owned, len);
    if (r < 0) return r;
    *data = *owned;
    return 0;
}

/* ---- the public helpers ---- */

static int encode(mproc__pk_doc *d, mproc__pk *v, void *buf, size_t cap, size_t *len)
{
    void *out = NULL;
    size_t n = 0;
    int r = v ? mproc__pickle_write(v, &out, &n) : -ENOMEM;
    mproc__pk_doc_free(d);
    if (r < 0) return r;
    *len = n;
    if (n > cap)
        r = -EMSGSIZE;
    else
        memcpy(buf, out, n);
    free(out);
    return r;
}

#define NEW_DOC(d)                                                                                 \
    mproc__pk_doc *d;                                                                              \
    if (!len || (!buf && cap)) return -EINVAL;                                                     \
    int r_ = mproc__pk_doc_new(&d);                                                                \
    if (r_ < 0) return r_

int mproc_pyvalue_str(void *buf, size_t cap, const char *s, size_t slen, size_t *len)
{
    if (!s && slen) return -EINVAL;
    NEW_DOC(d);
    return encode(d, mproc__pk_str(d, s ? s : "", slen), buf, cap, len);
}

int mproc_pyvalue_int(void *buf, size_t cap, int64_t v, size_t *len)
{
    NEW_DOC(d);
    return encode(d, mproc__pk_int(d, v), buf, cap, len);
}

int mproc_pyvalue_float(void *buf, size_t cap, double v, size_t *len)
{
    NEW_DOC(d);
    return encode(d, mproc__pk_float(d, v), buf, cap, len);
}

/* The value data is the pickle of, or NULL (*d then NULL too). */
static const mproc__pk *decode(const void *data, size_t len, mproc__pk_doc **d)
{
    *d = NULL;
    mproc__pk *root;
    mproc__pickle_limits lim = {.max_input = len};
    if (!data || !looks_pickled(data, len) || mproc__pickle_read(data, len, &lim, d, &root) < 0)
        return NULL;
    return root;
}

int mproc_pyvalue_get_str(const void *data, size_t len, char *buf, size_t cap, size_t *slen)
{
    if (!slen || (!buf && cap)) return -EINVAL;
    mproc__pk_doc *d;
    const mproc__pk *v = decode(data, len, &d);
    int r = -EINVAL;
    if (v && v->kind == MPROC__PK_STR) {
        *slen = v->n;
        r = v->n + 1 > cap ? -EMSGSIZE : 0;
        if (r == 0) memcpy(buf, v->u.bytes, v->n + 1);
    }
    mproc__pk_doc_free(d);
    return r;
}

int mproc_pyvalue_get_int(const void *data, size_t len, int64_t *out)
{
    if (!out) return -EINVAL;
    mproc__pk_doc *d;
    const mproc__pk *v = decode(data, len, &d);
    int r = -EINVAL;
    if (v && v->kind == MPROC__PK_INT) {
        *out = v->u.i;
        r = 0;
    } else if (v && v->kind == MPROC__PK_BOOL) {
        *out = v->u.b;
        r = 0;
    } else if (v && v->kind == MPROC__PK_BIGINT) {
        r = -ERANGE; /* normalised: a BIGINT never fits int64 */
    }
    mproc__pk_doc_free(d);
    return r;
}

int mproc_pyvalue_get_float(const void *data, size_t len, double *out)
{
    if (!out) return -EINVAL;
    mproc__pk_doc *d;
    const mproc__pk *v = decode(data, len, &d);
    int r = -EINVAL;
    if (v && v->kind == MPROC__PK_FLOAT) {
        *out = v->u.f;
        r = 0;
    } else if (v && v->kind == MPROC__PK_INT) {
        *out = (double)v->u.i;
        r = 0;
    }
    mproc__pk_doc_free(d);
    return r;
}
