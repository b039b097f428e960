/* Where the manager layer's proxy table is registered (see proxy.h). */
#include "sync/proxy.h"

const struct mproc__proxy_ops *mproc__proxy_ops;

void mproc__proxy_register(const struct mproc__proxy_ops *ops)
{
    __atomic_store_n(&mproc__proxy_ops, ops, __ATOMIC_RELEASE);
}
