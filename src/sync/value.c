/* Value/Array: a block of shared bytes with an optional recursive lock, all in the arena. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "arena/arena.h"
#include "mproc/shared.h"
#include "sync/proxy.h"

#define VALUE_MAGIC 0x76616c75U

struct mproc_value {
    uint32_t magic;
    size_t size;
    mproc_rlock *lock;
    void *data;
};

static bool valid(const mproc_value *v)
{
    return v && mproc__arena_contains(v, sizeof *v) && v->magic == VALUE_MAGIC;
}

int mproc_value_new(mproc_value **out, size_t size, bool lock)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (size == 0) return -EINVAL;
    mproc_value *v;
    int r = mproc__arena_alloc((void **)&v, sizeof *v);
    if (r < 0) return r;
    r = mproc__arena_alloc(&v->data, size);
    if (r == 0 && lock) r = mproc_rlock_new(&v->lock);
    if (r < 0) {
        mproc__arena_free(v->data);
        mproc__arena_free(v);
        return r;
    }
    v->size = size;
    v->magic = VALUE_MAGIC;
    *out = v;
    return 0;
}

void *mproc_value_ptr(mproc_value *v)
{
    return valid(v) ? v->data : NULL;
}

size_t mproc_value_size(mproc_value *v)
{
    if (valid(v)) return v->size;
    size_t n = 0;
    return v && MPROC__PROXY_OR(-EINVAL, value_size, v, &n) == 0 ? n : 0;
}

/* Copy under the value's lock, if it has one. The lock is recursive, so a caller already holding
 * it (to make several calls one step) may call these. */
static int copy(mproc_value *v, void *dst, const void *src, size_t len)
{
    if (len > v->size || (!dst && len)) return -EINVAL;
    if (v->lock) {
        int r;
        do
            r = mproc_rlock_acquire(v->lock, MPROC_FOREVER);
        while (r == -EINTR);
        if (r < 0 && r != MPROC_EOWNERDEAD) return r;
    }
    if (len) memcpy(dst, src, len);
    if (v->lock) mproc_rlock_release(v->lock);
    return 0;
}

int mproc_value_load(mproc_value *v, void *buf, size_t len)
{
    if (!valid(v)) return v ? MPROC__PROXY_OR_EINVAL(value_load, v, buf, len) : -EINVAL;
    return copy(v, buf, v->data, len);
}

int mproc_value_store(mproc_value *v, const void *buf, size_t len)
{
    if (!valid(v)) return v ? MPROC__PROXY_OR_EINVAL(value_store, v, buf, len) : -EINVAL;
    if (!buf && len) return -EINVAL;
    return copy(v, v->data, buf, len);
}

mproc_rlock *mproc_value_lock(mproc_value *v)
{
    return valid(v) ? v->lock : NULL;
}

void mproc_value_free(mproc_value *v)
{
    if (!valid(v)) {
        if (v) MPROC__PROXY_VOID(value_free, v);
        return;
    }
    v->magic = 0;
    mproc_rlock_free(v->lock);
    mproc__arena_free(v->data);
    mproc__arena_free(v);
}
