/* mproc: shared dict and list, the containers of Python's managers, living in the family arena.
 *
 * A dict maps byte-string keys to byte-string values; a list is a sequence of byte strings. Both
 * live in the family arena: a pointer works in the process that made it and in every process of
 * its family, with no server and no round trip (Python's Manager().dict() pays a socket round
 * trip per access). Each call is atomic with respect to every other call on the same container.
 * Values are copied in and out: nothing a call returns points into the container.
 *
 * A Namespace is a dict with string keys (include the terminating NUL in klen or not, but do the
 * same everywhere); there is no separate type.
 *
 * Crash safety: a process killed at any instant (SIGKILL included), in the middle of any call,
 * never wedges the container: the next caller takes over its robust lock, and the call the dead
 * process was making has either happened entirely or not at all (a torn entry is never visible);
 * at most one arena block leaks per killed call (docs/containers.md).
 *
 * Handles obtained from a manager (mproc_manager_dict(), mproc_manager_list(): include/mproc/
 * manager.h) work with the same calls; then every call is a request to the manager, and may also
 * fail with -EPIPE or MPROC_ECLOSED when the manager is gone.
 *
 * Errors common to every call: -EINVAL for a NULL, garbage or freed handle, or NULL where a
 * pointer is required; -E2BIG for a key or value past the container's limits; -ENOMEM when the
 * arena (or the malloc of an _alloc call) is exhausted; -EINTR never (no call sleeps for long).
 */
#ifndef MPROC_CONTAINERS_H
#define MPROC_CONTAINERS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_dict mproc_dict;
typedef struct mproc_list mproc_list;

/* Limits (opts NULL or fields 0: the defaults). */
#define MPROC_DICT_DEFAULT_MAX_KEY ((size_t)64 << 10)   /* 64 KiB */
#define MPROC_DICT_DEFAULT_MAX_VALUE ((size_t)64 << 20) /* 64 MiB */
#define MPROC_DICT_DEFAULT_MAX_ITEMS ((size_t)64 << 20) /* 64 M entries */
typedef struct {
    size_t max_key;   /* longest key accepted, bytes */
    size_t max_value; /* longest value accepted, bytes (also a list's items) */
    size_t max_items; /* most entries (items of a list) at once: -ENOSPC past it */
    size_t capacity;  /* entries to make room for up front (a hint; the table grows anyway) */
} mproc_dict_opts;

/* One entry, for the batch and snapshot calls. */
typedef struct {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
} mproc_dict_item;

int mproc_dict_new(mproc_dict **out, const mproc_dict_opts *opts);
/* Insert or replace. */
int mproc_dict_set(mproc_dict *d, const void *key, size_t klen, const void *val, size_t vlen);
/* Copy the value into buf (cap bytes) and its length into *len: -ENOENT when absent; -EMSGSIZE
 * when it does not fit (then *len is the size needed, nothing copied). buf may be NULL when cap is
 * 0 (a size query). */
int mproc_dict_get(mproc_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *len);
/* The same into a malloc'd buffer (free() it): -ENOENT when absent. */
int mproc_dict_get_alloc(mproc_dict *d, const void *key, size_t klen, void **val, size_t *len);
/* Remove: -ENOENT when absent. */
int mproc_dict_del(mproc_dict *d, const void *key, size_t klen);
/* 1 when present, 0 when absent, or a negative code. */
int mproc_dict_contains(mproc_dict *d, const void *key, size_t klen);
int mproc_dict_len(mproc_dict *d, size_t *n);
int mproc_dict_clear(mproc_dict *d);
/* Set n entries as one atomic step (all or none: on -E2BIG, -ENOSPC or -ENOMEM nothing changed). */
int mproc_dict_set_many(mproc_dict *d, const mproc_dict_item *items, size_t n);
/* Look up n keys (items[i].key, .klen) as one atomic step: items[i].val and .vlen point into one
 * malloc'd block stored in *block (free() it; NULL when nothing was found); an absent key leaves
 * .val NULL and .vlen 0. Returns how many were found. */
int mproc_dict_get_many(mproc_dict *d, mproc_dict_item *items, size_t n, void **block);
/* A snapshot of every entry (keys and values; with keys_only, val NULL and vlen 0), taken as one
 * atomic step, so it is consistent even while others write: *items is one malloc'd block holding
 * the array and the bytes (free() it; NULL when empty), *n its length. Order: insertion order
 * (a replaced key keeps its place), as Python's dict. */
int mproc_dict_items(mproc_dict *d, bool keys_only, mproc_dict_item **items, size_t *n);
void mproc_dict_free(mproc_dict *d);

/* List. Indexes count from 0; a negative index counts from the end (-1: the last item), as in
 * Python; an index out of range is -ERANGE (insert clamps, as Python's list.insert does). The
 * opts are the dict's (max_value bounds an item, max_items the length; max_key is unused). */
int mproc_list_new(mproc_list **out, const mproc_dict_opts *opts);
int mproc_list_append(mproc_list *l, const void *val, size_t len);
int mproc_list_insert(mproc_list *l, ptrdiff_t index, const void *val, size_t len);
/* Copy item index out, as mproc_dict_get (-EMSGSIZE with *len the size needed). */
int mproc_list_get(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len);
int mproc_list_get_alloc(mproc_list *l, ptrdiff_t index, void **val, size_t *len);
int mproc_list_set(mproc_list *l, ptrdiff_t index, const void *val, size_t len);
/* Remove item index and copy it out (buf NULL and cap 0: just remove); -EMSGSIZE leaves it in
 * place with *len the size needed. */
int mproc_list_pop(mproc_list *l, ptrdiff_t index, void *buf, size_t cap, size_t *len);
int mproc_list_len(mproc_list *l, size_t *n);
int mproc_list_clear(mproc_list *l);
void mproc_list_free(mproc_list *l);

#ifdef __cplusplus
}
#endif

#endif
