/* mproc: managers, named shared objects for processes outside the family (Python's
 * multiprocessing.managers.SyncManager).
 *
 * Inside a family (a program and the children it starts) the arena already shares dicts, lists,
 * queues, events, locks and values with no server at all. A manager is for the rest: an unrelated
 * program on the same machine, or a program on another machine, reaches named objects through a
 * server process by an address ("unix:/path", "unix:@name", "tcp:host:port", as for listeners)
 * and an authkey (Python's HMAC handshake; "tcp:" without a key is refused with -EINVAL).
 *
 * mproc_manager_dict(m, "name", &d) (and _list, _queue, _event, _lock, _value) makes the object
 * the first time a name is asked for and returns a handle that works with the ordinary calls
 * (mproc_dict_get, mproc_queue_put, mproc_event_wait, mproc_lock_acquire, ...). In a process of
 * the server's family (the program that started it and its children) the handle is the arena
 * object itself: calls on it make no round trip. Anywhere else it is a proxy: every call is a
 * request to the server, and blocking calls wait in the server (never blocking it) with their
 * timeouts. Handles are released with mproc_manager_free (a proxy's own _free releases just that
 * proxy; on a family member's handle, which is the object itself, _free would free the object for
 * everyone: use mproc_manager_delete instead).
 *
 * Through a proxy, besides the calls' own codes:
 *   -EPIPE         the manager is gone (its connection closed). The next call tries to connect
 *                  again (so does mproc_manager_reconnect): when a server is back at the address,
 *                  calls work again, on objects made afresh by name.
 *   -EIDRM         the object was deleted (mproc_manager_delete) since the handle was made
 *   -EMSGSIZE      a request or reply larger than the manager's max_message
 *   -ENOSPC        a limit of the manager (objects, parked waits) is reached
 *   -EINTR         as for the local call: a signal handler ran while the call waited. The request
 *                  is withdrawn from the server first, so the connection stays in step, and what it
 *                  waited for wins a tie (a message taken, a lock acquired: that result is
 *                  returned instead).
 * mproc_value_ptr and mproc_value_lock return NULL for a proxy: use mproc_value_load and
 * mproc_value_store. A proxied lock is owned by the client process's connection (not a thread):
 * when that connection closes (the client died) while holding it, the server releases it and the
 * next acquirer through the manager gets MPROC_EOWNERDEAD. A family member that uses the lock
 * directly does not learn of such a death.
 *
 * A Python program's multiprocessing SyncManager/BaseManager client may connect to the same
 * server, unmodified (the first message after the handshake picks its dialect): m.get_jobs() is
 * the object named "jobs", Python bytes are C bytes and other Python values are kept as their
 * pickle (docs/manager.md, "Python clients").
 *
 * Named objects live until mproc_manager_delete (or the server's end); there is no distributed
 * reference counting. Details: docs/manager.md.
 */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include "common.h"
#include "containers.h"
#include "queue.h"
#include "shared.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_manager mproc_manager;

/* Defaults of the server's limits (opts NULL or fields 0). */
#define MPROC_MANAGER_DEFAULT_MAX_MESSAGE ((size_t)64 << 20) /* one request or reply */
#define MPROC_MANAGER_DEFAULT_MAX_OBJECTS 65536
#define MPROC_MANAGER_DEFAULT_MAX_CONNECTIONS 1024
#define MPROC_MANAGER_DEFAULT_MAX_PARKED 65536 /* blocking calls waiting in the server */
#define MPROC_MANAGER_MAX_OBJECTS ((size_t)1 << 20)

/* Who may map the server's arena (mproc_manager_opts.share_arena): a native client on the same
 * machine (a unix socket) that is allowed maps it and uses the objects directly, at memory speed,
 * as a family member does; any other gets proxies. */
enum {
    MPROC_MANAGER_SHARE_DEFAULT, /* env MPROC_MANAGER_SHARE_ARENA (same-user, none, any-user), else
                                    same-user */
    MPROC_MANAGER_SHARE_SAME_USER, /* a client process of the server's user id (SO_PEERCRED) */
    MPROC_MANAGER_SHARE_NONE,      /* nobody: every outside client gets proxies */
    MPROC_MANAGER_SHARE_ANY_USER,  /* any client that connected (and passed the key) */
};

typedef struct {
    /* Keep the server running after the process that started it ends (until
     * mproc_manager_shutdown, or a signal). Otherwise it ends with its starter. Under the "thread"
     * start method the server is a thread of the program and ends with it regardless. */
    bool detached;
    size_t max_message;       /* bytes of one request or reply, 0: default */
    size_t max_objects;       /* named objects, 0: default; at most MPROC_MANAGER_MAX_OBJECTS */
    size_t max_connections;   /* clients at once, 0: default; more are closed at accept */
    size_t max_parked;        /* blocking calls parked in the server at once, 0: default */
    double handshake_timeout; /* a client has this long to pass the handshake; 0: 20 s */
    /* mproc_manager_serve only: called once the server listens, with its address. */
    void (*ready)(const char *address, void *arg);
    void *ready_arg;
    int share_arena; /* MPROC_MANAGER_SHARE_*: who may map the arena (0: env, else same-user) */
} mproc_manager_opts;

/* Start a server process listening on address (port 0 picks one: mproc_manager_address) and
 * connect to it. The server ignores SIGINT (Ctrl-C at the terminal reaches the program, not its
 * manager), is a family member of the caller (its objects live in the family arena) and ends with
 * the caller unless opts->detached. authkey: NULL for no handshake (unix addresses only).
 * -EINVAL (bad argument, tcp without a key), -EADDRINUSE, the listener's codes, -ECHILD (the
 * server died starting). */
int mproc_manager_start(mproc_manager **out, const char *address, const void *authkey,
                        size_t keylen, const mproc_manager_opts *opts);
/* Connect to a running server (any process, in the family or not). Over a unix address, a
 * process with no arena of its own yet maps the server's when the server's share_arena policy
 * lets it (and MPROC_MANAGER_MAP is not 0): it then gets the objects themselves, as a family
 * member does, rather than proxies (docs/manager.md, "Same machine: the arena mapped").
 * MPROC_EAUTH (wrong key), -ECONNREFUSED / -ENOENT (nobody there), -ETIMEDOUT. */
int mproc_manager_connect(mproc_manager **out, const char *address, const void *authkey,
                          size_t keylen);
/* The server's address in listener syntax (the bound port for tcp port 0). NULL for a bad handle.
 */
const char *mproc_manager_address(const mproc_manager *m);
/* Drop the connection and connect again (after a fork, this is done on the next call anyway).
 * Every proxy finds its object again by name on its next call. */
int mproc_manager_reconnect(mproc_manager *m);
/* Ask the server to end (it releases every object) and wait for it: 0, or -EPIPE when it is
 * already gone. The handle stays to be freed. */
int mproc_manager_shutdown(mproc_manager *m);
/* Close the connection and free the handle and its proxies. A server this handle started, not
 * detached and still running, is shut down. NULL-safe. */
void mproc_manager_free(mproc_manager *m);
/* Remove a named object: 0, -ENOENT. Proxies to it then get -EIDRM. */
int mproc_manager_delete(mproc_manager *m, const char *name);

/* Named objects, made on first use. A name is 1..255 bytes; asking for a name that holds an
 * object of another kind: -EEXIST. The creation parameters (opts, size, lock) apply only when the
 * object is made. */
int mproc_manager_dict(mproc_manager *m, const char *name, mproc_dict **out);
int mproc_manager_list(mproc_manager *m, const char *name, mproc_list **out);
int mproc_manager_queue(mproc_manager *m, const char *name, const mproc_queue_opts *opts,
                        mproc_queue **out);
int mproc_manager_event(mproc_manager *m, const char *name, mproc_event **out);
int mproc_manager_lock(mproc_manager *m, const char *name, mproc_lock **out);
int mproc_manager_value(mproc_manager *m, const char *name, size_t size, bool lock,
                        mproc_value **out);

/* Run a server in the calling process until mproc_manager_shutdown from a client, SIGTERM or
 * SIGINT (what the mproc-manager command does): 0 on such an end, or the listener's codes. */
int mproc_manager_serve(const char *address, const void *authkey, size_t keylen,
                        const mproc_manager_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
