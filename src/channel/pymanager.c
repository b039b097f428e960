/* The client of a Python manager (pymanager.h): requests and replies as pickles
 * (channel/pickle.h) over connections with the authkey handshake. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "mproc/conn.h"

#include "channel/pymanager.h"
#include "platform/platform.h"

/* Where a manager is and how to prove we may use it; the last exception's text. */
typedef struct {
    char *address;
    unsigned char *key;
    size_t keylen;
    bool tcp;
    double timeout; /* the handshake's and each manager-level reply's; 0: none beyond conn's */
    char *error;
} endpoint;

struct mproc__pym {
    endpoint e;
};

struct mproc__pym_proxy {
    endpoint e;
    char *typeid, *id;
    char **exposed;
    size_t nexposed;
    mproc_conn *conn;       /* the method-call connection, NULL until the first call */
    mproc__pk_doc *reply;   /* holds the last result */
    mproc__pym_proxy *made; /* from the last '#PROXY' reply, until taken */
    pid_t owner;    /* the process whose reference it holds (a fork child's copy does not) */
    pid_t conn_pid; /* the process that opened conn */
};

static int endpoint_init(endpoint *e, const char *address, const void *key, size_t keylen,
                         double timeout)
{
    e->timeout = timeout;
    e->address = strdup(address);
    e->key = malloc(keylen ? keylen : 1);
    if (!e->address || !e->key) return -ENOMEM;
    if (keylen) memcpy(e->key, key, keylen);
    e->keylen = keylen;
    e->tcp = strncmp(address, "tcp:", 4) == 0;
    return 0;
}

static void endpoint_fini(endpoint *e)
{
    free(e->address);
    if (e->key) OPENSSL_cleanse(e->key, e->keylen);
    free(e->key);
    free(e->error);
}

static void set_error(endpoint *e, const char *text, size_t n)
{
    free(e->error);
    e->error = malloc(n + 1);
    if (e->error) {
        memcpy(e->error, text, n);
        e->error[n] = '\0';
    }
}

/* Acknowledge at once: Linux leaves quick-ack mode on its own, so this is asked after every read
 * (the peer's next small write is then not held back by its Nagle waiting for our ACK). */
static void quickack(const endpoint *e, mproc_conn *c)
{
    if (!e->tcp) return;
    int one = 1;
    setsockopt(mproc_conn_fd(c), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static int open_conn(endpoint *e, mproc_conn **out)
{
    mproc_conn_opts o = {.handshake_timeout = e->timeout};
    int r = mproc_client_connect_opts(out, e->address, e->key, e->keylen, &o);
    if (r == 0) quickack(e, *out); /* the client's own connect set TCP_NODELAY */
    return r;
}

static int send_request(mproc_conn *c, const char *ident, const char *method, const mproc__pk *args,
                        const mproc__pk *kwds)
{
    if ((args && args->kind != MPROC__PK_TUPLE) || (kwds && kwds->kind != MPROC__PK_DICT))
        return -EINVAL;
    mproc__pk_doc *d;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    /* the caller's nodes are only read: they may sit in a tree of another doc */
    mproc__pk *req = mproc__pk_tuple(
        d, 4, ident ? mproc__pk_cstr(d, ident) : mproc__pk_none(d), mproc__pk_cstr(d, method),
        args ? (mproc__pk *)args : mproc__pk_container(d, MPROC__PK_TUPLE),
        kwds ? (mproc__pk *)kwds : mproc__pk_container(d, MPROC__PK_DICT));
    void *buf = NULL;
    size_t len;
    r = req ? mproc__pickle_write(req, &buf, &len) : -ENOMEM;
    if (r == 0) r = mproc_conn_send(c, buf, len);
    free(buf);
    mproc__pk_doc_free(d);
    return r;
}

/* What an exception means to the C side. */
static int exception_code(const mproc__pk *exc)
{
    if (mproc__pk_is_instance(exc, "builtins", "KeyError")) return -ENOENT;
    if (mproc__pk_is_instance(exc, "builtins", "IndexError")) return -ERANGE;
    if (mproc__pk_is_instance(exc, "_queue", "Empty") ||
        mproc__pk_is_instance(exc, "queue", "Empty") || mproc__pk_is_instance(exc, "queue", "Full"))
        return -EAGAIN;
    return MPROC_EREMOTE;
}

/* Read one reply. *got tells whether a whole reply was read (then the connection is still in
 * step, whatever the code). 0 ('#RETURN'), MPROC__PYM_PROXY, or the code of the exception. */
static int recv_reply(endpoint *e, mproc_conn *c, double timeout, mproc__pk_doc **doc,
                      mproc__pk **value, bool *got)
{
    void *buf;
    size_t len;
    *got = false;
    *doc = NULL;
    int r = mproc_conn_recv_alloc(c, &buf, &len, timeout);
    if (r < 0) return r;
    *got = true;
    quickack(e, c);
    mproc__pk *root;
    r = mproc__pickle_read(buf, len, NULL, doc, &root);
    free(buf);
    if (r < 0) return r;
    if (root->kind != MPROC__PK_TUPLE || root->n != 2 || root->u.items[0]->kind != MPROC__PK_STR)
        return MPROC_EPROTO;
    mproc__pk *kind = root->u.items[0], *v = root->u.items[1];
    *value = v;
    free(e->error);
    e->error = NULL;
    if (mproc__pk_is_str(kind, "#RETURN")) return 0;
    if (mproc__pk_is_str(kind, "#PROXY")) return MPROC__PYM_PROXY;
    if (mproc__pk_is_str(kind, "#ERROR")) {
        char text[1024];
        size_t n = mproc__pk_describe_exception(v, text, sizeof text);
        set_error(e, text, n < sizeof text ? n : sizeof text - 1);
        return exception_code(v);
    }
    if (mproc__pk_is_str(kind, "#TRACEBACK") || mproc__pk_is_str(kind, "#UNSERIALIZABLE")) {
        if (v->kind == MPROC__PK_STR) set_error(e, v->u.bytes, v->n);
        return MPROC_EREMOTE;
    }
    return MPROC_EPROTO;
}

/* One request on a connection of its own, as Python's server takes them. */
static int request(endpoint *e, const char *method, const mproc__pk *args, const mproc__pk *kwds,
                   mproc__pk_doc **doc, mproc__pk **result)
{
    mproc_conn *c;
    *doc = NULL;
    free(e->error);
    e->error = NULL;
    int r = open_conn(e, &c);
    if (r < 0) return r;
    bool got;
    r = send_request(c, NULL, method, args, kwds);
    if (r == 0)
        r = recv_reply(e, c, e->timeout > 0 ? e->timeout : MPROC_FOREVER, doc, result, &got);
    mproc_conn_close(c);
    if (r < 0) {
        mproc__pk_doc_free(*doc);
        *doc = NULL;
    }
    return r;
}

/* A request whose result is not needed. */
static int request_id(endpoint *e, const char *method, const char *id)
{
    mproc__pk_doc *d, *res = NULL;
    mproc__pk *v;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    mproc__pk *args = id ? mproc__pk_tuple(d, 1, mproc__pk_cstr(d, id)) : NULL;
    r = id && !args ? -ENOMEM : request(e, method, args, NULL, &res, &v);
    mproc__pk_doc_free(res);
    mproc__pk_doc_free(d);
    return r;
}

static int pym_new(mproc__pym **out, const char *address, const void *authkey, size_t keylen,
                   double timeout, bool check)
{
    if (!out || !address || !authkey || mproc__timeout_check(timeout)) return -EINVAL;
    mproc__pym *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int r = endpoint_init(&m->e, address, authkey, keylen, timeout);
    if (r == 0 && check) r = request_id(&m->e, "dummy", NULL);
    if (r < 0) {
        mproc__pym_free(m);
        return r;
    }
    *out = m;
    return 0;
}

int mproc__pym_connect(mproc__pym **out, const char *address, const void *authkey, size_t keylen)
{
    return pym_new(out, address, authkey, keylen, 0, true);
}

int mproc__pym_connect_timeout(mproc__pym **out, const char *address, const void *authkey,
                               size_t keylen, double timeout)
{
    return pym_new(out, address, authkey, keylen, timeout, true);
}

int mproc__pym_open(mproc__pym **out, const char *address, const void *authkey, size_t keylen,
                    double timeout)
{
    return pym_new(out, address, authkey, keylen, timeout, false);
}

void mproc__pym_free(mproc__pym *m)
{
    if (!m) return;
    endpoint_fini(&m->e);
    free(m);
}

int mproc__pym_request(mproc__pym *m, const char *method, const mproc__pk *args,
                       const mproc__pk *kwds, mproc__pk_doc **doc, mproc__pk **result)
{
    if (!m || !method || !doc || !result) return -EINVAL;
    return request(&m->e, method, args, kwds, doc, result);
}

int mproc__pym_shutdown(mproc__pym *m)
{
    return m ? request_id(&m->e, "shutdown", NULL) : -EINVAL;
}

static char *str_of(const mproc__pk *v)
{
    return v && v->kind == MPROC__PK_STR && !memchr(v->u.bytes, 0, v->n) ? strdup(v->u.bytes)
                                                                         : NULL;
}

/* A proxy for the object id of typeid, exposing the method names of the tuple/list exposed. */
static int proxy_new(const endpoint *e, const mproc__pk *typeid, const mproc__pk *id,
                     const mproc__pk *exposed, mproc__pym_proxy **out)
{
    if (!exposed || (exposed->kind != MPROC__PK_TUPLE && exposed->kind != MPROC__PK_LIST) || !id ||
        id->kind != MPROC__PK_STR || !typeid || typeid->kind != MPROC__PK_STR)
        return MPROC_EPROTO;
    mproc__pym_proxy *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    int r = endpoint_init(&p->e, e->address, e->key, e->keylen, e->timeout);
    p->owner = getpid();
    p->typeid = str_of(typeid);
    p->id = str_of(id);
    p->exposed = calloc(exposed->n ? exposed->n : 1, sizeof *p->exposed);
    if (r == 0 && (!p->typeid || !p->id || !p->exposed)) r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < exposed->n; i++) {
        p->exposed[i] = str_of(exposed->u.items[i]);
        if (!p->exposed[i]) r = MPROC_EPROTO;
        p->nexposed++;
    }
    if (r < 0) {
        free(p->id);
        p->id = NULL; /* freeing must not drop a reference it does not hold */
        mproc__pym_proxy_free(p);
        return r;
    }
    *out = p;
    return 0;
}

int mproc__pym_create(mproc__pym *m, const char *typeid, const mproc__pk *args,
                      const mproc__pk *kwds, mproc__pym_proxy **out)
{
    if (!m || !typeid || !out || (args && args->kind != MPROC__PK_TUPLE)) return -EINVAL;
    mproc__pk_doc *d, *res = NULL;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    /* create(typeid, *args, **kwds) */
    mproc__pk *a = mproc__pk_container(d, MPROC__PK_TUPLE), *v;
    r = mproc__pk_add(d, a, mproc__pk_cstr(d, typeid), NULL);
    for (size_t i = 0; r == 0 && args && i < args->n; i++)
        r = mproc__pk_add(d, a, args->u.items[i], NULL);
    if (r == 0) r = request(&m->e, "create", a, kwds, &res, &v);
    if (r == 0) {
        /* (ident, exposed); the reference create made is the proxy's */
        if (v->kind != MPROC__PK_TUPLE || v->n != 2)
            r = MPROC_EPROTO;
        else
            r = proxy_new(&m->e, mproc__pk_cstr(d, typeid), v->u.items[0], v->u.items[1], out);
    } else if (r == MPROC__PYM_PROXY)
        r = MPROC_EPROTO;
    mproc__pk_doc_free(res);
    mproc__pk_doc_free(d);
    return r;
}

static void close_conn(mproc__pym_proxy *p)
{
    mproc_conn_close(p->conn);
    p->conn = NULL;
}

/* Python's _connect: a connection of the proxy's own, named after the caller, that the server
 * then serves in a thread. */
static int proxy_connect(mproc__pym_proxy *p)
{
    int r = open_conn(&p->e, &p->conn);
    if (r < 0) return r;
    p->conn_pid = getpid();
    mproc__pk_doc *d, *res = NULL;
    if ((r = mproc__pk_doc_new(&d)) < 0) {
        close_conn(p);
        return r;
    }
    char name[64];
    snprintf(name, sizeof name, "mproc-%d", (int)getpid());
    mproc__pk *args = mproc__pk_tuple(d, 1, mproc__pk_cstr(d, name)), *v;
    bool got;
    r = args ? send_request(p->conn, NULL, "accept_connection", args, NULL) : -ENOMEM;
    if (r == 0)
        r = recv_reply(&p->e, p->conn, p->e.timeout > 0 ? p->e.timeout : MPROC_FOREVER, &res, &v,
                       &got);
    if (r > 0) r = MPROC_EPROTO;
    if (r < 0) close_conn(p);
    mproc__pk_doc_free(res);
    mproc__pk_doc_free(d);
    return r;
}

static int adopt_proxy(mproc__pym_proxy *p, const mproc__pk *v)
{
    /* (exposed, Token(typeid, address, id)); like Python, keep the address this proxy uses (the
     * server may name itself by an address only it can use, e.g. 0.0.0.0) */
    if (v->kind != MPROC__PK_TUPLE || v->n != 2) return MPROC_EPROTO;
    const mproc__pk *tok = v->u.items[1];
    if (!mproc__pk_is_instance(tok, "multiprocessing.managers", "Token") || !tok->u.o.state ||
        tok->u.o.state->kind != MPROC__PK_TUPLE || tok->u.o.state->n != 3)
        return MPROC_EPROTO;
    mproc__pym_proxy_free(p->made);
    p->made = NULL;
    return proxy_new(&p->e, tok->u.o.state->u.items[0], tok->u.o.state->u.items[2], v->u.items[0],
                     &p->made);
}

int mproc__pym_call(mproc__pym_proxy *p, const char *method, const mproc__pk *args,
                    const mproc__pk *kwds, const mproc__pk **result)
{
    if (!p || !method) return -EINVAL;
    mproc__pk_doc_free(p->reply);
    p->reply = NULL;
    free(p->e.error);
    p->e.error = NULL;
    if (result) *result = NULL;
    /* a fork child's copy of its parent's connection: the parent's replies come on it */
    if (p->conn && p->conn_pid != getpid()) close_conn(p);
    int r = p->conn ? 0 : proxy_connect(p);
    if (r < 0) return r;
    mproc__pk *v = NULL;
    bool got = false;
    r = send_request(p->conn, p->id, method, args, kwds);
    if (r == 0) r = recv_reply(&p->e, p->conn, MPROC_FOREVER, &p->reply, &v, &got);
    /* a call that stopped midway leaves its reply on the way: never read it as the next one's */
    if (!got && r != -EINVAL) close_conn(p);
    if (r == MPROC__PYM_PROXY) {
        int a = adopt_proxy(p, v);
        if (a < 0) r = a;
    }
    if (r >= 0 && result) *result = v;
    return r;
}

int mproc__pym_take_proxy(mproc__pym_proxy *p, mproc__pym_proxy **out)
{
    if (!p || !out) return -EINVAL;
    if (!p->made) return -ENOENT;
    *out = p->made;
    p->made = NULL;
    return 0;
}

/* A false answer of a timed call: -EAGAIN for a poll, -ETIMEDOUT after a wait. */
static int timed_out(double timeout)
{
    return timeout == 0 ? -EAGAIN : -ETIMEDOUT;
}

/* Python's (block, timeout) arguments for mproc's timeout, after the leading ones. */
static mproc__pk *timeout_args(mproc__pk_doc *d, mproc__pk *lead, double timeout)
{
    mproc__pk *a = mproc__pk_container(d, MPROC__PK_TUPLE);
    if (lead && mproc__pk_add(d, a, lead, NULL) < 0) return NULL;
    if (timeout < 0) return a;
    if (mproc__pk_add(d, a, mproc__pk_bool(d, timeout > 0), NULL) < 0) return NULL;
    if (timeout > 0 && mproc__pk_add(d, a, mproc__pk_float(d, timeout), NULL) < 0) return NULL;
    return a;
}

static int timed_call(mproc__pym_proxy *p, const char *method, mproc__pk *lead, double timeout,
                      const mproc__pk **result)
{
    if (!p || mproc__timeout_check(timeout)) return -EINVAL;
    mproc__pk_doc *d;
    int r = mproc__pk_doc_new(&d);
    if (r < 0) return r;
    mproc__pk *args = timeout_args(d, lead, timeout);
    r = args ? mproc__pym_call(p, method, args, NULL, result) : -ENOMEM;
    mproc__pk_doc_free(d);
    if (r == -EAGAIN) r = timed_out(timeout);
    return r;
}

int mproc__pym_queue_get(mproc__pym_proxy *p, double timeout, const mproc__pk **item)
{
    return timed_call(p, "get", NULL, timeout, item);
}

int mproc__pym_queue_put(mproc__pym_proxy *p, const mproc__pk *item, double timeout)
{
    if (!item) return -EINVAL;
    return timed_call(p, "put", (mproc__pk *)item, timeout, NULL);
}

int mproc__pym_wait(mproc__pym_proxy *p, const char *method, double timeout)
{
    if (!p || !method || mproc__timeout_check(timeout)) return -EINVAL;
    const mproc__pk *res;
    int r;
    if (strcmp(method, "acquire") == 0)
        r = timed_call(p, method, NULL, timeout, &res);
    else { /* wait(timeout=None) */
        mproc__pk_doc *d;
        if ((r = mproc__pk_doc_new(&d)) < 0) return r;
        mproc__pk *args = timeout < 0 ? NULL : mproc__pk_tuple(d, 1, mproc__pk_float(d, timeout));
        r = timeout >= 0 && !args ? -ENOMEM : mproc__pym_call(p, method, args, NULL, &res);
        mproc__pk_doc_free(d);
    }
    if (r != 0) return r;
    if (res->kind == MPROC__PK_BOOL && !res->u.b) return timed_out(timeout);
    return 0;
}

int mproc__pym_incref(mproc__pym_proxy *p)
{
    return p ? request_id(&p->e, "incref", p->id) : -EINVAL;
}

int mproc__pym_decref(mproc__pym_proxy *p)
{
    return p ? request_id(&p->e, "decref", p->id) : -EINVAL;
}

int mproc__pym_proxy_dup(const mproc__pym_proxy *p, mproc__pym_proxy **out)
{
    if (!p || !out) return -EINVAL;
    mproc__pym_proxy *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    int r = endpoint_init(&q->e, p->e.address, p->e.key, p->e.keylen, p->e.timeout);
    q->owner = getpid();
    q->typeid = strdup(p->typeid);
    q->exposed = calloc(p->nexposed ? p->nexposed : 1, sizeof *q->exposed);
    if (r == 0 && (!q->typeid || !q->exposed)) r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < p->nexposed; i++) {
        if (!(q->exposed[i] = strdup(p->exposed[i]))) r = -ENOMEM;
        q->nexposed++;
    }
    /* its own reference, so freeing either one leaves the other's */
    if (r == 0 && !(q->id = strdup(p->id))) r = -ENOMEM;
    if (r == 0 && (r = mproc__pym_incref(q)) < 0) {
        free(q->id);
        q->id = NULL;
    }
    if (r < 0) {
        mproc__pym_proxy_free(q);
        return r;
    }
    *out = q;
    return 0;
}

void mproc__pym_proxy_free(mproc__pym_proxy *p)
{
    if (!p) return;
    mproc__pym_proxy_free(p->made);
    close_conn(p);
    if (p->id && p->owner == getpid()) mproc__pym_decref(p);
    mproc__pk_doc_free(p->reply);
    for (size_t i = 0; i < p->nexposed; i++)
        free(p->exposed[i]);
    free(p->exposed);
    free(p->typeid);
    free(p->id);
    endpoint_fini(&p->e);
    free(p);
}

const char *mproc__pym_error(const mproc__pym_proxy *p)
{
    return p && p->e.error ? p->e.error : "";
}

const char *mproc__pym_manager_error(const mproc__pym *m)
{
    return m && m->e.error ? m->e.error : "";
}

const char *mproc__pym_typeid(const mproc__pym_proxy *p)
{
    return p ? p->typeid : NULL;
}

const char *mproc__pym_id(const mproc__pym_proxy *p)
{
    return p ? p->id : NULL;
}

bool mproc__pym_exposes(const mproc__pym_proxy *p, const char *method)
{
    for (size_t i = 0; p && method && i < p->nexposed; i++)
        if (strcmp(p->exposed[i], method) == 0) return true;
    return false;
}
