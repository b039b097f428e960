/* Values of the pickle codec (pickle.h): documents, nodes and their constructors, Python's ==,
 * repr. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/common.h"

#include "channel/pickle_impl.h"

/* ---- documents and nodes ---- */

int mproc__pk_doc_new(mproc__pk_doc **out)
{
    if (!out) return -EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void mproc__pk_doc_free(mproc__pk_doc *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        mproc__pk *v = d->nodes[i];
        if (mproc__pk_has_bytes(v->kind))
            free(v->u.bytes);
        else if (mproc__pk_has_items(v->kind))
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

mproc__pk *mproc__pk_node(mproc__pk_doc *d, int kind)
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
    return mproc__pk_node(d, MPROC__PK_NONE);
}

mproc__pk *mproc__pk_bool(mproc__pk_doc *d, bool b)
{
    mproc__pk *v = mproc__pk_node(d, MPROC__PK_BOOL);
    if (v) v->u.b = b;
    return v;
}

mproc__pk *mproc__pk_int(mproc__pk_doc *d, int64_t i)
{
    mproc__pk *v = mproc__pk_node(d, MPROC__PK_INT);
    if (v) v->u.i = i;
    return v;
}

mproc__pk *mproc__pk_float(mproc__pk_doc *d, double f)
{
    mproc__pk *v = mproc__pk_node(d, MPROC__PK_FLOAT);
    if (v) v->u.f = f;
    return v;
}

mproc__pk *mproc__pk_bytes(mproc__pk_doc *d, int kind, const void *p, size_t len)
{
    if (!mproc__pk_has_bytes(kind) || (!p && len)) return NULL;
    char *b = malloc(len + 1);
    if (!b) return NULL;
    mproc__pk *v = mproc__pk_node(d, kind);
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
    return mproc__pk_has_items(kind) ? mproc__pk_node(d, kind) : NULL;
}

int mproc__pk_add_slots(mproc__pk *c, size_t k)
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
    if (!c || !item || !mproc__pk_has_items(c->kind)) return c && item ? -EINVAL : -ENOMEM;
    bool dict = c->kind == MPROC__PK_DICT;
    if (dict != (val != NULL)) return -EINVAL;
    int r = mproc__pk_add_slots(c, dict ? 2 : 1);
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
    bool ok = t && mproc__pk_add_slots(t, n) == 0;
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
    mproc__pk *v = m && nm ? mproc__pk_node(d, MPROC__PK_GLOBAL) : NULL;
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
    mproc__pk *v = mproc__pk_node(d, MPROC__PK_OBJECT);
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

bool mproc__pk_utf8_ok(const unsigned char *s, size_t n)
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
    if (!a || !b || depth > MPROC__PK_DEPTH_MAX || --*budget < 0) return false;
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
