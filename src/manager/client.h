/* The client's side of the manager: one connection per process (client.c), the handles it gives
 * out (proxy.c, proxy_containers.c), the public calls (manager.c). */
#ifndef MPROC_MANAGER_CLIENT_H
#define MPROC_MANAGER_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "manager/protocol.h"
#include "mproc/conn.h"
#include "mproc/manager.h"
#include "mproc/process.h"

typedef struct mgr_wait mgr_wait;
typedef struct mgr_proxy mgr_proxy;
typedef struct mgr_pyproxy mgr_pyproxy;
struct mproc__pym;

struct mproc_manager {
    uint32_t magic;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *address;
    unsigned char *key;
    size_t keylen;
    bool has_key;
    double handshake_timeout;
    /* MPROC_MANAGER_DIALECT_*: AUTO until the first connect found out */
    int dialect;
    double reply_timeout;   /* the connect's waits (HELLO, the probe); > 0 */
    struct mproc__pym *pym; /* the Python manager (dialect PYTHON) */
    /* the connection, this process's (pid): after a fork the child makes its own */
    mproc_conn *conn;
    int fd;
    pid_t pid;
    uint64_t gen; /* counts connections made: a proxy from an older one finds its object again */
    bool family;  /* the server shares this process's arena */
    uint64_t max_message;
    uint32_t next_id;
    bool reading; /* a thread reads replies for everyone */
    mgr_wait *waits;
    unsigned char *in;
    size_t in_len, in_cap;
    /* a server this handle started, by the process starter */
    mproc_process *server;
    pid_t starter;
    mgr_proxy *proxies;
};

/* Where a reply's body goes: into buf when it fits (len: its size in any case); bigger ones into
 * a malloc'd *alloc when alloc is not NULL, else dropped (the caller sees len > cap). The body of
 * an error reply (up to 8 bytes: the size needed, for -EMSGSIZE) goes into err. */
typedef struct {
    int32_t status;
    unsigned char err[8];
    void *buf;
    size_t cap;
    size_t len;
    void **alloc;
} mgr_result;

/* One request and its reply: 0 with res->status, or -EPIPE (no server), -EMSGSIZE (request too
 * large), -ENOMEM. interruptible: a signal handler that ran while it waited withdraws the request
 * (the server answers -ECANCELED, turned into -EINTR in res->status) unless it was done first. */
int mgr_call(mproc_manager *m, uint16_t op, uint32_t obj, const struct iovec *iov, int niov,
             bool interruptible, mgr_result *res);
/* Connect (again): 0 or the connection's code, or with dialect AUTO MGR_SPEAKS_PYTHON (the
 * dialect is then PYTHON, no connection kept). Caller holds m->mu. */
#define MGR_SPEAKS_PYTHON 1
int mgr_connect_locked(mproc_manager *m);
void mgr_disconnect_locked(mproc_manager *m);
/* share.c: right after HELLO, on a unix socket, in a process with no arena yet (and
 * MPROC_MANAGER_MAP not 0): ask for the server's arena and map it if this process may. 0 (mapped
 * or not: the caller checks the arena again), or -EPIPE / MPROC_EPROTO (the connection is then
 * out of step). Caller holds m->mu, with no other request in flight. */
int mgr_share_adopt(mproc_manager *m);

/* A proxy: a heap handle, so the objects' validity checks reject it and hand it to proxy.c. */
struct mgr_proxy {
    uint32_t magic;
    uint8_t kind;
    mproc_manager *m;
    uint32_t obj;
    uint64_t gen;
    uint64_t a, b; /* the creation parameters, to make it again after a reconnect */
    bool c;
    size_t size;
    mgr_proxy *prev, *next;
    mgr_pyproxy *py; /* a Python manager's object (proxy_python.c): the calls go there */
    size_t nlen;
    char name[];
};

/* OPEN a name: the arena pointer for a family member (*local), else a new proxy (*proxy). */
int mgr_open(mproc_manager *m, uint8_t kind, const char *name, uint64_t a, uint64_t b, bool c,
             void **local, mgr_proxy **proxy);
void mgr_proxy_free(mgr_proxy *p);
/* The live proxy h is, of that kind (NULL: not one). Registers the ops table on first use. */
mgr_proxy *mgr_proxy_get(const void *h, uint8_t kind);
void mgr_proxy_register_ops(void);
/* proxy_containers.c: the dict and list ops into the table. */
struct mproc__proxy_ops;
void mgr_proxy_fill_containers(struct mproc__proxy_ops *ops);
/* proxy_python.c: a proxy of a Python manager's object, made by its registered name or typeid
 * (kind checked against its exposed methods: -EEXIST), its ops (the same table's), its end. */
int mgr_py_open(mproc_manager *m, uint8_t kind, const char *name, const mproc_queue_opts *qo,
                mgr_proxy **out);
extern const struct mproc__proxy_ops mgr_py_ops;
void mgr_py_proxy_free(mgr_pyproxy *py);
/* The calling thread's last Python exception text through m ("" after a call that had none). */
void mgr_py_set_error(const mproc_manager *m, const char *text);
const char *mgr_py_error(const mproc_manager *m);
/* Add p to the set of live proxies and to m's list. */
int mgr_proxy_add(mproc_manager *m, mgr_proxy *p);

/* A call on a proxy's object, finding it again by name after a reconnect. */
int mgr_proxy_call(mgr_proxy *p, uint16_t op, const struct iovec *iov, int niov, bool interruptible,
                   mgr_result *res);

#endif
