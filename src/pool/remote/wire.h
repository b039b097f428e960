/* The messages between rank 0 and the worker ranks (remote.c, serve.c). Every message starts with
 * a wire_hdr; records are 8-aligned and their variable parts padded to 8 bytes. The ranks run the
 * same executable on the same architecture (checked at start-up), so structs travel as they are.
 * Between one pair of ranks messages arrive in the order sent. */
#ifndef MPROC_POOL_REMOTE_WIRE_H
#define MPROC_POOL_REMOTE_WIRE_H

#include <stdint.h>

#include "pool/remote/modules.h"

/* A message's target size: tasks and results are packed up to this, and a larger one travels
 * alone. */
#define MPROC__WIRE_BATCH (64u << 10)

enum {
    WIRE_HELLO = 1,  /* 0 -> w: module table (wire_mod each) */
    WIRE_HELLO_ACK,  /* w -> 0: wire_hello_ack */
    WIRE_MODULE,     /* 0 -> w: one more module (n = its index) */
    WIRE_POOL_NEW,   /* 0 -> w: wire_pool_new + initarg */
    WIRE_POOL_ACK,   /* w -> 0: wire_pool_ack */
    WIRE_TASKS,      /* 0 -> w: n wire_task + their arguments */
    WIRE_CANCEL,     /* 0 -> w: n wire_cancel */
    WIRE_RESULTS,    /* w -> 0: n wire_result + their bytes */
    WIRE_POOL_CLOSE, /* 0 -> w: finish the queued tasks, then stop the workers */
    WIRE_POOL_TERM,  /* 0 -> w: kill the workers now */
    WIRE_POOL_DONE,  /* w -> 0: the pool's workers are gone */
    WIRE_LOG,        /* w -> 0: one log record (level in n), text */
    WIRE_SHUTDOWN,   /* 0 -> w: leave */
};

typedef struct {
    uint32_t type, pool, n, pad;
} wire_hdr;

typedef struct {
    uint32_t main, id_len, path_len, pad;
    uint8_t id[MPROC__MOD_ID_MAX];
    /* then path_len bytes (with the NUL), padded */
} wire_mod;

typedef struct {
    int32_t code;
    int32_t cpus;
    char host[64];
    char msg[512];
} wire_hello_ack;

/* An address as (module, offset); mod MPROC__MOD_NONE: NULL. */
typedef struct {
    uint32_t mod, pad;
    uint64_t off;
} wire_ref;

typedef struct {
    int32_t workers; /* per rank; 0: its CPU count */
    uint32_t max_tasks;
    uint64_t max_rss;
    double task_timeout, restart_window;
    uint32_t max_restarts, initarg_len;
    wire_ref initializer, initarg; /* initarg: an address when initarg_len is 0 */
    char name[56];
    char start_method[16];
} wire_pool_new;

typedef struct {
    int32_t code;
    int32_t workers;
    char msg[256];
} wire_pool_ack;

enum { TASK_PLAIN, TASK_IMAP, TASK_MAP };

typedef struct {
    uint32_t idx, tag;
    wire_ref fn;
    uint32_t arg_len, kind;
    int64_t timeout_ns;
    int32_t soft_ms;
    uint32_t pad;
    /* then arg_len bytes, padded */
} wire_task;

/* The argument of a TASK_MAP task: the items follow. */
typedef struct {
    wire_ref fn, arg;
    uint64_t in_size, out_size, count, first, arg_size;
    /* then arg_size bytes (padded) when the map's arg was copied, then the items */
} wire_map;

typedef struct {
    uint32_t idx, tag;
} wire_cancel;

typedef struct {
    uint32_t idx, tag;
    uint32_t kind; /* MPROC__SLOT_DONE_* */
    int32_t code, sig, status, pid;
    uint32_t res_len, msg_len, seat;
    uint64_t progress; /* a map chunk's item when it failed */
    /* then res_len bytes (padded), msg_len bytes (padded, no NUL) */
} wire_result;

/* A WIRE_LOG record (level in the header's n), then len bytes of message. */
typedef struct {
    int32_t pid, line;
    uint32_t len, pad;
    char process[64];
    char file[64];
    char func[64];
} wire_log;

#define WIRE_PAD(n) (((n) + 7) & ~(size_t)7)

#endif
