/* The pickle writer (pickle.h): protocol 4, every container memoized (shared nodes stay shared,
 * a DAG never grows exponentially, a list may hold itself). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/common.h"

#include "channel/pickle_impl.h"

/* ---- the writer ---- */

typedef struct {
    unsigned char *buf;
    size_t n, cap;
    uint32_t gen;
    uint32_t memo_next;
    int err;
} writer;

static void put(writer *w, const void *p, size_t n)
{
    if (w->err) return;
    if (n > w->cap - w->n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->n < n) {
            if (cap > SIZE_MAX / 2) {
                w->err = -ENOMEM;
                return;
            }
            cap *= 2;
        }
        unsigned char *b = realloc(w->buf, cap);
        if (!b) {
            w->err = -ENOMEM;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void op(writer *w, unsigned char o)
{
    put(w, &o, 1);
}

static void put_le(writer *w, uint64_t v, int width)
{
    unsigned char b[8];
    for (int i = 0; i < width; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, (size_t)width);
}

/* An op with a 1-, 4- or 8-byte length, then the bytes. */
static void put_sized(writer *w, unsigned char op1, unsigned char op4, unsigned char op8,
                      const void *p, size_t n)
{
    if (n < 256 && op1) {
        op(w, op1);
        put_le(w, n, 1);
    } else if (n <= UINT32_MAX) {
        op(w, op4);
        put_le(w, n, 4);
    } else {
        op(w, op8);
        put_le(w, n, 8);
    }
    put(w, p, n);
}

static void memoize(writer *w, mproc__pk *v)
{
    op(w, OP_MEMOIZE);
    v->wmemo = ++w->memo_next;
}

static void put_int(writer *w, int64_t i)
{
    if (i >= 0 && i < 256) {
        op(w, OP_BININT1);
        put_le(w, (uint64_t)i, 1);
    } else if (i >= 0 && i < 65536) {
        op(w, OP_BININT2);
        put_le(w, (uint64_t)i, 2);
    } else if (i >= INT32_MIN && i <= INT32_MAX) {
        op(w, OP_BININT);
        put_le(w, (uint64_t)i, 4);
    } else {
        /* the shortest two's complement that keeps the sign */
        int n = 8;
        while (n > 1) {
            int64_t lim = (int64_t)1 << (8 * (n - 1) - 1);
            if (i >= -lim && i < lim)
                n--;
            else
                break;
        }
        op(w, OP_LONG1);
        put_le(w, (uint64_t)n, 1);
        put_le(w, (uint64_t)i, n);
    }
}

static void put_global(writer *w, const mproc__pk *g)
{
    const char *m = g->u.g.module, *n = g->u.g.name;
    if (!m || !n || strchr(m, '\n') || strchr(n, '\n') || !*m || !*n) {
        w->err = -EINVAL;
        return;
    }
    op(w, OP_GLOBAL);
    put(w, m, strlen(m));
    op(w, '\n');
    put(w, n, strlen(n));
    op(w, '\n');
}

static void put_value(writer *w, mproc__pk *v, int depth);

static void put_items(writer *w, mproc__pk *v, size_t from, size_t n, int depth)
{
    for (size_t i = from; i < n && !w->err; i++)
        put_value(w, v->u.items[i], depth + 1);
}

static void put_value(writer *w, mproc__pk *v, int depth)
{
    if (w->err) return;
    if (!v || depth > MPROC__PK_DEPTH_MAX) {
        w->err = -EINVAL;
        return;
    }
    bool memoized =
        mproc__pk_has_items(v->kind) || v->kind == MPROC__PK_GLOBAL || v->kind == MPROC__PK_OBJECT;
    if (memoized && v->wgen == w->gen) {
        if (!v->wmemo) { /* reached again while its items are written: a cycle through a tuple */
            w->err = -EINVAL;
            return;
        }
        uint32_t idx = v->wmemo - 1;
        if (idx < 256) {
            op(w, OP_BINGET);
            put_le(w, idx, 1);
        } else {
            op(w, OP_LONG_BINGET);
            put_le(w, idx, 4);
        }
        return;
    }
    if (memoized) {
        v->wgen = w->gen;
        v->wmemo = 0;
    }
    switch (v->kind) {
    case MPROC__PK_NONE:
        op(w, OP_NONE);
        break;
    case MPROC__PK_BOOL:
        op(w, v->u.b ? OP_NEWTRUE : OP_NEWFALSE);
        break;
    case MPROC__PK_INT:
        put_int(w, v->u.i);
        break;
    case MPROC__PK_BIGINT:
        put_sized(w, OP_LONG1, OP_LONG4, 0, v->u.bytes, v->n);
        if (v->n > INT32_MAX) w->err = -EINVAL;
        break;
    case MPROC__PK_FLOAT: {
        uint64_t u;
        memcpy(&u, &v->u.f, sizeof u);
        unsigned char b[8];
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(u >> (56 - 8 * i));
        op(w, OP_BINFLOAT);
        put(w, b, 8);
        break;
    }
    case MPROC__PK_STR:
        if (!mproc__pk_utf8_ok((const unsigned char *)v->u.bytes, v->n)) {
            w->err = -EINVAL;
            return;
        }
        put_sized(w, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8, v->u.bytes, v->n);
        break;
    case MPROC__PK_BYTES:
        put_sized(w, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, v->u.bytes, v->n);
        break;
    case MPROC__PK_BYTEARRAY: /* protocol 4 has no opcode: bytearray(b"...") */
        put_global(w, &(mproc__pk){.kind = MPROC__PK_GLOBAL,
                                   .u.g = {(char *)"builtins", (char *)"bytearray"}});
        put_sized(w, OP_SHORT_BINBYTES, OP_BINBYTES, OP_BINBYTES8, v->u.bytes, v->n);
        op(w, OP_TUPLE1);
        op(w, OP_REDUCE);
        break;
    case MPROC__PK_TUPLE:
        if (v->n == 0) {
            op(w, OP_EMPTY_TUPLE);
            return; /* () is a singleton: nothing to memoize */
        }
        if (v->n > 3) op(w, OP_MARK);
        put_items(w, v, 0, v->n, depth);
        op(w, v->n > 3 ? OP_TUPLE : (unsigned char)(OP_TUPLE1 + v->n - 1));
        memoize(w, v);
        break;
    case MPROC__PK_FROZENSET:
        op(w, OP_MARK);
        put_items(w, v, 0, v->n, depth);
        op(w, OP_FROZENSET);
        memoize(w, v);
        break;
    case MPROC__PK_LIST:
    case MPROC__PK_DICT:
    case MPROC__PK_SET: {
        /* memoized before the items, so a container that holds itself is written as Python does */
        static const unsigned char empty[] = {[MPROC__PK_LIST] = OP_EMPTY_LIST,
                                              [MPROC__PK_DICT] = OP_EMPTY_DICT,
                                              [MPROC__PK_SET] = OP_EMPTY_SET};
        static const unsigned char fill[] = {[MPROC__PK_LIST] = OP_APPENDS,
                                             [MPROC__PK_DICT] = OP_SETITEMS,
                                             [MPROC__PK_SET] = OP_ADDITEMS};
        op(w, empty[v->kind]);
        memoize(w, v);
        size_t n = v->kind == MPROC__PK_DICT ? 2 * v->n : v->n;
        if (n) {
            op(w, OP_MARK);
            put_items(w, v, 0, n, depth);
            op(w, fill[v->kind]);
        }
        break;
    }
    case MPROC__PK_GLOBAL:
        put_global(w, v);
        memoize(w, v);
        break;
    case MPROC__PK_OBJECT: {
        const mproc__pk *o = v;
        if (!o->u.o.callable || o->u.o.callable->kind != MPROC__PK_GLOBAL || !o->u.o.args ||
            o->u.o.args->kind != MPROC__PK_TUPLE ||
            (o->u.o.kwargs && o->u.o.kwargs->kind != MPROC__PK_DICT)) {
            w->err = -EINVAL;
            return;
        }
        put_value(w, o->u.o.callable, depth + 1);
        put_value(w, o->u.o.args, depth + 1);
        if (o->how == MPROC__PK_REDUCE)
            op(w, OP_REDUCE);
        else if (o->u.o.kwargs) {
            put_value(w, o->u.o.kwargs, depth + 1);
            op(w, OP_NEWOBJ_EX);
        } else
            op(w, OP_NEWOBJ);
        memoize(w, v);
        if (o->u.o.state) {
            put_value(w, o->u.o.state, depth + 1);
            op(w, OP_BUILD);
        }
        break;
    }
    default:
        w->err = -EINVAL;
    }
}

int mproc__pickle_write(const mproc__pk *v, void **out, size_t *len)
{
    if (!v || !out || !len) return -EINVAL;
    /* each pass has its own generation, so marks left by an earlier pass mean nothing */
    static _Atomic uint32_t generation;
    writer w = {.gen = ++generation};
    if (w.gen == 0) w.gen = ++generation;
    static const unsigned char proto[] = {OP_PROTO, 4};
    put(&w, proto, sizeof proto);
    put_value(&w, (mproc__pk *)v, 0);
    op(&w, OP_STOP);
    if (w.err) {
        free(w.buf);
        return w.err;
    }
    *out = w.buf;
    *len = w.n;
    return 0;
}
