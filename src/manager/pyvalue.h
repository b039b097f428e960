/* C bytes and Python values (docs/manager.md, "Python clients"): the mapping both dialects use.
 * Bytes are Python bytes, except bytes that begin with 0x80 and hold a whole pickle, which stand
 * for the value pickled (mproc_pyvalue_* make those); a Python value that is not bytes, or is bytes
 * beginning with 0x80, travels to C as its pickle, so it comes back intact. */
#ifndef MPROC_MANAGER_PYVALUE_H
#define MPROC_MANAGER_PYVALUE_H

#include <stddef.h>

#include "channel/pickle.h"

/* The Python value of C bytes, a node of d (or of *hold, a doc the caller frees after using the
 * node, NULL when none was needed). NULL: out of memory. */
mproc__pk *mgr_pyv_node(mproc__pk_doc *d, const void *p, size_t len, mproc__pk_doc **hold);
/* The C bytes of a Python value: *data points into v (*owned NULL) or into a malloc'd *owned. 0,
 * -ENOMEM, -EINVAL (a value the writer refuses). */
int mgr_pyv_bytes(const mproc__pk *v, void **owned, const void **data, size_t *len);

#endif
