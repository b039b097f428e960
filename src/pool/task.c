/* The task API, used inside task functions running on pool workers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "pool/task.h"

MPROC_TLS mproc_task *mproc__task_current;

mproc_task *mproc_task_current(void)
{
    return mproc__task_current;
}

const void *mproc_task_arg(mproc_task *t, size_t *len)
{
    if (!t) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->arg_len;
    return t->arg;
}

int mproc__collect_grow(mproc__collect *c, size_t need)
{
    size_t cap = c->cap ? c->cap : 256;
    while (cap < need)
        cap *= 2;
    unsigned char *b = realloc(c->buf, cap);
    if (!b) return -ENOMEM;
    c->buf = b;
    c->cap = cap;
    return 0;
}

/* Keep an item's result (or failure message) in its chunk's collector, in place. */
static inline __attribute__((always_inline)) int collect(mproc__collect *c, const void *data,
                                                         size_t len)
{
    int r = mproc__collect_reserve(c, c->at + MPROC__PAD8(len));
    if (r < 0) return r;
    mproc__copy_pad8(c->buf + c->at, data, len);
    c->len = len;
    return 0;
}

int mproc_task_return(mproc_task *t, const void *data, size_t len)
{
    if (!t || (!data && len)) return -EINVAL;
    if (len > UINT32_MAX) return -EMSGSIZE;
    if (t->collect) return collect(t->collect, data, len);
    mproc__slot *s = t->s;
    if (len <= MPROC__SLOT_INLINE) {
        if (s->res_ext) {
            mproc__arena_free(s->res_ext);
            s->res_ext = NULL;
        }
        mproc__copy_small(s->inline_buf, data, len); /* no memcpy call for a small result */
    } else {
        if (!s->res_ext || mproc__arena_usable(s->res_ext) < len) {
            void *b;
            int r = mproc__arena_alloc(&b, len);
            if (r < 0) return r;
            mproc__arena_free(s->res_ext);
            s->res_ext = b;
        }
        memcpy(s->res_ext, data, len);
    }
    s->res_len = (uint32_t)len;
    return 0;
}

int mproc_task_fail(mproc_task *t, int code, const char *fmt, ...)
{
    if (code >= 0) code = MPROC_ETASKFAILED;
    if (!t) return code;
    t->failed = true;
    t->code = code;
    if (t->collect) t->collect->len = 0; /* no message unless one is given */
    if (fmt) {
        char buf[MPROC_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (n < 0) n = 0;
        if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
        if (t->collect) {
            collect(t->collect, buf, (size_t)n);
            return code;
        }
        void *m;
        if (mproc__arena_alloc(&m, (size_t)n + 1) == 0) {
            memcpy(m, buf, (size_t)n + 1);
            mproc__arena_free(t->s->err_msg);
            t->s->err_msg = m;
        }
    }
    return code;
}

bool mproc_task_cancelled(mproc_task *t)
{
    return t && mproc__task_cancelled(t);
}
