/* The seam through which handles from a manager (src/manager/, a layer far above) work with the
 * ordinary calls: mproc_dict_get, mproc_queue_put, mproc_event_wait, ... A local object is a
 * pointer into the family arena carrying its magic word; a proxy handle is not in the arena, so it
 * fails the validity check every call makes anyway, and only then does the call look here. A
 * local object pays nothing for proxies: the branch is on the error path.
 *
 * The manager layer registers the table once (mproc__proxy_register) before it hands out its
 * first proxy. Each op returns -EINVAL for a handle that is not one of its live proxies either,
 * so garbage still gets -EINVAL. */
#ifndef MPROC_SYNC_PROXY_H
#define MPROC_SYNC_PROXY_H

#include <errno.h>
#include <stddef.h>

#include "mproc/containers.h"
#include "mproc/queue.h"
#include "mproc/shared.h"
#include "mproc/sync.h"

struct mproc__proxy_ops {
    /* dict (src/container/dict.c) */
    int (*dict_set)(mproc_dict *d, const void *key, size_t klen, const void *val, size_t vlen);
    int (*dict_get)(mproc_dict *d, const void *key, size_t klen, void *buf, size_t cap,
                    size_t *len);
    int (*dict_get_alloc)(mproc_dict *d, const void *key, size_t klen, void **val, size_t *len);
    int (*dict_del)(mproc_dict *d, const void *key, size_t klen);
    int (*dict_contains)(mproc_dict *d, const void *key, size_t klen);
    int (*dict_len)(mproc_dict *d, size_t *n);
    int (*dict_clear)(mproc_dict *d);
    int (*dict_set_many)(mproc_dict *d, const mproc_dict_item *items, size_t n);
    int (*dict_get_many)(mproc_dict *d, mproc_dict_item *items, size_t n, void **block);
    int (*dict_items)(mproc_dict *d, bool keys_only, mproc_dict_item **items, size_t *n);
    void (*dict_free)(mproc_dict *d);
    /* list (src/container/list.c) */
    int (*list_append)(mproc_list *l, const void *val, size_t len);
    int (*list_insert)(mproc_list *l, ptrdiff_t index, const void *val, size_t len);
    int (*list_get)(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len);
    int (*list_get_alloc)(mproc_list *l, ptrdiff_t index, void **val, size_t *len);
    int (*list_set)(mproc_list *l, ptrdiff_t index, const void *val, size_t len);
    int (*list_pop)(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len);
    int (*list_len)(mproc_list *l, size_t *n);
    int (*list_clear)(mproc_list *l);
    void (*list_free)(mproc_list *l);
    /* queue (src/channel/queue.c); the queries return 1/0 (or the count in *n), <0 for a bad
     * handle */
    int (*queue_put)(mproc_queue *q, const void *data, size_t len, double timeout);
    int (*queue_get)(mproc_queue *q, void *buf, size_t cap, size_t *len, double timeout);
    int (*queue_get_alloc)(mproc_queue *q, void **data, size_t *len, double timeout);
    int (*queue_size)(mproc_queue *q, size_t *n);
    int (*queue_full)(mproc_queue *q);
    int (*queue_close)(mproc_queue *q);
    int (*queue_closed)(mproc_queue *q);
    int (*queue_task_done)(mproc_queue *q);
    int (*queue_join)(mproc_queue *q, double timeout);
    void (*queue_free)(mproc_queue *q);
    /* event (src/sync/event.c) */
    int (*event_set)(mproc_event *e);
    int (*event_clear)(mproc_event *e);
    int (*event_is_set)(mproc_event *e);
    int (*event_wait)(mproc_event *e, double timeout);
    void (*event_free)(mproc_event *e);
    /* lock (src/sync/lock.c) */
    int (*lock_acquire)(mproc_lock *l, double timeout);
    int (*lock_release)(mproc_lock *l);
    int (*lock_locked)(mproc_lock *l);
    void (*lock_free)(mproc_lock *l);
    /* value (src/sync/value.c) */
    int (*value_load)(mproc_value *v, void *buf, size_t len);
    int (*value_store)(mproc_value *v, const void *buf, size_t len);
    int (*value_size)(mproc_value *v, size_t *n);
    void (*value_free)(mproc_value *v);
};

/* The registered table, or NULL while no manager was used. */
extern const struct mproc__proxy_ops *mproc__proxy_ops;
void mproc__proxy_register(const struct mproc__proxy_ops *ops);

/* In a public call whose handle failed the validity check: hand the call to the proxy op, or
 * -EINVAL when no manager is in use. */
#define MPROC__PROXY_OR_EINVAL(op, ...)                                                            \
    (__atomic_load_n(&mproc__proxy_ops, __ATOMIC_ACQUIRE)                                          \
         ? __atomic_load_n(&mproc__proxy_ops, __ATOMIC_ACQUIRE)->op(__VA_ARGS__)                   \
         : -EINVAL)
/* The same with another result for a handle that is not a proxy either (a query's). */
#define MPROC__PROXY_OR(fallback, op, ...)                                                         \
    (__atomic_load_n(&mproc__proxy_ops, __ATOMIC_ACQUIRE)                                          \
         ? __atomic_load_n(&mproc__proxy_ops, __ATOMIC_ACQUIRE)->op(__VA_ARGS__)                   \
         : (fallback))
/* The same for a void call (a _free). */
#define MPROC__PROXY_VOID(op, ...)                                                                 \
    do {                                                                                           \
        const struct mproc__proxy_ops *mproc__ops_ =                                               \
            __atomic_load_n(&mproc__proxy_ops, __ATOMIC_ACQUIRE);                                  \
        if (mproc__ops_) mproc__ops_->op(__VA_ARGS__);                                             \
    } while (0)

#endif
