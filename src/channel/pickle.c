/* The pickle reader and writer (pickle.h, docs/pickle.md). The reader is an interpreter of the
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

#include "channel/pickle.h"

struct mproc__pk_doc {
    mproc__pk **nodes;
    size_t n, cap;
};

/* ---- documents and nodes ---- */

int mproc__pk_doc_new(mproc__pk_doc **out)
{
    if (!out) return -EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

static bool has_bytes(int kind)
{
    return kind == MPROC__PK_STR || kind == MPROC__PK_BYTES || kind == MPROC__PK_BYTEARRAY ||
           kind == MPROC__PK_BIGINT;
}

static bool has_items(int kind)
{
    return kind == MPROC__PK_TUPLE || kind == MPROC__PK_LIST || kind == MPROC__PK_DICT ||
           kind == MPROC__PK_SET || kind == MPROC__PK_FROZENSET;
}

void mproc__pk_doc_free(mproc__pk_doc *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        mproc__pk *v = d->nodes[i];
        if (has_bytes(v->kind))
            free(v->u.bytes);
        else if (has_items(v->kind))
            free(v->u.items);
        else if (v->kind == MPROC__PK_GLOBAL) {
            free(v->u.g.module);
            free(v->u.g.name);
        }
        free(v);
    }
    free(d->nodes);
    free(d);
}

static mproc__pk *node(mproc__pk_doc *d, int kind)
{
    if (!d) return NULL;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        mproc__pk **n = realloc(d->nodes, cap * sizeof *n);
        if (!n) return NULL;
        d->nodes = n;
        d->cap = cap;
    }
    mproc__pk *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = (uint8_t)kind;
    d->nodes[d->n++] = v;
    return v;
}

mproc__pk *mproc__pk_none(mproc__pk_doc *d)
{
    return node(d, MPROC__PK_NONE);
}

mproc__pk *mproc__pk_bool(mproc__pk_doc *d, bool b)
{
    mproc__pk *v = node(d, MPROC__PK_BOOL);
    if (v) v->u.b = b;
    return v;
}

mproc__pk *mproc__pk_int(mproc__pk_doc *d, int64_t i)
{
    mproc__pk *v = node(d, MPROC__PK_INT);
    if (v) v->u.i = i;
    return v;
}

mproc__pk *mproc__pk_float(mproc__pk_doc *d, double f)
{
    mproc__pk *v = node(d, MPROC__PK_FLOAT);
    if (v) v->u.f = f;
    return v;
}

mproc__pk *mproc__pk_bytes(mproc__pk_doc *d, int kind, const void *p, size_t len)
{
    if (!has_bytes(kind) || (!p && len)) return NULL;
    char *b = malloc(len + 1);
    if (!b) return NULL;
    mproc__pk *v = node(d, kind);
    if (!v) {
        free(b);
        return NULL;
    }
    if (len) memcpy(b, p, len);
    b[len] = '\0';
    v->u.bytes = b;
    v->n = len;
    return v;
}

mproc__pk *mproc__pk_str(mproc__pk_doc *d, const char *s, size_t len)
{
    return mproc__pk_bytes(d, MPROC__PK_STR, s, len);
}

mproc__pk *mproc__pk_cstr(mproc__pk_doc *d, const char *s)
{
    return s ? mproc__pk_str(d, s, strlen(s)) : NULL;
}

/* Little-endian two's complement of len bytes as an int64, if it fits. */
static bool le_fits_i64(const unsigned char *p, size_t len, int64_t *out)
{
    if (len == 0) {
        *out = 0;
        return true;
    }
    bool neg = p[len - 1] & 0x80;
    for (size_t i = 8; i < len; i++)
        if (p[i] != (neg ? 0xff : 0x00)) return false;
    if (len > 8 && ((p[7] & 0x80) != 0) != neg) return false;
    uint64_t u = neg ? ~(uint64_t)0 : 0;
    for (size_t i = 0; i < len && i < 8; i++) {
        u &= ~((uint64_t)0xff << (8 * i));
        u |= (uint64_t)p[i] << (8 * i);
    }
    *out = (int64_t)u;
    return true;
}

mproc__pk *mproc__pk_bigint(mproc__pk_doc *d, const void *le, size_t len)
{
    const unsigned char *p = le;
    int64_t i;
    if (!p && len) return NULL;
    if (le_fits_i64(p, len, &i)) return mproc__pk_int(d, i);
    /* minimal form: drop sign-extension bytes the next byte's top bit repeats */
    bool neg = p[len - 1] & 0x80;
    while (len > 1 && p[len - 1] == (neg ? 0xff : 0x00) && ((p[len - 2] & 0x80) != 0) == neg)
        len--;
    return mproc__pk_bytes(d, MPROC__PK_BIGINT, p, len);
}

mproc__pk *mproc__pk_container(mproc__pk_doc *d, int kind)
{
    return has_items(kind) ? node(d, kind) : NULL;
}

static int add_slots(mproc__pk *c, size_t k)
{
    size_t have = c->kind == MPROC__PK_DICT ? 2 * c->n : c->n;
    if (have + k > c->cap) {
        size_t cap = c->cap ? c->cap : 4;
        while (cap < have + k)
            cap *= 2;
        mproc__pk **n = realloc(c->u.items, cap * sizeof *n);
        if (!n) return -ENOMEM;
        c->u.items = n;
        c->cap = cap;
    }
    return 0;
}

int mproc__pk_add(mproc__pk_doc *d, mproc__pk *c, mproc__pk *item, mproc__pk *val)
{
    (void)d;
    if (!c || !item || !has_items(c->kind)) return c && item ? -EINVAL : -ENOMEM;
    bool dict = c->kind == MPROC__PK_DICT;
    if (dict != (val != NULL)) return -EINVAL;
    int r = add_slots(c, dict ? 2 : 1);
    if (r < 0) return r;
    if (dict) {
        c->u.items[2 * c->n] = item;
        c->u.items[2 * c->n + 1] = val;
    } else
        c->u.items[c->n] = item;
    c->n++;
    return 0;
}

mproc__pk *mproc__pk_tuple(mproc__pk_doc *d, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    mproc__pk *t = mproc__pk_container(d, MPROC__PK_TUPLE);
    bool ok = t && add_slots(t, n) == 0;
    for (size_t i = 0; i < n; i++) {
        mproc__pk *item = va_arg(ap, mproc__pk *);
        if (!item) ok = false;
        if (ok) t->u.items[t->n++] = item;
    }
    va_end(ap);
    return ok ? t : NULL;
}

mproc__pk *mproc__pk_global(mproc__pk_doc *d, const char *module, const char *name)
{
    if (!module || !name) return NULL;
    char *m = strdup(module), *nm = strdup(name);
    mproc__pk *v = m && nm ? node(d, MPROC__PK_GLOBAL) : NULL;
    if (!v) {
        free(m);
        free(nm);
        return NULL;
    }
    v->u.g.module = m;
    v->u.g.name = nm;
    return v;
}

mproc__pk *mproc__pk_object(mproc__pk_doc *d, int how, mproc__pk *callable, mproc__pk *args,
                            mproc__pk *state)
{
    if (!callable || callable->kind != MPROC__PK_GLOBAL) return NULL;
    if (!args) args = mproc__pk_container(d, MPROC__PK_TUPLE);
    if (!args || args->kind != MPROC__PK_TUPLE) return NULL;
    mproc__pk *v = node(d, MPROC__PK_OBJECT);
    if (!v) return NULL;
    v->how = (uint8_t)how;
    v->u.o.callable = callable;
    v->u.o.args = args;
    v->u.o.state = state;
    return v;
}

mproc__pk *mproc__pk_exception(mproc__pk_doc *d, const char *module, const char *name,
                               const char *arg)
{
    mproc__pk *args = arg ? mproc__pk_tuple(d, 1, mproc__pk_cstr(d, arg))
                          : mproc__pk_container(d, MPROC__PK_TUPLE);
    return mproc__pk_object(d, MPROC__PK_REDUCE, mproc__pk_global(d, module, name), args, NULL);
}

mproc__pk *mproc__pk_token(mproc__pk_doc *d, mproc__pk *typeid, mproc__pk *address, mproc__pk *id)
{
    /* Token has __slots__ and __getstate__: NEWOBJ (cls, ()) then BUILD (typeid, address, id) */
    mproc__pk *state = mproc__pk_tuple(d, 3, typeid, address, id);
    if (!state) return NULL;
    return mproc__pk_object(d, MPROC__PK_NEWOBJ,
                            mproc__pk_global(d, "multiprocessing.managers", "Token"), NULL, state);
}

/* ---- UTF-8 as Python's "surrogatepass" accepts it ---- */

static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else
            return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
        i += k + 1;
    }
    return true;
}

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

enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_POP = '0',
    OP_POP_MARK = '1',
    OP_DUP = '2',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_REDUCE = 'R',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_DICT = 'd',
    OP_EMPTY_DICT = '}',
    OP_APPENDS = 'e',
    OP_GET = 'g',
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_LIST = 'l',
    OP_EMPTY_LIST = ']',
    OP_PUT = 'p',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G',
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    OP_PROTO = 0x80,
    OP_NEWOBJ = 0x81,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90,
    OP_FROZENSET = 0x91,
    OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
    OP_BYTEARRAY8 = 0x96,
};

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
    return charge(r, 1) == 0 ? node(r->d, kind) : NULL;
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
    if (kind == MPROC__PK_STR && !utf8_ok(p, n)) return BAD;
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
        TRY(add_slots(c, n));
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
    TRY(add_slots(c, n));
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
        TRY(add_slots(s, a[0]->n));
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
    if (has_items(v->kind)) {
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

/* ---- the writer ---- */

#define WRITE_DEPTH_MAX 1024 /* above the reader's default, so what was read can be written */

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
    if (!v || depth > WRITE_DEPTH_MAX) {
        w->err = -EINVAL;
        return;
    }
    bool memoized =
        has_items(v->kind) || v->kind == MPROC__PK_GLOBAL || v->kind == MPROC__PK_OBJECT;
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
        if (!utf8_ok((const unsigned char *)v->u.bytes, v->n)) {
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

/* ---- looking at values ---- */

bool mproc__pk_is_str(const mproc__pk *v, const char *s)
{
    return v && s && v->kind == MPROC__PK_STR && v->n == strlen(s) &&
           memcmp(v->u.bytes, s, v->n) == 0;
}

bool mproc__pk_is_instance(const mproc__pk *v, const char *module, const char *name)
{
    if (v && v->kind == MPROC__PK_OBJECT) v = v->u.o.callable;
    return v && v->kind == MPROC__PK_GLOBAL && strcmp(v->u.g.module, module) == 0 &&
           strcmp(v->u.g.name, name) == 0;
}

static bool is_number(const mproc__pk *v)
{
    return v->kind == MPROC__PK_BOOL || v->kind == MPROC__PK_INT || v->kind == MPROC__PK_BIGINT ||
           v->kind == MPROC__PK_FLOAT;
}

/* Python's int == float, exactly (no rounding of the int). A BIGINT is never equal to a float
 * here (documented). */
static bool num_equal(const mproc__pk *a, const mproc__pk *b)
{
    if (a->kind == MPROC__PK_BIGINT || b->kind == MPROC__PK_BIGINT)
        return a->kind == b->kind && a->n == b->n && memcmp(a->u.bytes, b->u.bytes, a->n) == 0;
    if (a->kind == MPROC__PK_FLOAT && b->kind == MPROC__PK_FLOAT) return a->u.f == b->u.f;
    if (a->kind == MPROC__PK_FLOAT) {
        const mproc__pk *t = a;
        a = b;
        b = t;
    }
    int64_t i = a->kind == MPROC__PK_BOOL ? a->u.b : a->u.i;
    if (b->kind != MPROC__PK_FLOAT) return i == (b->kind == MPROC__PK_BOOL ? b->u.b : b->u.i);
    double f = b->u.f;
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0) || f != floor(f)) return false;
    return (int64_t)f == i;
}

/* Comparisons walk both trees; a budget of steps keeps two large isomorphic DAGs (which the memo
 * makes cheap to send) from costing exponential time: past it, values compare unequal. */
#define EQUAL_BUDGET ((long)1 << 22)

static bool equal(const mproc__pk *a, const mproc__pk *b, int depth, long *budget);

/* Every item of a in b (for sets and dicts; Python's sets and dicts hold no duplicates). */
static bool contained(const mproc__pk *a, const mproc__pk *b, int depth, long *budget)
{
    bool dict = a->kind == MPROC__PK_DICT;
    for (size_t i = 0; i < a->n; i++) {
        const mproc__pk *k = dict ? a->u.items[2 * i] : a->u.items[i];
        bool found = false;
        for (size_t j = b->n; j-- > 0 && !found;) {
            const mproc__pk *bk = dict ? b->u.items[2 * j] : b->u.items[j];
            if (!equal(k, bk, depth + 1, budget)) continue;
            found = !dict || equal(a->u.items[2 * i + 1], b->u.items[2 * j + 1], depth + 1, budget);
            if (dict) break; /* the last equal key is the one that counts */
        }
        if (!found) return false;
    }
    return true;
}

static bool equal(const mproc__pk *a, const mproc__pk *b, int depth, long *budget)
{
    if (a == b) return true;
    if (!a || !b || depth > WRITE_DEPTH_MAX || --*budget < 0) return false;
    if (is_number(a) || is_number(b)) return is_number(a) && is_number(b) && num_equal(a, b);
    bool abytes = a->kind == MPROC__PK_BYTES || a->kind == MPROC__PK_BYTEARRAY;
    bool bbytes = b->kind == MPROC__PK_BYTES || b->kind == MPROC__PK_BYTEARRAY;
    if (abytes || bbytes)
        return abytes && bbytes && a->n == b->n && memcmp(a->u.bytes, b->u.bytes, a->n) == 0;
    bool aset = a->kind == MPROC__PK_SET || a->kind == MPROC__PK_FROZENSET;
    bool bset = b->kind == MPROC__PK_SET || b->kind == MPROC__PK_FROZENSET;
    if (aset || bset) return aset && bset && a->n == b->n && contained(a, b, depth, budget);
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case MPROC__PK_NONE:
        return true;
    case MPROC__PK_STR:
        return a->n == b->n && memcmp(a->u.bytes, b->u.bytes, a->n) == 0;
    case MPROC__PK_TUPLE:
    case MPROC__PK_LIST:
        if (a->n != b->n) return false;
        for (size_t i = 0; i < a->n; i++)
            if (!equal(a->u.items[i], b->u.items[i], depth + 1, budget)) return false;
        return true;
    case MPROC__PK_DICT:
        return a->n == b->n && contained(a, b, depth, budget);
    case MPROC__PK_GLOBAL:
        return strcmp(a->u.g.module, b->u.g.module) == 0 && strcmp(a->u.g.name, b->u.g.name) == 0;
    default: /* objects compare by identity, as exceptions and Tokens do in Python */
        return false;
    }
}

bool mproc__pk_equal(const mproc__pk *a, const mproc__pk *b)
{
    long budget = EQUAL_BUDGET;
    return equal(a, b, 0, &budget);
}

mproc__pk *mproc__pk_dict_get(const mproc__pk *dict, const mproc__pk *key)
{
    if (!dict || !key || dict->kind != MPROC__PK_DICT) return NULL;
    long budget = EQUAL_BUDGET;
    for (size_t j = dict->n; j-- > 0;)
        if (equal(dict->u.items[2 * j], key, 0, &budget)) return dict->u.items[2 * j + 1];
    return NULL;
}

/* ---- repr ---- */

typedef struct {
    char *buf;
    size_t cap, len;
} sbuf;

static void sput(sbuf *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++, s->len++)
        if (s->len + 1 < s->cap) s->buf[s->len] = p[i];
    if (s->cap) s->buf[s->len < s->cap ? s->len : s->cap - 1] = '\0';
}

static void sputs(sbuf *s, const char *p)
{
    sput(s, p, strlen(p));
}

static void sprintf_(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sprintf_(sbuf *s, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sputs(s, tmp);
}

/* A quoted str or bytes, escaped as Python's repr does for ASCII control bytes. */
static void repr_text(sbuf *s, const mproc__pk *v)
{
    bool bytes = v->kind != MPROC__PK_STR;
    bool sq = memchr(v->u.bytes, '\'', v->n) != NULL, dq = memchr(v->u.bytes, '"', v->n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    if (bytes) sputs(s, "b");
    sput(s, &q, 1);
    for (size_t i = 0; i < v->n; i++) {
        unsigned char c = (unsigned char)v->u.bytes[i];
        if (c == '\\' || c == (unsigned char)q)
            sprintf_(s, "\\%c", c);
        else if (c == '\n')
            sputs(s, "\\n");
        else if (c == '\r')
            sputs(s, "\\r");
        else if (c == '\t')
            sputs(s, "\\t");
        else if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80))
            sprintf_(s, "\\x%02x", c);
        else
            sput(s, (const char *)&c, 1);
    }
    sput(s, &q, 1);
}

/* Decimal digits of a little-endian two's complement integer (long division by 10). */
static void repr_bigint(sbuf *s, const mproc__pk *v)
{
    size_t n = v->n;
    if (n > 256) {
        sprintf_(s, "<int of %zu bytes>", n);
        return;
    }
    unsigned char mag[256];
    bool neg = n && (v->u.bytes[n - 1] & 0x80);
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned b = (unsigned char)v->u.bytes[i];
        if (neg) {
            b = (~b & 0xff) + carry;
            carry = b >> 8;
            b &= 0xff;
        }
        mag[i] = (unsigned char)b;
    }
    char digits[700];
    size_t nd = 0;
    while (n && nd < sizeof digits) {
        unsigned rem = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned cur = (rem << 8) | mag[i];
            mag[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
        }
        digits[nd++] = (char)('0' + rem);
        while (n && mag[n - 1] == 0)
            n--;
    }
    if (neg) sputs(s, "-");
    if (!nd) sputs(s, "0");
    while (nd)
        sput(s, &digits[--nd], 1);
}

/* Python's float repr: the shortest form that reads back to the same double. */
static void repr_float(sbuf *s, double f)
{
    if (isnan(f)) {
        sputs(s, "nan");
        return;
    }
    if (isinf(f)) {
        sputs(s, f < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    sputs(s, tmp);
    if (!strpbrk(tmp, ".e")) sputs(s, ".0");
}

static void repr(sbuf *s, const mproc__pk *v, int depth);

static void repr_seq(sbuf *s, const mproc__pk *v, size_t n, int depth, const char *sep)
{
    for (size_t i = 0; i < n; i++) {
        if (i) sputs(s, (v->kind == MPROC__PK_DICT && i % 2) ? ": " : sep);
        repr(s, v->u.items[i], depth + 1);
    }
}

static void repr(sbuf *s, const mproc__pk *v, int depth)
{
    if (s->len >= s->cap) return; /* full: a shared DAG would otherwise be walked exponentially */
    if (depth > 64) {
        sputs(s, "...");
        return;
    }
    switch (v->kind) {
    case MPROC__PK_NONE:
        sputs(s, "None");
        break;
    case MPROC__PK_BOOL:
        sputs(s, v->u.b ? "True" : "False");
        break;
    case MPROC__PK_INT:
        sprintf_(s, "%lld", (long long)v->u.i);
        break;
    case MPROC__PK_BIGINT:
        repr_bigint(s, v);
        break;
    case MPROC__PK_FLOAT:
        repr_float(s, v->u.f);
        break;
    case MPROC__PK_STR:
    case MPROC__PK_BYTES:
        repr_text(s, v);
        break;
    case MPROC__PK_BYTEARRAY:
        sputs(s, "bytearray(");
        repr_text(s, v);
        sputs(s, ")");
        break;
    case MPROC__PK_TUPLE:
        sputs(s, "(");
        repr_seq(s, v, v->n, depth, ", ");
        sputs(s, v->n == 1 ? ",)" : ")");
        break;
    case MPROC__PK_LIST:
        sputs(s, "[");
        repr_seq(s, v, v->n, depth, ", ");
        sputs(s, "]");
        break;
    case MPROC__PK_DICT:
        sputs(s, "{");
        repr_seq(s, v, 2 * v->n, depth, ", ");
        sputs(s, "}");
        break;
    case MPROC__PK_SET:
    case MPROC__PK_FROZENSET: {
        bool frozen = v->kind == MPROC__PK_FROZENSET;
        if (!v->n) {
            sputs(s, frozen ? "frozenset()" : "set()");
            break;
        }
        sputs(s, frozen ? "frozenset({" : "{");
        repr_seq(s, v, v->n, depth, ", ");
        sputs(s, frozen ? "})" : "}");
        break;
    }
    case MPROC__PK_GLOBAL:
        sprintf_(s, "<class '%s.", v->u.g.module);
        sputs(s, v->u.g.name);
        sputs(s, "'>");
        break;
    case MPROC__PK_OBJECT:
        sputs(s, v->u.o.callable->u.g.name);
        if (v->u.o.state && v->u.o.args->n == 0) { /* Token and the like: their state */
            repr(s, v->u.o.state, depth + 1);
        } else {
            sputs(s, "(");
            repr_seq(s, v->u.o.args, v->u.o.args->n, depth, ", ");
            sputs(s, ")");
        }
        break;
    }
}

size_t mproc__pk_repr(const mproc__pk *v, char *buf, size_t cap)
{
    sbuf s = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    if (v)
        repr(&s, v, 0);
    else
        sputs(&s, "<null>");
    return s.len;
}

size_t mproc__pk_describe_exception(const mproc__pk *v, char *buf, size_t cap)
{
    sbuf s = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    if (!v || v->kind != MPROC__PK_OBJECT) return mproc__pk_repr(v, buf, cap);
    const mproc__pk *args = v->u.o.args;
    sputs(&s, v->u.o.callable->u.g.name);
    if (args->n == 0) return s.len;
    sputs(&s, ": ");
    /* str(e): one argument is shown as str() would (KeyError quotes it: repr), more as a tuple */
    if (args->n == 1 && args->u.items[0]->kind == MPROC__PK_STR &&
        !mproc__pk_is_instance(v, "builtins", "KeyError"))
        sput(&s, args->u.items[0]->u.bytes, args->u.items[0]->n);
    else if (args->n == 1)
        repr(&s, args->u.items[0], 0);
    else
        repr(&s, args, 0);
    return s.len;
}
