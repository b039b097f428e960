/* A client of a Python multiprocessing manager (BaseManager, SyncManager), speaking its protocol
 * as CPython 3.11-3.13 do (docs/pickle.md): pickled requests (ident, methodname, args, kwds) over
 * mproc connections with the authkey handshake.
 *
 * Python's protocol costs a connection per manager-level request (create, incref, decref: the
 * server answers one request and closes) and one more per proxy for its method calls (opened by
 * the first call with accept_connection, kept open). Every socket gets TCP_NODELAY, and
 * TCP_QUICKACK after each read, so the server's replies are acknowledged at once (without it a
 * Python server stalls 40 ms per new connection on delayed ACKs).
 *
 * Replies map to codes: '#RETURN' -> 0 and the value; '#ERROR' KeyError -> -ENOENT, IndexError ->
 * -ERANGE, queue.Empty and queue.Full -> -EAGAIN (-ETIMEDOUT from the timed helpers when they had a
 * timeout), any other exception -> MPROC_EREMOTE; '#TRACEBACK' and '#UNSERIALIZABLE' ->
 * MPROC_EREMOTE. The exception's text ("KeyError: 'x'", or the whole traceback) stays readable with
 * mproc__pym_error until the next call on the same handle. A proxy is used by one thread at a time
 * (Python gives each thread its own connection); a call that fails midway (-EINTR, a timeout, a
 * broken connection) closes the proxy's connection, so a late reply can never be read as the answer
 * to the next call: the next call opens a new one.
 */
#ifndef MPROC_CHANNEL_PYMANAGER_H
#define MPROC_CHANNEL_PYMANAGER_H

#include <stddef.h>

#include "channel/pickle.h"

typedef struct mproc__pym mproc__pym;
typedef struct mproc__pym_proxy mproc__pym_proxy;

/* A call answered with '#PROXY': the result is a new shared object (mproc__pym_take_proxy). */
#define MPROC__PYM_PROXY 1

/* Connect to the manager at address ("tcp:host:port", "unix:/path", "unix:@name") with its
 * authkey, checking both with a 'dummy' request as BaseManager.connect does. 0, MPROC_EAUTH,
 * -ECONNREFUSED, ... */
int mproc__pym_connect(mproc__pym **out, const char *address, const void *authkey, size_t keylen);
/* The same with a bound on the handshake and on each manager-level reply (timeout 0: none). */
int mproc__pym_connect_timeout(mproc__pym **out, const char *address, const void *authkey,
                               size_t keylen, double timeout);
/* The handle without the check, for a caller that has just had an answer from the server. */
int mproc__pym_open(mproc__pym **out, const char *address, const void *authkey, size_t keylen,
                    double timeout);
void mproc__pym_free(mproc__pym *m);

/* A manager-level request (create, number_of_objects, debug_info, get_methods, ...) on a
 * connection of its own. *doc (free it) holds *result. args: a TUPLE or NULL (), kwds a DICT or
 * NULL {}. */
int mproc__pym_request(mproc__pym *m, const char *method, const mproc__pk *args,
                       const mproc__pk *kwds, mproc__pk_doc **doc, mproc__pk **result);

/* Create a shared object of a typeid ('dict', 'Queue', 'Event'...) or call a registered name
 * ('get_jobs'), with args/kwds for its callable; the proxy holds the reference create made. */
int mproc__pym_create(mproc__pym *m, const char *typeid, const mproc__pk *args,
                      const mproc__pk *kwds, mproc__pym_proxy **out);

/* Call a method of the shared object. *result (may be NULL) stays valid until the next call on p
 * or its free. Returns 0, MPROC__PYM_PROXY, or a code above. */
int mproc__pym_call(mproc__pym_proxy *p, const char *method, const mproc__pk *args,
                    const mproc__pk *kwds, const mproc__pk **result);
/* After MPROC__PYM_PROXY: the new proxy (it holds the reference the server made for it). */
int mproc__pym_take_proxy(mproc__pym_proxy *p, mproc__pym_proxy **out);

/* Python's timed calls, with mproc's timeout rule (0 polls, MPROC_FOREVER blocks):
 * Queue.get/put (-EAGAIN for timeout 0, -ETIMEDOUT after a timeout), Event.wait and
 * Lock/Semaphore.acquire (0, or -ETIMEDOUT when Python answers False). */
int mproc__pym_queue_get(mproc__pym_proxy *p, double timeout, const mproc__pk **item);
int mproc__pym_queue_put(mproc__pym_proxy *p, const mproc__pk *item, double timeout);
int mproc__pym_wait(mproc__pym_proxy *p, const char *method, double timeout);

/* The reference counts the server keeps for its clients. */
int mproc__pym_incref(mproc__pym_proxy *p);
int mproc__pym_decref(mproc__pym_proxy *p);
/* Another proxy of the same object with a reference (incref) and a connection of its own, for
 * another thread, or a fork child (whose copy of the parent's proxy holds no reference: freeing it
 * there closes just the child's copy of the connection). */
int mproc__pym_proxy_dup(const mproc__pym_proxy *p, mproc__pym_proxy **out);
/* Drop the proxy's reference (decref) and close its connection. NULL-safe. */
void mproc__pym_proxy_free(mproc__pym_proxy *p);

/* The text of the last exception (or "" after a success): of a proxy, or of the manager for
 * mproc__pym_request/create/connect. */
const char *mproc__pym_error(const mproc__pym_proxy *p);
const char *mproc__pym_manager_error(const mproc__pym *m);
/* The shared object's typeid and id ('7f12...'), and whether it exposes method. */
const char *mproc__pym_typeid(const mproc__pym_proxy *p);
const char *mproc__pym_id(const mproc__pym_proxy *p);
bool mproc__pym_exposes(const mproc__pym_proxy *p, const char *method);

/* Ask the server to stop (its 'shutdown' request). */
int mproc__pym_shutdown(mproc__pym *m);

#endif
