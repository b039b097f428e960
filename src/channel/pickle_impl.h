/* Internals shared by the pickle files: pickle_value.c (nodes, comparison, repr), pickle_read.c
 * (the reader), pickle_write.c (the writer). */
#ifndef MPROC_CHANNEL_PICKLE_IMPL_H
#define MPROC_CHANNEL_PICKLE_IMPL_H

#include "channel/pickle.h"

struct mproc__pk_doc {
    mproc__pk **nodes;
    size_t n, cap;
};

/* Deepest nesting the writer and the comparisons walk: above the reader's default, so what was
 * read can be written. */
#define MPROC__PK_DEPTH_MAX 1024

static inline bool mproc__pk_has_bytes(int kind)
{
    return kind == MPROC__PK_STR || kind == MPROC__PK_BYTES || kind == MPROC__PK_BYTEARRAY ||
           kind == MPROC__PK_BIGINT;
}

static inline bool mproc__pk_has_items(int kind)
{
    return kind == MPROC__PK_TUPLE || kind == MPROC__PK_LIST || kind == MPROC__PK_DICT ||
           kind == MPROC__PK_SET || kind == MPROC__PK_FROZENSET;
}

/* A zeroed node of kind owned by d, or NULL (malloc, or d NULL). */
mproc__pk *mproc__pk_node(mproc__pk_doc *d, int kind);
/* Room for k more item slots in the container c: 0 or -ENOMEM. */
int mproc__pk_add_slots(mproc__pk *c, size_t k);
/* UTF-8 as Python's "surrogatepass" decodes it. */
bool mproc__pk_utf8_ok(const unsigned char *s, size_t n);

/* The opcodes of the subset (Lib/pickletools.py names them). */
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

#endif
