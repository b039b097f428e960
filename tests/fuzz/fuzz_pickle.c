/* libFuzzer target for the pickle reader (src/channel/pickle_read.c): whatever the bytes, the
 * reader returns 0 or MPROC_EPROTO (-ENOMEM only if malloc fails), never crashes, never allocates
 * beyond its limits; whatever it accepts, the writer, repr and comparison handle. Seed corpus:
 * tests/fuzz/corpus/pickle/ (pickles of a real CPython 3.11 SyncManager session, both directions,
 * recorded by tests/python/capture_manager_frames.py).
 *
 * By hand: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *            tests/fuzz/fuzz_pickle.c src/channel/pickle_*.c -lm -o fuzz_pickle
 *          ./fuzz_pickle -max_len=4096 tests/fuzz/corpus/pickle */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "mproc/common.h"

#include "channel/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mproc__pk_doc *d;
    mproc__pk *v;
    int r = mproc__pickle_read(data, size, NULL, &d, &v);
    if (r != 0) {
        if (r != MPROC_EPROTO && r != -ENOMEM) abort();
        return 0;
    }
    void *out;
    size_t n;
    r = mproc__pickle_write(v, &out, &n);
    if (r == 0) {
        /* what was written reads back */
        mproc__pk_doc *d2;
        mproc__pk *v2;
        if (mproc__pickle_read(out, n, NULL, &d2, &v2) != 0) abort();
        mproc__pk_doc_free(d2);
        free(out);
    } else if (r != -EINVAL && r != -ENOMEM)
        abort();
    char buf[256];
    mproc__pk_repr(v, buf, sizeof buf);
    mproc__pk_describe_exception(v, buf, sizeof buf);
    (void)mproc__pk_equal(v, v);
    if (v->kind == MPROC__PK_DICT && v->n) (void)mproc__pk_dict_get(v, v->u.items[0]);
    mproc__pk_doc_free(d);
    return 0;
}
