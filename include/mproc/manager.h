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

#include <stdint.h>

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
/* Connect to a running server (any process, in the family or not): an mproc server, or a Python
 * BaseManager/SyncManager (found by a probe after the handshake: mproc_manager_connect_opts).
 * Over a unix address, a process with no arena of its own yet maps an mproc server's arena when
 * the server's share_arena policy lets it (and MPROC_MANAGER_MAP is not 0): it then gets the
 * objects themselves, as a family member does, rather than proxies (docs/manager.md, "Same
 * machine: the arena mapped"). MPROC_EAUTH (wrong key), -ECONNREFUSED / -ENOENT (nobody there),
 * -ETIMEDOUT (no answer within 10 s). */
int mproc_manager_connect(mproc_manager **out, const char *address, const void *authkey,
                          size_t keylen);
/* Which protocol a client handle speaks (mproc_manager_client_opts.dialect, mproc_manager_dialect).
 */
typedef enum {
    MPROC_MANAGER_DIALECT_AUTO = 0, /* find out at connect time (a probe after the handshake) */
    MPROC_MANAGER_DIALECT_NATIVE,   /* an mproc server's own protocol */
    MPROC_MANAGER_DIALECT_PYTHON,   /* Python's multiprocessing.managers protocol */
} mproc_dialect;

typedef struct {
    /* AUTO (default): one probe request after the handshake, a pickle that a Python server answers
     * with an exception and an mproc server recognises, switching that connection to its native
     * protocol. NATIVE skips the probe; against a Python server the connect then fails with
     * -EPROTONOSUPPORT once timeout has passed with no answer to its HELLO. PYTHON speaks
     * Python's protocol (an mproc server speaks it too). */
    mproc_dialect dialect;
    /* Bound on each wait of the connect (the handshake, the probe, HELLO or Python's dummy
     * request) and of the manager-level requests of a Python manager (create, incref); 0: 10 s.
     * A call on an object (a queue's get, an event's wait) has its own timeout instead. */
    double timeout;
} mproc_manager_client_opts;

/* mproc_manager_connect with options (NULL: defaults). Besides its codes: -EPROTONOSUPPORT (a
 * forced NATIVE dialect got no answer from the server: not an mproc manager), -ETIMEDOUT (no
 * answer to the probe). Against a Python manager (BaseManager/SyncManager, any address it can
 * listen on; Python always needs a key) the handles are proxies speaking Python's protocol:
 *   mproc_manager_dict(m, name, &d), _list, _queue, _event, _lock: name is what Python's
 *     registry calls it, a name registered on the server ("get_jobs": m.get_jobs() in Python) or
 *     a SyncManager typeid ("dict", "list", "Queue", "Event", "Lock": a new object, freed with its
 *     handle). -EEXIST when the object's exposed methods are not of that kind. _value and
 *     mproc_manager_delete: -ENOTSUP.
 *   values: C bytes are Python bytes; bytes that begin with 0x80 and hold a pickle stand for the
 *     value pickled (mproc_pyvalue_str, _int, _float make them): what Python stores as str, int or
 *     float reads in C as its pickle, decoded by mproc_pyvalue_get_str, _int, _float.
 *   codes: KeyError -> -ENOENT (get, del), IndexError -> -ERANGE, queue.Empty / queue.Full ->
 * -EAGAIN (timeout 0) or -ETIMEDOUT, any other exception -> MPROC_EREMOTE with its text in
 * mproc_manager_remote_error; calls Python's proxies lack (queue close, lock locked, a timed queue
 * join) -> -ENOTSUP. a handle may be used by several threads at once (each call takes a connection
 * of its own when another is busy) and in fork children made after it (they open their own
 * connections); a pool worker started before the handle was made does not have it. A blocking call
 *     interrupted by a signal (-EINTR) closes its connection; the server's thread may still take
 *     the item or lock it was waiting for. */
int mproc_manager_connect_opts(mproc_manager **out, const char *address, const void *authkey,
                               size_t keylen, const mproc_manager_client_opts *opts);
/* The dialect the handle speaks (NATIVE or PYTHON), or -EINVAL for a bad handle. */
int mproc_manager_dialect(const mproc_manager *m);
/* The text of the last Python exception a call through m got in the calling thread ("KeyError:
 * 'x'", or a traceback, cut at 4 KiB), "" when that call had none. Valid until the thread's next
 * call through a Python manager. */
const char *mproc_manager_remote_error(const mproc_manager *m);

/* Python values as bytes, the form both dialects use for anything but bytes: its pickle
 * (protocol 4, as mproc's writer makes it, so equal values give equal bytes and the result works
 * as a dict key). Each writes at most cap bytes into buf and sets *len to the size needed: 0, or
 * -EMSGSIZE when cap is too small (nothing useful written), or -EINVAL (s is not UTF-8). An
 * integral float used as a key is stored as an int by both servers: use _int. */
int mproc_pyvalue_str(void *buf, size_t cap, const char *s, size_t slen, size_t *len);
int mproc_pyvalue_int(void *buf, size_t cap, int64_t v, size_t *len);
int mproc_pyvalue_float(void *buf, size_t cap, double v, size_t *len);
/* The reverse: 0, or -EINVAL when data is not the pickle of a value of that type. _get_str copies
 * the UTF-8 text and a NUL (-EMSGSIZE when cap is below *slen + 1, *slen the length in any case);
 * _get_int takes an int or a bool (-ERANGE past int64); _get_float a float or an int. */
int mproc_pyvalue_get_str(const void *data, size_t len, char *buf, size_t cap, size_t *slen);
int mproc_pyvalue_get_int(const void *data, size_t len, int64_t *v);
int mproc_pyvalue_get_float(const void *data, size_t len, double *v);

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
