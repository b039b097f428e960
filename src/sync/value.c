/* Value/Array: a block of shared bytes with an optional recursive lock, all in the arena. */
#include <errno.h>
#include <stdint.h>

#include "arena/arena.h"
#include "mproc/shared.h"

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
    return valid(v) ? v->size : 0;
}

mproc_rlock *mproc_value_lock(mproc_value *v)
{
    return valid(v) ? v->lock : NULL;
}

void mproc_value_free(mproc_value *v)
{
    if (!valid(v)) return;
    v->magic = 0;
    mproc_rlock_free(v->lock);
    mproc__arena_free(v->data);
    mproc__arena_free(v);
}
