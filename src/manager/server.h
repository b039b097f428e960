/* Inside the manager server: the event loop and its connections (server.c), the name table, the
 * objects' requests and the parked calls (objects.c), the dict and list requests (containers.c).
 * One thread does everything, so nothing here locks. */
#ifndef MPROC_MANAGER_SERVER_H
#define MPROC_MANAGER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "channel/conn.h"
#include "manager/protocol.h"
#include "mproc/manager.h"

typedef struct mgr_conn mgr_conn;

enum { DIALECT_UNKNOWN, DIALECT_NATIVE, DIALECT_PYTHON };
/* Server-side kinds, never OPENed natively: a Python dict iterator (a snapshot of the keys), and
 * a Python RLock or Semaphore (a count in the server's memory). */
#define MGR_PY_ITER MGR_KINDS
#define MGR_PY_SYNC (MGR_KINDS + 1)
/* Parked calls of the Python dialect's own objects (never on the wire): a Condition's wait (data:
 * its state byte and the lock depth it gave up), a Barrier's wait (data: its generation, its
 * arrival index). */
#define MGR_PY_COND_WAIT 0xf000
#define MGR_PY_BARRIER_WAIT 0xf001
typedef struct mgr_obj mgr_obj;
typedef struct mgr_parked mgr_parked;
typedef struct mgr_srv mgr_srv;

struct mgr_conn {
    int fd;
    bool ready;         /* past the handshake (or no key) */
    mproc__auth_srv hs; /* the handshake's state until then */
    int64_t hs_deadline;
    mgr_conn *hs_prev, *hs_next; /* the handshakes in progress, oldest first */
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    bool polling_out, throttled, dead, tcp;
    bool pass_arena;         /* the arena's fd goes with the next bytes sent (share.c) */
    uint8_t quickacks;       /* reads after which quick ACKs were asked for (server.c) */
    uint8_t dialect;         /* DIALECT_*: fixed by the first message after the handshake */
    bool py_accepted;        /* Python dialect: a proxy's connection (after accept_connection) */
    unsigned nparked, nheld; /* parked calls, locks held */
    mgr_conn *prev, *next;
};

struct mgr_obj {
    uint32_t id;
    uint8_t kind;
    void *ptr;        /* the arena object */
    size_t size;      /* a value's */
    mgr_conn *holder; /* a lock's holder through the manager */
    bool owner_died;  /* a lock released because its holder's connection closed */
    unsigned nparked;
    uint8_t pytype;  /* the Python typeid it was made as (PY_*, pydialect.c; 0: by kind) */
    bool anon;       /* made by a Python create: freed when its Python references end */
    uint32_t pyrefs; /* references Python clients hold (incref/decref) */
    mgr_obj *hnext;  /* name hash chain */
    size_t nlen;
    char name[];
};

struct mgr_parked {
    mgr_parked *prev, *next;
    mgr_conn *c;
    mgr_obj *o;
    uint32_t id;
    uint16_t op;
    int64_t deadline; /* INT64_MAX: none */
    uint64_t cap;
    size_t len;
    unsigned char data[]; /* a put's message */
};

struct mgr_srv {
    mproc_manager_opts o;
    const unsigned char *key;
    size_t keylen;
    bool has_key, stop;
    int ep;
    mgr_conn *conns;
    size_t nconns, nhandshaking;
    mgr_conn *hs_oldest, *hs_newest;
    /* name table: hash of names, and slots by id */
    mgr_obj **buckets;
    size_t nbuckets;
    mgr_obj **slots;
    uint16_t *gens;
    size_t nslots, nobjs;
    uint32_t *free_slots;
    size_t nfree;
    mgr_parked *parked, *parked_tail;
    size_t nparked;
    int64_t next_wake;
    uint64_t *token; /* in the arena: proves a client shares it */
};

/* Replies (server.c). begin reserves room for a body of up to cap bytes and returns where to
 * write it (NULL: out of memory, the connection is then dropped); end sends what was written. */
unsigned char *mgr_reply_begin(mgr_conn *c, size_t cap);
void mgr_reply_end(mgr_conn *c, uint32_t id, int32_t status, size_t len);
void mgr_reply(mgr_conn *c, uint32_t id, int32_t status, const void *body, size_t len);

/* A message in Python's framing (the handshake's, and the Python dialect's replies). */
int mgr_send_frame(mgr_conn *c, const void *m, size_t len);

/* objects.c */
mgr_obj *mgr_by_id(mgr_srv *s, uint32_t id);
mgr_obj *mgr_find(mgr_srv *s, const char *name, size_t len);
/* The object of that name, made (kind, with the creation parameters a, b, c as OPEN's) when there
 * is none: 0, -EEXIST (another kind), -EINVAL, -ENOSPC, -ENOMEM. */
int mgr_obj_open(mgr_srv *s, uint8_t kind, uint64_t a, uint64_t b, bool c, const char *name,
                 size_t nlen, mgr_obj **out);
/* Delete o: its parked calls are answered -EIDRM (or Python's equivalent). */
void mgr_remove(mgr_srv *s, mgr_obj *o);
/* Park a blocking call that could not be done at once (timeout < 0: none). 0, -ENOSPC, -ENOMEM. */
int mgr_park(mgr_srv *s, mgr_conn *c, mgr_obj *o, uint32_t id, uint16_t op, double timeout,
             uint64_t cap, const void *data, size_t len);
/* A lock through the manager, once, without waiting: 1 would block, else 0, MPROC_EOWNERDEAD,
 * -EDEADLK (c holds it). */
int mgr_lock_try(mgr_obj *o, mgr_conn *c);

/* share.c: answer MGR_SHARE (the arena's fd then goes with the reply: pass_arena), and send bytes
 * with the arena's fd attached (sendmsg's result). */
void mgr_share_offer(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h);
/* The policy the server goes by: opt, or when 0 the environment's (read as the server starts). */
int mgr_share_policy(int opt);
ssize_t mgr_share_send(int fd, const void *buf, size_t len);

/* pydialect.c: Python's manager protocol (docs/manager.md, "Python clients"). */
/* One pickled request of a Python client. */
void mgr_py_request(mgr_srv *s, mgr_conn *c, const unsigned char *m, size_t len);
/* A parked call of a Python client tried again (1: still blocked), or timed out, or its object
 * deleted. */
int mgr_py_try(mgr_srv *s, mgr_conn *c, mgr_obj *o, uint16_t op, const void *data, size_t len);
void mgr_py_expired(mgr_srv *s, mgr_conn *c, uint16_t op, int code);
/* A parked Python call whose deadline passed, before it is expired: 1 when it waits on (a
 * Condition's wait that must take its lock back before it answers False; its deadline is then
 * none), 2 when it breaks its object for the others parked on it (a Barrier), else 0. */
int mgr_py_deadline(mgr_srv *s, mgr_parked *p);
void mgr_py_iter_free(void *it);
/* An RLock whose holder's connection closed: released. */
void mgr_py_sync_gone(mgr_obj *o);

/* Reply with what fetch(ctx, buf, cap, len) copies out, offering it room for up to cap bytes
 * (the client's buffer; UINT64_MAX: any size) within max_message; fetch returns -EMSGSIZE with the
 * size needed, and leaves the item in place, when it does not fit. 1 when fetch said -EAGAIN
 * (nothing replied), else 0. */
int mgr_reply_fetch(mgr_srv *s, mgr_conn *c, uint32_t id, uint64_t cap,
                    int (*fetch)(void *ctx, void *buf, size_t cap, size_t *len), void *ctx);
int mgr_objects_init(mgr_srv *s);
void mgr_objects_destroy(mgr_srv *s);
/* One request of a ready connection. */
void mgr_dispatch(mgr_srv *s, mgr_conn *c, const mproc__mgr_req *h, const unsigned char *body);
/* The connection is going away: its parked calls go, its locks are released. */
void mgr_conn_gone(mgr_srv *s, mgr_conn *c);
/* Retry parked calls (all, or those on o) and time out the expired ones; with o NULL also
 * recompute next_wake, the earliest deadline of those left (a park lowers it). */
void mgr_wake(mgr_srv *s, mgr_obj *o);

/* containers.c: a dict or list request (0 when done, or -ENOSYS: not one). */
int mgr_container_op(mgr_srv *s, mgr_conn *c, mgr_obj *o, const mproc__mgr_req *h,
                     const unsigned char *body);
int mgr_container_new(uint8_t kind, void **out);
void mgr_container_free(uint8_t kind, void *ptr);

/* Take every complete message out of c's input buffer (in, in_len) and answer it into c's output
 * buffer: the loop's step after a read, on its own so that tests/fuzz/fuzz_manager_protocol.c can
 * drive it without sockets. -1: drop the connection (a claimed length past max_message, or out of
 * memory). */
int mgr_conn_parse(mgr_srv *s, mgr_conn *c);

/* The loop, for mproc_manager_serve and the started server. watch_fd: a pidfd whose readiness
 * ends the server (-1: none). ready(address, arg) once listening, or the failure code. */
int mproc__mgr_serve(const char *address, const void *key, size_t keylen, bool has_key,
                     const mproc_manager_opts *opts, int watch_fd, bool quit_on_sigint,
                     void (*ready)(const char *address, int code, void *arg), void *arg);

#endif
