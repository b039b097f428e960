/* The manager's wire protocol (docs/manager.md, "Protocol").
 *
 * After the authkey handshake (Python's, in Python's framing) every message is a little-endian
 * header and a body. A request names its object by the id an OPEN returned and carries an id of
 * its own; the server answers every request exactly once (CANCEL excepted: it answers the request
 * it cancels), with the request's id, in any order: replies to parked calls come when they are
 * done. So a client may pipeline, and a reply whose caller gave up (-EINTR) is recognised by its
 * id and dropped. */
#ifndef MPROC_MANAGER_PROTOCOL_H
#define MPROC_MANAGER_PROTOCOL_H

#include <stdint.h>
#include <string.h>

#define MPROC__MGR_VERSION 1

typedef struct {
    uint32_t len; /* body bytes after the header */
    uint32_t id;
    uint16_t op;
    uint16_t flags;
    uint32_t obj;
} mproc__mgr_req;

typedef struct {
    uint32_t len;
    uint32_t id;
    int32_t status; /* 0, a result count, or a negative code */
} mproc__mgr_rep;

enum {
    MGR_HELLO = 1, /* body u32 version; reply u64 arena_lo, u64 token_ptr, u64 token, u64 max_msg */
    MGR_OPEN,      /* body u8 kind, u64 a, u64 b, u8 c, then the name; reply u32 obj, u64 ptr,
                      u64 size (a value's) */
    MGR_DELETE,    /* body: the name */
    MGR_SHUTDOWN,
    MGR_CANCEL, /* body u32 id of a parked request: it is answered -ECANCELED if still parked */
    MGR_SHARE,  /* reply u64 base, u64 size, build id, u64 pidns dev, u64 pidns ino, with the
                   arena's memfd (SCM_RIGHTS) on its bytes (manager/share.c) */

    MGR_DICT_SET = 16, /* u32 klen, key, value */
    MGR_DICT_GET,      /* key; reply: the value */
    MGR_DICT_DEL,
    MGR_DICT_CONTAINS,
    MGR_DICT_LEN, /* reply u64 */
    MGR_DICT_CLEAR,
    MGR_DICT_SET_MANY, /* u32 n, then n x (u32 klen, u32 vlen, key, value) */
    MGR_DICT_GET_MANY, /* u32 n, then n x (u32 klen, key); reply n x (u32 vlen or ~0, value) */
    MGR_DICT_ITEMS,    /* u8 keys_only; reply u32 n, n x (u32 klen, u32 vlen, key, value) */

    MGR_LIST_APPEND = 32, /* value */
    MGR_LIST_INSERT,      /* i64 index, value */
    MGR_LIST_GET,         /* i64 index; reply: the item */
    MGR_LIST_SET,         /* i64 index, value */
    MGR_LIST_POP,         /* i64 index, u64 cap (~0: any); reply: the item (or its size) */
    MGR_LIST_LEN,
    MGR_LIST_CLEAR,

    MGR_QUEUE_PUT = 48, /* f64 timeout, data */
    MGR_QUEUE_GET,      /* f64 timeout, u64 cap (~0: any); reply: the message */
    MGR_QUEUE_SIZE,     /* reply u64 */
    MGR_QUEUE_FULL,
    MGR_QUEUE_CLOSE,
    MGR_QUEUE_CLOSED,
    MGR_QUEUE_TASK_DONE,
    MGR_QUEUE_JOIN, /* f64 timeout */

    MGR_EVENT_SET = 64,
    MGR_EVENT_CLEAR,
    MGR_EVENT_IS_SET,
    MGR_EVENT_WAIT, /* f64 timeout */

    MGR_LOCK_ACQUIRE = 80, /* f64 timeout */
    MGR_LOCK_RELEASE,
    MGR_LOCK_LOCKED,

    MGR_VALUE_LOAD = 96, /* u64 len; reply: the bytes */
    MGR_VALUE_STORE,     /* the bytes */
};

/* Kinds of named objects. */
enum { MGR_DICT = 1, MGR_LIST, MGR_QUEUE, MGR_EVENT, MGR_LOCK, MGR_VALUE, MGR_KINDS };

#define MPROC__MGR_NAME_MAX 255

/* Little-endian fields (every supported machine is; the copy is what makes unaligned safe). */
static inline uint32_t mgr_get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t mgr_get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline double mgr_getf64(const unsigned char *p)
{
    double v;
    memcpy(&v, p, 8);
    return v;
}
static inline unsigned char *mgr_put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}
static inline unsigned char *mgr_put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
    return p + 8;
}
static inline unsigned char *mgr_putf64(unsigned char *p, double v)
{
    memcpy(p, &v, 8);
    return p + 8;
}

#endif
