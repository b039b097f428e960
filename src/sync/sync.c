/* What every synchronisation primitive's constructor does, in one place (see sync.h). */
#include <errno.h>

#include "sync/sync.h"

int mproc__sync_new(void **out, bool args_ok, size_t size, uint32_t magic,
                    int (*init)(void *obj, void *arg), void *arg)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!args_ok) return -EINVAL;
    void *obj;
    int r = mproc__arena_alloc(&obj, size);
    if (r < 0) return r;
    if (init) {
        r = init(obj, arg);
        if (r < 0) {
            mproc__arena_free(obj);
            return r;
        }
    }
    __atomic_store_n((uint32_t *)obj, magic, __ATOMIC_RELEASE);
    *out = obj;
    return 0;
}
