/* Inside the manager server: the event loop and its connections (server.c), the name table, the
 * objects' requests and the parked calls (objects.c), the dict and list requests (containers.c).
 * One thread does everything, so nothing here locks. */
#ifndef MPROC_MANAGER_SERVER_H
#define MPROC_MANAGER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manager/protocol.h"
#include "mproc/manager.h"

typedef struct mgr_conn mgr_conn;
typedef struct mgr_obj mgr_obj;
typedef struct mgr_parked mgr_parked;
typedef struct mgr_srv mgr_srv;

struct mgr_conn {
    int fd;
    int state; /* handshake steps, then READY */
    int64_t hs_deadline;
    unsigned char challenge[64];
    unsigned char *in;
    size_t in_len, in_cap;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    bool polling_out, throttled, dead;
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
    mgr_obj *hnext; /* name hash chain */
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

/* objects.c */
/* Reply with what fetch(ctx, buf, cap, len) copies out, offering it room for up to cap bytes
 * (the client's buffer; UINT64_MAX: any size) within max_message; fetch returns -EMSGSIZE with the
 * size needed, and leaves the item in place, when it does not fit. 1 when fetch said -EAGAIN
 * (nothing replied), else 0. */
int mgr_reply_fetch(mgr_srv *s, mgr_conn *c, uint32_t id, uint64_t cap,
                    int (*fetch)(void *ctx, void *buf, size_t cap, size_t *len), void *ctx);
int mgr_objects_init(mgr_srv *s);
void mgr_objects_destroy(mgr_srv *s);
/* One request of a READY connection. */
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

/* The loop, for mproc_manager_serve and the started server. watch_fd: a pidfd whose readiness
 * ends the server (-1: none). ready(address, arg) once listening, or the failure code. */
int mproc__mgr_serve(const char *address, const void *key, size_t keylen, bool has_key,
                     const mproc_manager_opts *opts, int watch_fd, bool quit_on_sigint,
                     void (*ready)(const char *address, int code, void *arg), void *arg);

#endif
