/* The pickle reader (pickle.h, docs/pickle.md). The reader is an interpreter of the
 * pickle machine with a closed opcode set and a closed set of globals: it builds nodes, it never
 * calls anything. Every length is checked against what is left of the input, and every count
 * against the limits, before the allocation it would cause. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/common.h"

#include "channel/pickle_impl.h"

/* Code points of UTF-8 s (valid) as latin-1 bytes, for _codecs.encode(s, "latin1"); false if one
 * is above 255. out has room for n bytes. */
static bool utf8_to_latin1(const unsigned char *s, size_t n, unsigned char *out, size_t *outn)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80)
            out[o++] = s[i++];
        else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < n) {
            out[o++] = (unsigned char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3f));
            i += 2;
        } else
            return false;
    }
    *outn = o;
    return true;
}

/* ---- the globals the reader knows ---- */

enum {
    G_CLASS = 1,
    G_CODECS_ENCODE,
    G_BYTES,
    G_BYTEARRAY,
    G_SET,
    G_FROZENSET,
    G_LIST,
    G_RECONSTRUCTOR,
    G_OBJECT
};

/* Builtin exceptions a manager may raise at its clients, and the ones a method may. */
static const char *const exceptions[] = {"ArithmeticError",
                                         "AssertionError",
                                         "AttributeError",
                                         "BaseException",
                                         "BlockingIOError",
                                         "BrokenPipeError",
                                         "BufferError",
                                         "ChildProcessError",
                                         "ConnectionAbortedError",
                                         "ConnectionError",
                                         "ConnectionRefusedError",
                                         "ConnectionResetError",
                                         "EOFError",
                                         "EnvironmentError",
                                         "Exception",
                                         "FileExistsError",
                                         "FileNotFoundError",
                                         "FloatingPointError",
                                         "IOError",
                                         "ImportError",
                                         "IndexError",
                                         "InterruptedError",
                                         "IsADirectoryError",
                                         "KeyError",
                                         "KeyboardInterrupt",
                                         "LookupError",
                                         "MemoryError",
                                         "ModuleNotFoundError",
                                         "NameError",
                                         "NotADirectoryError",
                                         "NotImplementedError",
                                         "OSError",
                                         "OverflowError",
                                         "PermissionError",
                                         "ProcessLookupError",
                                         "RecursionError",
                                         "ReferenceError",
                                         "RuntimeError",
                                         "StopIteration",
                                         "SystemError",
                                         "TimeoutError",
                                         "TypeError",
                                         "UnboundLocalError",
                                         "UnicodeError",
                                         "ValueError",
                                         "ZeroDivisionError"};

static const struct {
    const char *module, *name;
    int what;
} known[] = {
    {"builtins", "bytes", G_BYTES},
    {"builtins", "bytearray", G_BYTEARRAY},
    {"builtins", "set", G_SET},
    {"builtins", "frozenset", G_FROZENSET},
    {"builtins", "list", G_LIST}, /* how multiprocessing sends dict views: list(items) */
    {"builtins", "object", G_OBJECT},
    {"_codecs", "encode", G_CODECS_ENCODE},
    {"copyreg", "_reconstructor", G_RECONSTRUCTOR},
    {"multiprocessing.managers", "Token", G_CLASS},
    {"multiprocessing.managers", "RemoteError", G_CLASS},
    {"_queue", "Empty", G_CLASS},
    {"queue", "Empty", G_CLASS},
    {"queue", "Full", G_CLASS},
};

/* What module.name is to the reader (0: not allowed). Python 2 names (protocol 2 pickles made
 * with fix_imports) are mapped first, as Python's unpickler does. */
static int global_kind(const mproc__pk *g)
{
    const char *m = g->u.g.module, *n = g->u.g.name;
    if (strcmp(m, "builtins") == 0)
        for (size_t i = 0; i < sizeof exceptions / sizeof *exceptions; i++)
            if (strcmp(n, exceptions[i]) == 0) return G_CLASS;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(m, known[i].module) == 0 && strcmp(n, known[i].name) == 0) return known[i].what;
    return 0;
}

static const char *py3_module(const char *m)
{
    if (strcmp(m, "__builtin__") == 0 || strcmp(m, "exceptions") == 0) return "builtins";
    if (strcmp(m, "copy_reg") == 0) return "copyreg";
    if (strcmp(m, "Queue") == 0) return "queue";
    return m;
}

/* ---- the reader ---- */

typedef struct {
    const unsigned char *start, *p, *end;
    mproc__pickle_limits lim;
    mproc__pk_doc *d;
    mproc__pk **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    mproc__pk **memo;
    size_t memo_cap, memo_len;
    size_t items; /* charged against lim.max_items */
} reader;

#define BAD MPROC_EPROTO
#define TRY(x)                                                                                     \
    do {                                                                                           \
        int r_ = (x);                                                                              \
        if (r_ < 0) return r_;                                                                     \
    } while (0)

static int charge(reader *r, size_t n)
{
    if (n > r->lim.max_items - r->items) return BAD;
    r->items += n;
    return 0;
}

static int take(reader *r, size_t n, const unsigned char **out)
{
    if ((size_t)(r->end - r->p) < n) return BAD;
    *out = r->p;
    r->p += n;
    return 0;
}

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int take_len(reader *r, int width, size_t *len)
{
    const unsigned char *p;
    TRY(take(r, (size_t)width, &p));
    uint64_t v = le(p, width);
    if (v > (uint64_t)(r->end - r->p)) return BAD; /* longer than what is left: refused unread */
    *len = (size_t)v;
    return 0;
}

static mproc__pk *rnode(reader *r, int kind)
{
    return charge(r, 1) == 0 ? mproc__pk_node(r->d, kind) : NULL;
}

/* Map a failed constructor to its code: the item limit or malloc. */
static int fail_code(reader *r)
{
    return r->items >= r->lim.max_items ? BAD : -ENOMEM;
}

static int push(reader *r, mproc__pk *v)
{
    if (!v) return fail_code(r);
    if (r->sn == r->scap) {
        TRY(charge(r, r->scap ? r->scap : 16));
        size_t cap = r->scap ? r->scap * 2 : 16;
        mproc__pk **n = realloc(r->stack, cap * sizeof *n);
        if (!n) return -ENOMEM;
        r->stack = n;
        r->scap = cap;
    }
    r->stack[r->sn++] = v;
    return 0;
}

static size_t fence(const reader *r)
{
    return r->mn ? r->marks[r->mn - 1] : 0;
}

static int pop(reader *r, mproc__pk **out)
{
    if (r->sn <= fence(r)) return BAD;
    *out = r->stack[--r->sn];
    return 0;
}

static int peek(reader *r, mproc__pk **out)
{
    if (r->sn <= fence(r)) return BAD;
    *out = r->stack[r->sn - 1];
    return 0;
}

/* Pop the top mark: its items are stack[*k .. sn). */
static int pop_mark(reader *r, size_t *k)
{
    if (r->mn == 0) return BAD;
    *k = r->marks[--r->mn];
    return 0;
}

static int push_bytes(reader *r, int kind, int width)
{
    size_t n;
    const unsigned char *p;
    TRY(take_len(r, width, &n));
    TRY(take(r, n, &p));
    if (kind == MPROC__PK_STR && !mproc__pk_utf8_ok(p, n)) return BAD;
    TRY(charge(r, 1 + n / 64));
    return push(r, mproc__pk_bytes(r->d, kind, p, n));
}

/* A new container of kind holding stack[k..sn), replacing them on the stack. */
static int collect(reader *r, int kind, size_t k)
{
    size_t n = r->sn - k;
    if (kind == MPROC__PK_DICT && n % 2) return BAD;
    mproc__pk *c = rnode(r, kind);
    if (!c) return fail_code(r);
    if (n) {
        TRY(charge(r, n));
        TRY(mproc__pk_add_slots(c, n));
        memcpy(c->u.items, r->stack + k, n * sizeof *c->u.items);
        c->n = kind == MPROC__PK_DICT ? n / 2 : n;
    }
    r->sn = k;
    return push(r, c);
}

static bool hashable(const mproc__pk *v)
{
    return v->kind != MPROC__PK_LIST && v->kind != MPROC__PK_DICT && v->kind != MPROC__PK_SET &&
           v->kind != MPROC__PK_BYTEARRAY;
}

/* Add stack[k..sn) to c (the list, dict or set below the mark), as APPENDS, SETITEMS and ADDITEMS
 * do; the items leave the stack. */
static int extend(reader *r, int kind, size_t k)
{
    if (k == 0 || k - 1 < fence(r)) return BAD;
    mproc__pk *c = r->stack[k - 1];
    size_t n = r->sn - k;
    if (c->kind != kind || (kind == MPROC__PK_DICT && n % 2)) return BAD;
    TRY(charge(r, n));
    TRY(mproc__pk_add_slots(c, n));
    for (size_t i = 0; i < n; i++) {
        mproc__pk *v = r->stack[k + i];
        if ((kind == MPROC__PK_SET || (kind == MPROC__PK_DICT && i % 2 == 0)) && !hashable(v))
            return BAD;
        size_t have = kind == MPROC__PK_DICT ? 2 * c->n + (i % 2) : c->n;
        c->u.items[have] = v;
        if (kind != MPROC__PK_DICT || i % 2) c->n++;
    }
    r->sn = k;
    return 0;
}

static int memo_put(reader *r, uint64_t idx)
{
    mproc__pk *v;
    TRY(peek(r, &v));
    /* An index is bounded by the limit and by the input read so far (a pickler numbers its memo
     * from 0, one entry per op), so the table never outgrows the input that asks for it. */
    if (idx >= r->lim.max_memo || idx >= (uint64_t)(r->p - r->start)) return BAD;
    if (idx >= r->memo_cap) {
        size_t cap = r->memo_cap ? r->memo_cap : 16;
        while (cap <= idx)
            cap *= 2;
        mproc__pk **m = realloc(r->memo, cap * sizeof *m);
        if (!m) return -ENOMEM;
        memset(m + r->memo_cap, 0, (cap - r->memo_cap) * sizeof *m);
        r->memo = m;
        r->memo_cap = cap;
    }
    if (!r->memo[idx]) r->memo_len++;
    r->memo[idx] = v;
    return 0;
}

static int memo_get(reader *r, uint64_t idx)
{
    if (idx >= r->memo_cap || !r->memo[idx]) return BAD;
    return push(r, r->memo[idx]);
}

/* The decimal argument of the text ops PUT and GET ("123\n"). */
static int take_decimal(reader *r, uint64_t *out)
{
    uint64_t v = 0;
    size_t digits = 0;
    for (;;) {
        const unsigned char *p;
        TRY(take(r, 1, &p));
        if (*p == '\n') break;
        if (*p < '0' || *p > '9' || ++digits > 18) return BAD;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (!digits) return BAD;
    *out = v;
    return 0;
}

static int take_line(reader *r, char *buf, size_t cap)
{
    for (size_t i = 0;; i++) {
        const unsigned char *p;
        TRY(take(r, 1, &p));
        if (*p == '\n') {
            buf[i] = '\0';
            return 0;
        }
        if (i + 1 >= cap || *p < 0x20 || *p >= 0x7f) return BAD;
        buf[i] = (char)*p;
    }
}

static int push_global(reader *r, const char *module, const char *name)
{
    TRY(charge(r, 1));
    mproc__pk *g = mproc__pk_global(r->d, py3_module(module), name);
    if (!g) return -ENOMEM;
    if (!global_kind(g)) return BAD;
    return push(r, g);
}

static bool is_latin1_name(const mproc__pk *v)
{
    return mproc__pk_is_str(v, "latin1") || mproc__pk_is_str(v, "latin-1");
}

/* A bytes-like value from what CPython's reductions pass: bytes or bytearray as they are, or
 * (text, "latin1"), whose code points are the bytes. */
static int push_bytes_from(reader *r, int kind, mproc__pk **a, size_t n)
{
    if (n == 0) return push(r, mproc__pk_bytes(r->d, kind, "", 0));
    if (n == 1 && (a[0]->kind == MPROC__PK_BYTES || a[0]->kind == MPROC__PK_BYTEARRAY)) {
        TRY(charge(r, 1 + a[0]->n / 64));
        return push(r, mproc__pk_bytes(r->d, kind, a[0]->u.bytes, a[0]->n));
    }
    if (n != 2 || a[0]->kind != MPROC__PK_STR || !is_latin1_name(a[1])) return BAD;
    TRY(charge(r, 1 + a[0]->n / 64));
    unsigned char *tmp = malloc(a[0]->n + 1);
    if (!tmp) return -ENOMEM;
    size_t len;
    int rc = BAD;
    if (utf8_to_latin1((const unsigned char *)a[0]->u.bytes, a[0]->n, tmp, &len))
        rc = push(r, mproc__pk_bytes(r->d, kind, tmp, len));
    free(tmp);
    return rc;
}

/* set(iterable) / frozenset(iterable) (protocols 2 and 3), list(iterable) (dict views). */
static int push_set_from(reader *r, int kind, mproc__pk **a, size_t n)
{
    if (n > 1 || (n == 1 && a[0]->kind != MPROC__PK_LIST && a[0]->kind != MPROC__PK_TUPLE))
        return BAD;
    mproc__pk *s = rnode(r, kind);
    if (!s) return fail_code(r);
    if (n == 1) {
        TRY(charge(r, a[0]->n));
        TRY(mproc__pk_add_slots(s, a[0]->n));
        for (size_t i = 0; i < a[0]->n; i++) {
            if (kind != MPROC__PK_LIST && !hashable(a[0]->u.items[i])) return BAD;
            s->u.items[s->n++] = a[0]->u.items[i];
        }
    }
    return push(r, s);
}

static int push_object(reader *r, int how, mproc__pk *cls, mproc__pk *args, mproc__pk *kwargs)
{
    TRY(charge(r, 1));
    mproc__pk *o = mproc__pk_object(r->d, how, cls, args, NULL);
    if (o) o->u.o.kwargs = kwargs;
    return push(r, o);
}

/* callable(*args) for the allowlisted callables: the reductions CPython uses for bytes,
 * bytearray and sets become those values; classes become OBJECT nodes. Nothing is called. */
static int reduce(reader *r, mproc__pk *f, mproc__pk *args)
{
    if (f->kind != MPROC__PK_GLOBAL || args->kind != MPROC__PK_TUPLE) return BAD;
    mproc__pk **a = args->u.items;
    size_t n = args->n;
    switch (global_kind(f)) {
    case G_CLASS:
        return push_object(r, MPROC__PK_REDUCE, f, args, NULL);
    case G_CODECS_ENCODE:
        return n == 2 ? push_bytes_from(r, MPROC__PK_BYTES, a, n) : BAD;
    case G_BYTES:
        return n < 2 ? push_bytes_from(r, MPROC__PK_BYTES, a, n) : BAD;
    case G_BYTEARRAY:
        return push_bytes_from(r, MPROC__PK_BYTEARRAY, a, n);
    case G_SET:
        return push_set_from(r, MPROC__PK_SET, a, n);
    case G_FROZENSET:
        return push_set_from(r, MPROC__PK_FROZENSET, a, n);
    case G_LIST:
        return push_set_from(r, MPROC__PK_LIST, a, n);
    case G_RECONSTRUCTOR: /* copyreg._reconstructor(cls, object, None): cls.__new__(cls) */
        if (n != 3 || a[0]->kind != MPROC__PK_GLOBAL || global_kind(a[0]) != G_CLASS ||
            a[1]->kind != MPROC__PK_GLOBAL || global_kind(a[1]) != G_OBJECT ||
            a[2]->kind != MPROC__PK_NONE)
            return BAD;
        return push_object(r, MPROC__PK_NEWOBJ, a[0], NULL, NULL);
    default:
        return BAD;
    }
}

static int newobj(reader *r, bool ex)
{
    mproc__pk *cls, *args, *kwargs = NULL;
    if (ex) TRY(pop(r, &kwargs));
    TRY(pop(r, &args));
    TRY(pop(r, &cls));
    if (cls->kind != MPROC__PK_GLOBAL || global_kind(cls) != G_CLASS ||
        args->kind != MPROC__PK_TUPLE || (kwargs && kwargs->kind != MPROC__PK_DICT))
        return BAD;
    if (kwargs && kwargs->n == 0) kwargs = NULL;
    return push_object(r, MPROC__PK_NEWOBJ, cls, args, kwargs);
}

static int push_tuple_top(reader *r, size_t n)
{
    if (r->sn - fence(r) < n) return BAD;
    return collect(r, MPROC__PK_TUPLE, r->sn - n);
}

static int push_int(reader *r, int64_t i)
{
    TRY(charge(r, 1));
    return push(r, mproc__pk_int(r->d, i));
}

/* One opcode. 1 after STOP. */
static int step(reader *r, mproc__pk **root)
{
    const unsigned char *p;
    mproc__pk *v, *w, *t;
    size_t k, n;
    uint64_t idx;
    TRY(take(r, 1, &p));
    switch (*p) {
    case OP_PROTO:
        TRY(take(r, 1, &p));
        return *p <= 5 ? 0 : BAD;
    case OP_FRAME: /* a prefetch hint: only its length is checked */
        return take_len(r, 8, &n);
    case OP_STOP:
        TRY(pop(r, root));
        return 1;
    case OP_NONE:
        return push(r, rnode(r, MPROC__PK_NONE));
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        TRY(charge(r, 1));
        return push(r, mproc__pk_bool(r->d, *p == OP_NEWTRUE));
    case OP_BININT:
        TRY(take(r, 4, &p));
        return push_int(r, (int32_t)(uint32_t)le(p, 4));
    case OP_BININT1:
        TRY(take(r, 1, &p));
        return push_int(r, *p);
    case OP_BININT2:
        TRY(take(r, 2, &p));
        return push_int(r, (int64_t)le(p, 2));
    case OP_LONG1:
    case OP_LONG4:
        TRY(take_len(r, *p == OP_LONG1 ? 1 : 4, &n));
        if (n > INT32_MAX) return BAD; /* LONG4's length is signed */
        TRY(take(r, n, &p));
        TRY(charge(r, 1 + n / 64));
        return push(r, mproc__pk_bigint(r->d, p, n));
    case OP_BINFLOAT: {
        TRY(take(r, 8, &p));
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = (u << 8) | p[i];
        double f;
        memcpy(&f, &u, sizeof f);
        TRY(charge(r, 1));
        return push(r, mproc__pk_float(r->d, f));
    }
    case OP_SHORT_BINUNICODE:
        return push_bytes(r, MPROC__PK_STR, 1);
    case OP_BINUNICODE:
        return push_bytes(r, MPROC__PK_STR, 4);
    case OP_BINUNICODE8:
        return push_bytes(r, MPROC__PK_STR, 8);
    case OP_SHORT_BINBYTES:
        return push_bytes(r, MPROC__PK_BYTES, 1);
    case OP_BINBYTES:
        return push_bytes(r, MPROC__PK_BYTES, 4);
    case OP_BINBYTES8:
        return push_bytes(r, MPROC__PK_BYTES, 8);
    case OP_BYTEARRAY8:
        return push_bytes(r, MPROC__PK_BYTEARRAY, 8);
    case OP_EMPTY_TUPLE:
        return push_tuple_top(r, 0);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3:
        return push_tuple_top(r, (size_t)(*p - OP_TUPLE1 + 1));
    case OP_TUPLE:
        TRY(pop_mark(r, &k));
        return collect(r, MPROC__PK_TUPLE, k);
    case OP_EMPTY_LIST:
        return push(r, rnode(r, MPROC__PK_LIST));
    case OP_LIST:
        TRY(pop_mark(r, &k));
        return collect(r, MPROC__PK_LIST, k);
    case OP_EMPTY_DICT:
        return push(r, rnode(r, MPROC__PK_DICT));
    case OP_DICT:
        TRY(pop_mark(r, &k));
        for (size_t i = k; i < r->sn; i += 2)
            if (!hashable(r->stack[i])) return BAD;
        return collect(r, MPROC__PK_DICT, k);
    case OP_EMPTY_SET:
        return push(r, rnode(r, MPROC__PK_SET));
    case OP_FROZENSET:
        TRY(pop_mark(r, &k));
        for (size_t i = k; i < r->sn; i++)
            if (!hashable(r->stack[i])) return BAD;
        return collect(r, MPROC__PK_FROZENSET, k);
    case OP_APPEND:
    case OP_SETITEM:
        n = *p == OP_APPEND ? 1 : 2;
        if (r->sn - fence(r) < n + 1) return BAD;
        return extend(r, *p == OP_APPEND ? MPROC__PK_LIST : MPROC__PK_DICT, r->sn - n);
    case OP_APPENDS:
        TRY(pop_mark(r, &k));
        return extend(r, MPROC__PK_LIST, k);
    case OP_SETITEMS:
        TRY(pop_mark(r, &k));
        return extend(r, MPROC__PK_DICT, k);
    case OP_ADDITEMS:
        TRY(pop_mark(r, &k));
        return extend(r, MPROC__PK_SET, k);
    case OP_MARK:
        if (r->mn >= r->lim.max_depth) return BAD;
        if (r->mn == r->mcap) {
            size_t cap = r->mcap ? r->mcap * 2 : 16;
            size_t *m = realloc(r->marks, cap * sizeof *m);
            if (!m) return -ENOMEM;
            r->marks = m;
            r->mcap = cap;
        }
        r->marks[r->mn++] = r->sn;
        return 0;
    case OP_POP:
        if (r->mn && r->marks[r->mn - 1] == r->sn) {
            r->mn--;
            return 0;
        }
        return pop(r, &v);
    case OP_POP_MARK:
        TRY(pop_mark(r, &k));
        r->sn = k;
        return 0;
    case OP_DUP:
        TRY(peek(r, &v));
        return push(r, v);
    case OP_PUT:
        TRY(take_decimal(r, &idx));
        return memo_put(r, idx);
    case OP_BINPUT:
        TRY(take(r, 1, &p));
        return memo_put(r, *p);
    case OP_LONG_BINPUT:
        TRY(take(r, 4, &p));
        return memo_put(r, le(p, 4));
    case OP_MEMOIZE:
        return memo_put(r, r->memo_len);
    case OP_GET:
        TRY(take_decimal(r, &idx));
        return memo_get(r, idx);
    case OP_BINGET:
        TRY(take(r, 1, &p));
        return memo_get(r, *p);
    case OP_LONG_BINGET:
        TRY(take(r, 4, &p));
        return memo_get(r, le(p, 4));
    case OP_GLOBAL: {
        char module[128], name[128];
        TRY(take_line(r, module, sizeof module));
        TRY(take_line(r, name, sizeof name));
        return push_global(r, module, name);
    }
    case OP_STACK_GLOBAL:
        TRY(pop(r, &w));
        TRY(pop(r, &v));
        if (v->kind != MPROC__PK_STR || w->kind != MPROC__PK_STR || v->n >= 128 || w->n >= 128 ||
            memchr(v->u.bytes, 0, v->n) || memchr(w->u.bytes, 0, w->n))
            return BAD;
        return push_global(r, v->u.bytes, w->u.bytes);
    case OP_REDUCE:
        TRY(pop(r, &w));
        TRY(pop(r, &v));
        return reduce(r, v, w);
    case OP_NEWOBJ:
    case OP_NEWOBJ_EX:
        return newobj(r, *p == OP_NEWOBJ_EX);
    case OP_BUILD:
        TRY(pop(r, &w));
        TRY(peek(r, &t));
        if (t->kind != MPROC__PK_OBJECT) return BAD;
        t->u.o.state = w;
        return 0;
    default: /* PERSID, EXT*, INST, OBJ, the protocol 0/1 text ops, out-of-band buffers */
        return BAD;
    }
}

/* The children of v, one at a time (NULL past the last). */
static mproc__pk *child(const mproc__pk *v, size_t i)
{
    if (mproc__pk_has_items(v->kind)) {
        size_t n = v->kind == MPROC__PK_DICT ? 2 * v->n : v->n;
        return i < n ? v->u.items[i] : NULL;
    }
    if (v->kind != MPROC__PK_OBJECT) return NULL;
    mproc__pk *c[4] = {v->u.o.callable, v->u.o.args, v->u.o.kwargs, v->u.o.state};
    for (size_t j = 0; j < 4; j++)
        if (c[j] && i-- == 0) return c[j];
    return NULL;
}

/* The memo makes a DAG; refuse a cycle or a path deeper than max_depth (consumers recurse), in
 * one pass over the graph with an explicit stack no deeper than the limit. */
static int check_graph(reader *r, mproc__pk *root)
{
    struct frame {
        mproc__pk *v;
        size_t next;
    } *st = malloc((r->lim.max_depth + 1) * sizeof *st);
    if (!st) return -ENOMEM;
    for (size_t i = 0; i < r->d->n; i++)
        r->d->nodes[i]->mark = 0;
    size_t sp = 0;
    int rc = 0;
    st[sp++] = (struct frame){root, 0};
    root->mark = 1;
    while (sp) {
        struct frame *f = &st[sp - 1];
        mproc__pk *c = child(f->v, f->next++);
        if (!c) {
            f->v->mark = 2;
            sp--;
            if (sp && st[sp - 1].v->height < f->v->height + 1)
                st[sp - 1].v->height = f->v->height + 1;
            continue;
        }
        if (c->mark == 1) {
            rc = BAD; /* a cycle */
            break;
        }
        if (c->mark == 2) {
            if (f->v->height < c->height + 1) f->v->height = c->height + 1;
            continue;
        }
        if (sp > r->lim.max_depth) {
            rc = BAD;
            break;
        }
        c->mark = 1;
        c->height = 0;
        st[sp++] = (struct frame){c, 0};
    }
    free(st);
    /* heights propagate from finished and shared children alike: the root's is the longest path */
    return rc == 0 && root->height > r->lim.max_depth ? BAD : rc;
}

int mproc__pickle_read(const void *buf, size_t len, const mproc__pickle_limits *lim,
                       mproc__pk_doc **doc, mproc__pk **root)
{
    if ((!buf && len) || !doc || !root) return -EINVAL;
    *doc = NULL;
    *root = NULL;
    reader r = {.start = buf, .p = buf, .end = (const unsigned char *)buf + len};
    if (lim) r.lim = *lim;
    if (!r.lim.max_input) r.lim.max_input = (size_t)64 << 20;
    if (!r.lim.max_depth) r.lim.max_depth = 512;
    if (!r.lim.max_items) r.lim.max_items = (size_t)4 << 20;
    if (!r.lim.max_memo) r.lim.max_memo = (size_t)1 << 20;
    if (len > r.lim.max_input || len == 0) return BAD;
    int rc = mproc__pk_doc_new(&r.d);
    mproc__pk *top = NULL;
    while (rc == 0)
        rc = step(&r, &top);
    if (rc == 1) rc = check_graph(&r, top);
    free(r.stack);
    free(r.marks);
    free(r.memo);
    if (rc < 0) {
        mproc__pk_doc_free(r.d);
        return rc;
    }
    *doc = r.d;
    *root = top;
    return 0;
}
