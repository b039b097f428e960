/* A safe subset of Python's pickle format, for talking to Python's multiprocessing managers
 * (docs/pickle.md).
 *
 * Values are a small tagged tree ("doc" owns every node of it; free the doc, never a node).
 * The reader never executes anything: a global is accepted only if it is on a fixed allowlist
 * (Token, RemoteError, the builtin exceptions, queue.Empty/Full and the few reductions CPython uses
 * for bytes, bytearray and sets), and becomes a node that names it. Sizes, nesting, item counts and
 * memo indices are checked against limits before anything is allocated; malformed, truncated or
 * hostile input is refused with MPROC_EPROTO (-ENOMEM only when malloc fails within the limits).
 *
 * Nodes read from a pickle may be shared (the memo makes a DAG: `(x, x)`), never cyclic (refused).
 * The writer memoizes every container it writes, so shared nodes stay shared on the Python side and
 * a DAG never grows exponentially.
 */
#ifndef MPROC_CHANNEL_PICKLE_H
#define MPROC_CHANNEL_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MPROC__PK_NONE,
    MPROC__PK_BOOL,
    MPROC__PK_INT,    /* fits int64 */
    MPROC__PK_BIGINT, /* does not: little-endian two's complement bytes (pickle's LONG1) */
    MPROC__PK_FLOAT,
    MPROC__PK_STR, /* UTF-8 (lone surrogates allowed, as Python's surrogatepass) */
    MPROC__PK_BYTES,
    MPROC__PK_BYTEARRAY,
    MPROC__PK_TUPLE,
    MPROC__PK_LIST,
    MPROC__PK_DICT, /* ordered pairs, kept as sent (Python never sends a key twice) */
    MPROC__PK_SET,
    MPROC__PK_FROZENSET,
    MPROC__PK_GLOBAL, /* a class or function named by module and name (allowlisted) */
    MPROC__PK_OBJECT, /* an instance: how it is rebuilt (callable + args [+ kwargs]) + state */
} mproc__pk_kind;

/* How an OBJECT is rebuilt: callable(*args) (REDUCE), or cls.__new__(cls, *args, **kwargs)
 * (NEWOBJ, NEWOBJ_EX when kwargs is not NULL). */
enum { MPROC__PK_REDUCE, MPROC__PK_NEWOBJ };

typedef struct mproc__pk mproc__pk;
struct mproc__pk {
    uint8_t kind;         /* mproc__pk_kind */
    uint8_t how;          /* OBJECT */
    uint8_t mark;         /* the reader's cycle check */
    uint32_t height;      /* the reader's depth check */
    uint32_t wgen, wmemo; /* the writer's memo: index + 1 when written in pass wgen */
    size_t n;             /* bytes of STR/BYTES/BYTEARRAY/BIGINT; items; DICT: pairs */
    size_t cap;
    union {
        bool b;
        int64_t i;
        double f;
        char *bytes;       /* n bytes and a NUL */
        mproc__pk **items; /* TUPLE, LIST, SET, FROZENSET; DICT: key, value, key, value... */
        struct {
            char *module, *name;
        } g;
        struct {
            mproc__pk *callable; /* a GLOBAL */
            mproc__pk *args;     /* a TUPLE */
            mproc__pk *kwargs;   /* a DICT or NULL */
            mproc__pk *state;    /* what BUILD set, or NULL */
        } o;
    } u;
};

typedef struct mproc__pk_doc mproc__pk_doc;

/* Limits on what the reader accepts (0 fields: defaults). */
typedef struct {
    size_t max_input; /* bytes of pickle; 0: 64 MiB */
    size_t max_depth; /* nesting of containers and objects; 0: 512 */
    size_t max_items; /* nodes + container slots + stack entries; 0: 4 Mi */
    size_t max_memo;  /* memo index limit; 0: 1 Mi (and never above the input's size) */
} mproc__pickle_limits;

int mproc__pk_doc_new(mproc__pk_doc **out);
void mproc__pk_doc_free(mproc__pk_doc *d);

/* Read one pickle (protocols 2 to 5; trailing bytes after STOP are ignored, as Python does).
 * On success *doc owns the tree and *root is its top. 0, MPROC_EPROTO, -ENOMEM, -EINVAL. */
int mproc__pickle_read(const void *buf, size_t len, const mproc__pickle_limits *lim,
                       mproc__pk_doc **doc, mproc__pk **root);

/* Write v as a protocol 4 pickle into a malloc'd buffer (free() it). 0, -ENOMEM, -EINVAL (a
 * malformed node, invalid UTF-8, nesting beyond 512 or a cycle through tuples). */
int mproc__pickle_write(const mproc__pk *v, void **out, size_t *len);

/* ---- building values (the node belongs to d; NULL when malloc fails, and every constructor
 * taking nodes returns NULL when one of them is NULL, so a nested build is checked once at the
 * end) ---- */
mproc__pk *mproc__pk_none(mproc__pk_doc *d);
mproc__pk *mproc__pk_bool(mproc__pk_doc *d, bool b);
mproc__pk *mproc__pk_int(mproc__pk_doc *d, int64_t i);
mproc__pk *mproc__pk_float(mproc__pk_doc *d, double f);
/* STR (UTF-8, checked by the writer), BYTES, BYTEARRAY: a copy of len bytes. */
mproc__pk *mproc__pk_str(mproc__pk_doc *d, const char *s, size_t len);
mproc__pk *mproc__pk_cstr(mproc__pk_doc *d, const char *s);
mproc__pk *mproc__pk_bytes(mproc__pk_doc *d, int kind, const void *p, size_t len);
/* Python int from little-endian two's complement bytes (normalised: INT when it fits). */
mproc__pk *mproc__pk_bigint(mproc__pk_doc *d, const void *le, size_t len);
/* An empty TUPLE, LIST, DICT, SET or FROZENSET to fill with mproc__pk_add. */
mproc__pk *mproc__pk_container(mproc__pk_doc *d, int kind);
/* A tuple of n items (varargs mproc__pk *). */
mproc__pk *mproc__pk_tuple(mproc__pk_doc *d, size_t n, ...);
mproc__pk *mproc__pk_global(mproc__pk_doc *d, const char *module, const char *name);
/* OBJECT: callable (a GLOBAL) rebuilt with args (a TUPLE; NULL: ()); state may be NULL. */
mproc__pk *mproc__pk_object(mproc__pk_doc *d, int how, mproc__pk *callable, mproc__pk *args,
                            mproc__pk *state);
/* A builtin exception, e.g. ("builtins", "KeyError") with one str argument (or none: NULL). */
mproc__pk *mproc__pk_exception(mproc__pk_doc *d, const char *module, const char *name,
                               const char *arg);
/* multiprocessing.managers.Token(typeid, address, id). */
mproc__pk *mproc__pk_token(mproc__pk_doc *d, mproc__pk *typeid, mproc__pk *address, mproc__pk *id);
/* Append an item (TUPLE, LIST, SET, FROZENSET) or, for a DICT, the pair key, value (val NULL for
 * the others). 0, -ENOMEM, -EINVAL. */
int mproc__pk_add(mproc__pk_doc *d, mproc__pk *c, mproc__pk *item, mproc__pk *val);

/* ---- looking at values ---- */
/* Python's ==, for the values the model holds (1 == 1.0 == True; containers item by item; dicts
 * and sets ignore order; OBJECTs by identity; a BIGINT never equals a float). Bounded work: two
 * values needing more than 4 Mi steps compare unequal. */
bool mproc__pk_equal(const mproc__pk *a, const mproc__pk *b);
/* The value of a DICT's key (the last pair whose key is equal, as Python would keep), or NULL. */
mproc__pk *mproc__pk_dict_get(const mproc__pk *dict, const mproc__pk *key);
/* Whether v is a STR equal to the C string s. */
bool mproc__pk_is_str(const mproc__pk *v, const char *s);
/* Whether v is an OBJECT (or GLOBAL) of the class module.name. */
bool mproc__pk_is_instance(const mproc__pk *v, const char *module, const char *name);
/* Python's repr() of v, truncated to fit cap (always NUL-terminated). Returns the length written,
 * or cap or more when it was truncated. */
size_t mproc__pk_repr(const mproc__pk *v, char *buf, size_t cap);
/* The last line Python prints for an exception: "KeyError: 'x'", "Empty", or the repr of any
 * other value. */
size_t mproc__pk_describe_exception(const mproc__pk *v, char *buf, size_t cap);

#endif
