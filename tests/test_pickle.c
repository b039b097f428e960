/* The pickle codec (src/channel/pickle_read.c): round trips with the real CPython for every value
 * kind and protocol 2-5 (tests/python/pickle_peer.py), the values a manager sends built in C, and
 * hostile input: forbidden globals, lying lengths, deep nesting, memo abuse, truncation and bit
 * flips, all refused with MPROC_EPROTO, never a crash or a big allocation. */
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel/pickle.h"
#include "harness.h"
#include "py_util.h"

/* ---- helpers ---- */

static int read_pk(const void *p, size_t n, mproc__pk_doc **d, mproc__pk **v)
{
    return mproc__pickle_read(p, n, NULL, d, v);
}

/* Read p, expecting MPROC_EPROTO. */
static void refused(const void *p, size_t n)
{
    mproc__pk_doc *d = (mproc__pk_doc *)1;
    mproc__pk *v = (mproc__pk *)1;
    CHECK_RC(read_pk(p, n, &d, &v), MPROC_EPROTO);
    CHECK(d == NULL && v == NULL);
}
#define REFUSED(lit) refused(lit, sizeof lit - 1)

/* Read, write, read again: the second read must give the same repr. */
static void rewrite_is_stable(const mproc__pk *v)
{
    void *out;
    size_t n;
    CHECK_OK(mproc__pickle_write(v, &out, &n));
    mproc__pk_doc *d2;
    mproc__pk *v2;
    CHECK_OK(read_pk(out, n, &d2, &v2));
    char a[4096], b[4096];
    mproc__pk_repr(v, a, sizeof a);
    mproc__pk_repr(v2, b, sizeof b);
    if (strcmp(a, b) != 0) harness_fail(__FILE__, __LINE__, "%s rewritten as %s", a, b);
    free(out);
    mproc__pk_doc_free(d2);
}

static void send_frame(py_helper *h, const void *p, size_t n)
{
    uint32_t be = htonl((uint32_t)n);
    py_write_all(h, &be, 4);
    py_write_all(h, p, n);
}

static void *recv_frame(py_helper *h, size_t *n)
{
    uint32_t be;
    py_read_all(h, &be, 4);
    *n = ntohl(be);
    void *p = malloc(*n + 1);
    CHECK(p);
    py_read_all(h, p, *n);
    return p;
}

/* The values pickle_peer.py's built() expects, in its order. */
static mproc__pk *built(mproc__pk_doc *d, int i)
{
    mproc__pk *token = mproc__pk_token(
        d, mproc__pk_cstr(d, "dict"),
        mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "127.0.0.1"), mproc__pk_int(d, 50000)),
        mproc__pk_cstr(d, "7f00"));
    mproc__pk *empty_kw = mproc__pk_container(d, MPROC__PK_DICT);
    switch (i) {
    case 0:
        return mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "#RETURN"), mproc__pk_int(d, 42));
    case 1:
        return mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "#ERROR"),
                               mproc__pk_exception(d, "builtins", "KeyError", "x"));
    case 2:
        return mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "#ERROR"),
                               mproc__pk_exception(d, "_queue", "Empty", NULL));
    case 3:
        return mproc__pk_tuple(
            d, 2, mproc__pk_cstr(d, "#PROXY"),
            mproc__pk_tuple(d, 2,
                            mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "__getitem__"),
                                            mproc__pk_cstr(d, "__setitem__")),
                            token));
    case 4:
        return mproc__pk_tuple(d, 4, mproc__pk_cstr(d, "7f00"), mproc__pk_cstr(d, "__setitem__"),
                               mproc__pk_tuple(d, 2, mproc__pk_cstr(d, "k"),
                                               mproc__pk_bytes(d, MPROC__PK_BYTES, "v", 2)),
                               empty_kw);
    case 5:
        return mproc__pk_tuple(d, 4, mproc__pk_none(d), mproc__pk_cstr(d, "create"),
                               mproc__pk_tuple(d, 1, mproc__pk_cstr(d, "dict")), empty_kw);
    case 6: {
        mproc__pk *dict = mproc__pk_container(d, MPROC__PK_DICT);
        mproc__pk *s = mproc__pk_container(d, MPROC__PK_SET);
        mproc__pk *f = mproc__pk_container(d, MPROC__PK_FROZENSET);
        mproc__pk *l = mproc__pk_container(d, MPROC__PK_LIST);
        CHECK_OK(mproc__pk_add(d, s, mproc__pk_int(d, 1), NULL));
        CHECK_OK(mproc__pk_add(d, s, mproc__pk_int(d, 2), NULL));
        CHECK_OK(mproc__pk_add(d, f, mproc__pk_int(d, 3), NULL));
        CHECK_OK(mproc__pk_add(d, dict, mproc__pk_cstr(d, "s"), s));
        CHECK_OK(mproc__pk_add(d, dict, mproc__pk_cstr(d, "f"), f));
        CHECK_OK(mproc__pk_add(d, l, mproc__pk_none(d), NULL));
        CHECK_OK(mproc__pk_add(d, l, mproc__pk_bool(d, true), NULL));
        /* -(2**70): two's complement, little-endian */
        unsigned char big[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0xc0};
        return mproc__pk_tuple(d, 5, dict, mproc__pk_bytes(d, MPROC__PK_BYTEARRAY, "ba", 2),
                               mproc__pk_bigint(d, big, sizeof big), mproc__pk_float(d, 2.5), l);
    }
    default:
        return NULL;
    }
}
#define NBUILT 7

/* One session with pickle_peer.py: every sample in, out again, then the built values. */
static void roundtrip_with(const char *python, int proto)
{
    char p[8];
    snprintf(p, sizeof p, "%d", proto);
    const char *args[] = {"roundtrip", p, NULL};
    py_helper h = py_spawn(python, "pickle_peer.py", args);
    size_t n;
    char *count = recv_frame(&h, &n);
    count[n] = '\0';
    int samples = atoi(count);
    free(count);
    CHECK(samples > 50);
    for (int i = 0; i < samples; i++) {
        void *in = recv_frame(&h, &n);
        mproc__pk_doc *d;
        mproc__pk *v;
        int r = read_pk(in, n, &d, &v);
        if (r != 0)
            harness_fail(__FILE__, __LINE__, "protocol %d sample %d: %s", proto, i,
                         mproc_strerror(r));
        rewrite_is_stable(v);
        void *out;
        size_t outn;
        CHECK_OK(mproc__pickle_write(v, &out, &outn));
        send_frame(&h, out, outn);
        free(out);
        free(in);
        mproc__pk_doc_free(d);
    }
    for (int i = 0; i < NBUILT; i++) {
        mproc__pk_doc *d;
        CHECK_OK(mproc__pk_doc_new(&d));
        mproc__pk *v = built(d, i);
        CHECK(v);
        void *out;
        size_t outn;
        CHECK_OK(mproc__pickle_write(v, &out, &outn));
        send_frame(&h, out, outn);
        free(out);
        mproc__pk_doc_free(d);
    }
    CHECK_EQ(py_reap(&h), 0);
}

/* ---- with CPython ---- */

TEST_T(python_pickles_of_every_kind_round_trip_protocols_2_to_5, 120)
{
    py_need();
    for (int proto = 2; proto <= 5; proto++)
        roundtrip_with("python3", proto);
}

TEST_T(other_cpython_versions_round_trip, 180)
{
    int ran = 0;
    static const char *versions[] = {"3.11", "3.12", "3.13"};
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        const char *py = py_find(versions[i]);
        if (!py) continue;
        roundtrip_with(py, 2);
        roundtrip_with(py, 4);
        roundtrip_with(py, 5);
        ran++;
    }
    if (!ran) harness_skip("no CPython 3.11-3.13 found");
}

/* ---- the value model ---- */

TEST(values_read_as_python_sees_them)
{
    mproc__pk_doc *d;
    mproc__pk *v;
    /* (1, True, 'x', b'y', 2**64, 1.5) at protocol 2 */
    static const char p[] = "\x80\x02(K\x01\x88X\x01\x00\x00\x00xq\x00"
                            "C\x01y\x8a\x09"
                            "\x00\x00\x00\x00\x00\x00\x00\x00\x01G?\xf8\x00\x00\x00\x00\x00\x00t.";
    CHECK_OK(read_pk(p, sizeof p - 1, &d, &v));
    char buf[256];
    mproc__pk_repr(v, buf, sizeof buf);
    CHECK(strcmp(buf, "(1, True, 'x', b'y', 18446744073709551616, 1.5)") == 0);
    CHECK_EQ(v->kind, MPROC__PK_TUPLE);
    CHECK_EQ(v->n, 6);
    /* Python's ==: 1 == True == 1.0, b'y' == bytearray(b'y'), 'x' != b'x' */
    mproc__pk_doc *e;
    CHECK_OK(mproc__pk_doc_new(&e));
    CHECK(mproc__pk_equal(v->u.items[0], mproc__pk_bool(e, true)));
    CHECK(mproc__pk_equal(v->u.items[0], mproc__pk_float(e, 1.0)));
    CHECK(!mproc__pk_equal(v->u.items[0], mproc__pk_float(e, 1.5)));
    CHECK(mproc__pk_equal(v->u.items[3], mproc__pk_bytes(e, MPROC__PK_BYTEARRAY, "y", 1)));
    CHECK(!mproc__pk_equal(v->u.items[2], mproc__pk_bytes(e, MPROC__PK_BYTES, "x", 1)));
    CHECK(mproc__pk_is_str(v->u.items[2], "x"));
    unsigned char big[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK(mproc__pk_equal(v->u.items[4], mproc__pk_bigint(e, big, 9)));
    /* a bigint that fits is an INT */
    unsigned char small[9] = {5, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ(mproc__pk_bigint(e, small, 9)->kind, MPROC__PK_INT);
    /* dict lookup by Python equality, the last equal key wins */
    mproc__pk *dict = mproc__pk_container(e, MPROC__PK_DICT);
    CHECK_OK(mproc__pk_add(e, dict, mproc__pk_int(e, 1), mproc__pk_cstr(e, "first")));
    CHECK_OK(mproc__pk_add(e, dict, mproc__pk_bool(e, true), mproc__pk_cstr(e, "second")));
    CHECK(mproc__pk_is_str(mproc__pk_dict_get(dict, mproc__pk_float(e, 1.0)), "second"));
    CHECK(mproc__pk_dict_get(dict, mproc__pk_int(e, 2)) == NULL);
    mproc__pk_doc_free(e);
    mproc__pk_doc_free(d);
}

TEST(exceptions_are_described_as_python_prints_them)
{
    mproc__pk_doc *d;
    CHECK_OK(mproc__pk_doc_new(&d));
    char buf[128];
    mproc__pk_describe_exception(mproc__pk_exception(d, "builtins", "KeyError", "x"), buf,
                                 sizeof buf);
    CHECK(strcmp(buf, "KeyError: 'x'") == 0);
    mproc__pk_describe_exception(mproc__pk_exception(d, "builtins", "ValueError", "bad"), buf,
                                 sizeof buf);
    CHECK(strcmp(buf, "ValueError: bad") == 0);
    mproc__pk *empty = mproc__pk_exception(d, "_queue", "Empty", NULL);
    mproc__pk_describe_exception(empty, buf, sizeof buf);
    CHECK(strcmp(buf, "Empty") == 0);
    CHECK(mproc__pk_is_instance(empty, "_queue", "Empty"));
    /* truncation keeps a NUL */
    CHECK(mproc__pk_describe_exception(mproc__pk_exception(d, "builtins", "KeyError", "long"), buf,
                                       5) >= 5);
    CHECK(strcmp(buf, "KeyE") == 0);
    mproc__pk_doc_free(d);
}

TEST(builders_propagate_allocation_failure_as_null)
{
    mproc__pk_doc *d;
    CHECK_OK(mproc__pk_doc_new(&d));
    CHECK(mproc__pk_tuple(d, 2, mproc__pk_none(d), (mproc__pk *)NULL) == NULL);
    CHECK(mproc__pk_object(d, MPROC__PK_REDUCE, NULL, NULL, NULL) == NULL);
    CHECK(mproc__pk_token(d, NULL, mproc__pk_none(d), mproc__pk_none(d)) == NULL);
    CHECK_RC(mproc__pk_add(d, mproc__pk_container(d, MPROC__PK_LIST), NULL, NULL), -ENOMEM);
    CHECK_RC(mproc__pk_add(d, mproc__pk_none(d), mproc__pk_none(d), NULL), -EINVAL);
    void *out;
    size_t n;
    CHECK_RC(mproc__pickle_write(NULL, &out, &n), -EINVAL);
    /* invalid UTF-8 in a str is refused by the writer */
    CHECK_RC(mproc__pickle_write(mproc__pk_str(d, "\xff", 1), &out, &n), -EINVAL);
    mproc__pk_doc_free(d);
}

TEST(writer_keeps_sharing_and_writes_self_containing_lists)
{
    mproc__pk_doc *d;
    CHECK_OK(mproc__pk_doc_new(&d));
    /* t0 = (); t(i+1) = (ti, ti): 2**200 leaves, a few bytes per level with the memo */
    mproc__pk *t = mproc__pk_tuple(d, 1, mproc__pk_int(d, 7));
    for (int i = 0; i < 200; i++)
        t = mproc__pk_tuple(d, 2, t, t);
    CHECK(t);
    void *out;
    size_t n;
    CHECK_OK(mproc__pickle_write(t, &out, &n));
    CHECK(n < 200 * 12);
    mproc__pk_doc *d2;
    mproc__pk *v;
    CHECK_OK(read_pk(out, n, &d2, &v));
    CHECK(v->u.items[0] == v->u.items[1]);
    free(out);
    mproc__pk_doc_free(d2);
    /* a list holding itself is written (as Python does) but refused by the reader (a cycle) */
    mproc__pk *l = mproc__pk_container(d, MPROC__PK_LIST);
    CHECK_OK(mproc__pk_add(d, l, l, NULL));
    CHECK_OK(mproc__pickle_write(l, &out, &n));
    refused(out, n);
    free(out);
    mproc__pk_doc_free(d);
}

/* ---- hostile input ---- */

TEST(forbidden_globals_are_refused_and_nothing_runs)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mproc-pickle-pwned-%d", (int)getpid());
    unlink(path);
    char p[256];
    int n;
    /* os.system("touch PATH") by GLOBAL + REDUCE, protocol 2 */
    n = snprintf(p, sizeof p,
                 "\x80\x02"
                 "cos\nsystem\nX%c%c%c%ctouch %s\x85R.",
                 (int)(6 + strlen(path)), 0, 0, 0, path);
    refused(p, (size_t)n);
    /* the same with STACK_GLOBAL, protocol 4 */
    n = snprintf(p, sizeof p, "\x80\x04\x8c\x02os\x8c\x06system\x93X%c%c%c%ctouch %s\x85R.",
                 (int)(6 + strlen(path)), 0, 0, 0, path);
    refused(p, (size_t)n);
    REFUSED("\x80\x02"
            "cposix\nsystem\n.");
    REFUSED("\x80\x02"
            "c__builtin__\neval\n.");
    REFUSED("\x80\x02"
            "cbuiltins\ngetattr\n.");
    REFUSED("\x80\x02"
            "csubprocess\nPopen\n.");
    REFUSED("\x80\x02"
            "cbuiltins\n__import__\n.");
    REFUSED("\x80\x02"
            "cmultiprocessing.managers\nRebuildProxy\n.");
    /* an allowlisted callable with arguments it does not take */
    REFUSED("\x80\x02"
            "c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00utf8\x86R.");
    /* _reconstructor of a class not on the list */
    REFUSED("\x80\x02"
            "ccopy_reg\n_reconstructor\ncos\n_wrap_close\n.");
    /* NEWOBJ of something that is not a class on the list */
    REFUSED("\x80\x02"
            "c_codecs\nencode\n)\x81.");
    /* persistent ids, extension registry, protocol 0 INST/OBJ, out-of-band buffers */
    REFUSED("\x80\x02P1\n.");
    REFUSED("\x80\x02Q.");
    REFUSED("\x80\x02\x82\x01.");
    REFUSED("\x80\x02(ios\nsystem\n.");
    REFUSED("\x80\x05\x97.");
    REFUSED("\x80\x06N.");
    CHECK(access(path, F_OK) != 0);
    /* the allowed ones */
    mproc__pk_doc *d;
    mproc__pk *v;
    static const char ok[] = "\x80\x02"
                             "cexceptions\nKeyError\nX\x01\x00\x00\x00x\x85R.";
    CHECK_OK(read_pk(ok, sizeof ok - 1, &d, &v));
    CHECK(mproc__pk_is_instance(v, "builtins", "KeyError"));
    mproc__pk_doc_free(d);
}

TEST(lying_lengths_are_refused_before_allocating)
{
    REFUSED("\x80\x02X\xff\xff\xff\xff"
            "abc.");
    REFUSED("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"
            "abc.");
    REFUSED("\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x80.");
    REFUSED("\x80\x05\x96\xff\xff\xff\xff\xff\xff\xff\xff.");
    REFUSED("\x80\x02\x8b\xff\xff\xff\x7f.");
    REFUSED("\x80\x02\x8b\xff\xff\xff\xff.");
    REFUSED("\x80\x02\x8a\xff\x00.");
    REFUSED("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.");
    REFUSED("\x80\x02"
            "B\x10\x00\x00\x00short.");
    /* the input limit itself */
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_RC(mproc__pickle_read("\x80\x02N.", 4, &(mproc__pickle_limits){.max_input = 3}, &d, &v),
             MPROC_EPROTO);
    CHECK_RC(mproc__pickle_read("", 0, NULL, &d, &v), MPROC_EPROTO);
    CHECK_RC(mproc__pickle_read(NULL, 0, NULL, NULL, &v), -EINVAL);
}

static void *repeat(const char *head, const char *unit, size_t unitlen, size_t times,
                    const char *tail, size_t *n)
{
    size_t hl = strlen(head), tl = strlen(tail);
    *n = hl + unitlen * times + tl;
    char *p = malloc(*n);
    CHECK(p);
    memcpy(p, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(p + hl + i * unitlen, unit, unitlen);
    memcpy(p + hl + unitlen * times, tail, tl);
    return p;
}

TEST(deep_nesting_is_refused)
{
    size_t n;
    /* 100000 marks */
    char *p = repeat("\x80\x02", "(", 1, 100000, "N.", &n);
    refused(p, n);
    free(p);
    /* lists nested on the stack: "]" x D then "a" x (D-1): depth D-1 */
    for (size_t depth = 400; depth <= 100000; depth *= 250) {
        size_t lists = depth + 1;
        char *q = malloc(lists * 2 + 4);
        memcpy(q, "\x80\x02", 2);
        memset(q + 2, ']', lists);
        memset(q + 2 + lists, 'a', lists - 1);
        q[2 + 2 * lists - 1] = '.';
        mproc__pk_doc *d;
        mproc__pk *v;
        int r = read_pk(q, 2 * lists + 2, &d, &v);
        if (depth <= 512) {
            CHECK_OK(r);
            rewrite_is_stable(v);
            mproc__pk_doc_free(d);
        } else
            CHECK_RC(r, MPROC_EPROTO);
        free(q);
    }
    /* depth through the memo, without the stack: l(i+1) = [l(i)] by GET; 20000 levels */
    p = repeat("\x80\x04]\x94",
               "]\x94j\x00\x00\x00\x00"
               "a",
               8, 1, "", &n);
    free(p);
    char *q = malloc(20000 * 12 + 8), *w = q;
    memcpy(w, "\x80\x04]\x94", 4);
    w += 4;
    for (uint32_t i = 0; i < 20000; i++) {
        /* new list, memoize as i+1, get list i, append */
        *w++ = ']';
        *w++ = (char)0x94;
        *w++ = 'j';
        memcpy(w, &i, 4); /* little-endian host */
        w += 4;
        *w++ = 'a';
    }
    *w++ = '.';
    refused(q, (size_t)(w - q));
    free(q);
}

TEST(memo_abuse_is_refused)
{
    /* an index far beyond what the input could have numbered, before any allocation */
    REFUSED("\x80\x02Nr\xff\xff\xff\xff.");
    REFUSED("\x80\x02Nr\x00\x00\x10\x00.");
    REFUSED("\x80\x02Np99999999999\n.");
    /* a get of nothing, a put with nothing on the stack */
    REFUSED("\x80\x02h\x00.");
    REFUSED("\x80\x02j\x05\x00\x00\x00.");
    REFUSED("\x80\x02q\x00.");
    REFUSED("\x80\x02g7\n.");
    REFUSED("\x80\x02gx\n.");
    /* a list that contains itself, and a dict through a list */
    REFUSED("\x80\x02]q\x00h\x00"
            "a.");
    REFUSED("\x80\x02}q\x00X\x01\x00\x00\x00k]q\x01h\x00"
            "as.");
    /* an object that holds itself through BUILD */
    REFUSED("\x80\x02"
            "cbuiltins\nKeyError\n)Rq\x00h\x00"
            "b.");
    /* a DAG of 2**60 paths is fine to read (linear) and write (memo) */
    char *q = malloc(60 * 6 + 16), *w = q;
    memcpy(w, "\x80\x04N\x94", 4);
    w += 4;
    for (uint32_t i = 0; i < 60; i++) {
        *w++ = 'h';
        *w++ = (char)i;
        *w++ = 'h';
        *w++ = (char)i;
        *w++ = (char)0x86;
        *w++ = (char)0x94;
    }
    *w++ = '.';
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(read_pk(q, (size_t)(w - q), &d, &v));
    void *out;
    size_t n;
    CHECK_OK(mproc__pickle_write(v, &out, &n));
    CHECK(n < 1000);
    char buf[64];
    CHECK(mproc__pk_repr(v, buf, sizeof buf) >= sizeof buf); /* truncated, not walked */
    free(out);
    mproc__pk_doc_free(d);
    free(q);
    /* the item limit */
    static const char big[] = "\x80\x02(K\x01K\x02K\x03K\x04K\x05l.";
    CHECK_RC(
        mproc__pickle_read(big, sizeof big - 1, &(mproc__pickle_limits){.max_items = 4}, &d, &v),
        MPROC_EPROTO);
}

TEST(stack_misuse_is_refused)
{
    REFUSED("\x80\x02."); /* STOP on an empty stack */
    REFUSED("\x80\x02"
            "a."); /* APPEND with nothing */
    REFUSED("\x80\x02)K\x01"
            "a.");                    /* APPEND to a tuple */
    REFUSED("\x80\x02]K\x01K\x02s."); /* SETITEM on a list */
    REFUSED("\x80\x02}(K\x01u.");     /* SETITEMS with an odd count */
    REFUSED("\x80\x02}]K\x01s.");     /* an unhashable key */
    REFUSED("\x80\x02\x8f(]\x90.");   /* an unhashable set item */
    REFUSED("\x80\x02(K\x01"
            "(\x85.");           /* TUPLE1 across a mark */
    REFUSED("\x80\x02K\x01}b."); /* BUILD on an int */
    REFUSED("\x80\x02t.");       /* TUPLE without a mark */
    REFUSED("\x80\x02"
            "1.");                                 /* POP_MARK without a mark */
    REFUSED("\x80\x02N0.");                        /* POP leaves nothing for STOP */
    REFUSED("\x80\x02X\x01\x00\x00\x00\xff.");     /* invalid UTF-8 */
    REFUSED("\x80\x02X\x02\x00\x00\x00\xc0\x80."); /* overlong */
    REFUSED("\x80\x02"
            "c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.");
    /* what is fine: POP of a mark, DUP, trailing bytes after STOP */
    mproc__pk_doc *d;
    mproc__pk *v;
    static const char ok[] = "\x80\x02(0K\x07\x32\x86.garbage";
    CHECK_OK(read_pk(ok, sizeof ok - 1, &d, &v));
    char buf[32];
    mproc__pk_repr(v, buf, sizeof buf);
    CHECK(strcmp(buf, "(7, 7)") == 0);
    mproc__pk_doc_free(d);
}

/* A pickle with most opcodes: a manager reply as CPython 3.11 sends it (protocol 4). */
static void sample_reply(void **out, size_t *n)
{
    mproc__pk_doc *d;
    CHECK_OK(mproc__pk_doc_new(&d));
    mproc__pk *v = built(d, 6);
    mproc__pk *w = mproc__pk_tuple(d, 4, built(d, 3), built(d, 1), v, built(d, 4));
    CHECK(w);
    CHECK_OK(mproc__pickle_write(w, out, n));
    mproc__pk_doc_free(d);
}

TEST(every_truncation_is_refused)
{
    void *p;
    size_t n;
    sample_reply(&p, &n);
    for (size_t len = 0; len < n; len++)
        refused(p, len);
    mproc__pk_doc *d;
    mproc__pk *v;
    CHECK_OK(read_pk(p, n, &d, &v));
    mproc__pk_doc_free(d);
    free(p);
    /* and Python's own frames, from the seed corpus's protocol 2 and 4 forms */
    static const char py2[] = "\x80\x02X\x07\x00\x00\x00#RETURNq\x00}q\x01(X\x01\x00\x00\x00"
                              "aq\x02K\x01X\x01\x00\x00\x00"
                              "bq\x03]q\x04(K\x02G@\x08\x00\x00"
                              "\x00\x00\x00\x00"
                              "eu\x86q\x05.";
    for (size_t len = 0; len < sizeof py2 - 1; len++)
        refused(py2, len);
    CHECK_OK(read_pk(py2, sizeof py2 - 1, &d, &v));
    mproc__pk_doc_free(d);
}

TEST(bit_flips_and_random_bytes_never_crash)
{
    void *p;
    size_t n;
    sample_reply(&p, &n);
    unsigned char *b = p;
    int accepted = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            mproc__pk_doc *d;
            mproc__pk *v;
            int r = read_pk(b, n, &d, &v);
            CHECK(r == 0 || r == MPROC_EPROTO);
            if (r == 0) { /* what is accepted can be written again */
                accepted++;
                void *out;
                size_t outn;
                r = mproc__pickle_write(v, &out, &outn);
                CHECK(r == 0 || r == -EINVAL);
                if (r == 0) free(out);
                mproc__pk_doc_free(d);
            }
            b[i] ^= (unsigned char)(1u << bit);
        }
    CHECK(accepted > 0);
    free(p);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    unsigned char buf[64];
    for (int round = 0; round < 100000; round++) {
        size_t len = 1 + (x % 64);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        buf[0] = 0x80; /* past PROTO more often */
        mproc__pk_doc *d;
        mproc__pk *v;
        int r = read_pk(buf, len, &d, &v);
        CHECK(r == 0 || r == MPROC_EPROTO);
        if (r == 0) mproc__pk_doc_free(d);
    }
}

/* The fuzz target's seed corpus: every frame of a real CPython 3.11 SyncManager session reads,
 * rewrites to the same value, and the replies are ('#KIND', value). */
TEST(captured_manager_frames_read_and_rewrite)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(dir, sizeof dir, "%.*s/fuzz/corpus/pickle", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    DIR *dp = opendir(dir);
    CHECK(dp);
    int files = 0, replies = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        CHECK(f);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        mproc__pk_doc *d;
        mproc__pk *v;
        int r = read_pk(buf, n, &d, &v);
        if (r != 0) harness_fail(__FILE__, __LINE__, "%s: %s", e->d_name, mproc_strerror(r));
        rewrite_is_stable(v);
        CHECK_EQ(v->kind, MPROC__PK_TUPLE);
        if (strstr(e->d_name, "reply")) {
            CHECK(v->n == 2 && v->u.items[0]->kind == MPROC__PK_STR &&
                  v->u.items[0]->u.bytes[0] == '#');
            replies++;
        } else
            CHECK_EQ(v->n, 4);
        mproc__pk_doc_free(d);
        files++;
    }
    closedir(dp);
    CHECK(files >= 50 && replies >= 20);
}
