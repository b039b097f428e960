/* The public manager calls: starting a server process (or serving in this one), connecting,
 * named objects, delete, shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "arena/arena.h"
#include "channel/pymanager.h"
#include "manager/client.h"
#include "manager/server.h"
#include "platform/platform.h"

#define MANAGER_MAGIC 0x4d677272u /* "Mgrr" */
#define START_TIMEOUT 30.0
#define REPLY_TIMEOUT 10.0 /* the connect's waits, by default */

static bool valid(const mproc_manager *m)
{
    return m && m->magic == MANAGER_MAGIC;
}

static bool is_tcp(const char *address)
{
    return strncmp(address, "tcp:", 4) == 0;
}

static int check_args(const char *address, const void *authkey, size_t keylen)
{
    if (!address || (!authkey && keylen)) return -EINVAL;
    if (is_tcp(address) && !authkey) return -EINVAL; /* anyone could reach it */
    return 0;
}

static int new_handle(mproc_manager **out, const char *address, const void *authkey, size_t keylen,
                      double handshake_timeout)
{
    mproc_manager *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    m->fd = -1;
    m->handshake_timeout = handshake_timeout;
    m->reply_timeout = REPLY_TIMEOUT;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->address = strdup(address);
    m->has_key = authkey != NULL;
    m->keylen = keylen;
    m->key = malloc(keylen ? keylen : 1);
    if (!m->address || !m->key) {
        free(m->address);
        free(m->key);
        free(m);
        return -ENOMEM;
    }
    if (keylen) memcpy(m->key, authkey, keylen);
    m->magic = MANAGER_MAGIC;
    *out = m;
    return 0;
}

static void free_handle(mproc_manager *m)
{
    while (m->proxies)
        mgr_proxy_free(m->proxies);
    pthread_mutex_lock(&m->mu);
    if (m->conn && m->pid == mproc__pid())
        mgr_disconnect_locked(m);
    else if (m->conn)
        mproc_conn_close(m->conn); /* a fork child's copy: just let go */
    pthread_mutex_unlock(&m->mu);
    /* a process handle is its maker's: a fork child that inherited this one leaves it be */
    if (m->server && m->starter == mproc__pid()) mproc_process_free(m->server);
    mproc__pym_free(m->pym);
    OPENSSL_cleanse(m->key, m->keylen);
    free(m->key);
    free(m->address);
    free(m->in);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    m->magic = 0;
    free(m);
}

int mproc_manager_connect(mproc_manager **out, const char *address, const void *authkey,
                          size_t keylen)
{
    return mproc_manager_connect_opts(out, address, authkey, keylen, NULL);
}

int mproc_manager_connect_opts(mproc_manager **out, const char *address, const void *authkey,
                               size_t keylen, const mproc_manager_client_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    int r = check_args(address, authkey, keylen);
    if (r < 0) return r;
    mproc_manager_client_opts o = opts ? *opts : (mproc_manager_client_opts){0};
    if (o.dialect < MPROC_MANAGER_DIALECT_AUTO || o.dialect > MPROC_MANAGER_DIALECT_PYTHON ||
        mproc__timeout_check(o.timeout) || o.timeout < 0)
        return -EINVAL;
    mproc_manager *m;
    double t = o.timeout > 0 ? o.timeout : REPLY_TIMEOUT;
    if ((r = new_handle(&m, address, authkey, keylen, t)) < 0) return r;
    m->reply_timeout = t;
    m->dialect = o.dialect;
    bool forced = m->dialect == MPROC_MANAGER_DIALECT_PYTHON;
    pthread_mutex_lock(&m->mu);
    r = forced ? MGR_SPEAKS_PYTHON : mgr_connect_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (r == MGR_SPEAKS_PYTHON && !authkey) r = -EINVAL; /* Python always runs the handshake */
    /* forced: Python's own check of a new manager, a 'dummy' request on a connection of its own;
     * found by the probe: its answer was that check */
    if (r == MGR_SPEAKS_PYTHON)
        r = forced ? mproc__pym_connect_timeout(&m->pym, address, authkey, keylen, t)
                   : mproc__pym_open(&m->pym, address, authkey, keylen, t);
    if (r < 0) {
        free_handle(m);
        return r;
    }
    *out = m;
    return 0;
}

const char *mproc_manager_address(const mproc_manager *m)
{
    return valid(m) ? m->address : NULL;
}

int mproc_manager_dialect(const mproc_manager *m)
{
    return valid(m) ? m->dialect : -EINVAL;
}

const char *mproc_manager_remote_error(const mproc_manager *m)
{
    return valid(m) ? mgr_py_error(m) : "";
}

static bool python(const mproc_manager *m)
{
    return m->dialect == MPROC_MANAGER_DIALECT_PYTHON;
}

int mproc_manager_reconnect(mproc_manager *m)
{
    if (!valid(m)) return -EINVAL;
    /* a Python manager's connections are made per request and per proxy: nothing to redo but to
     * check that it is there */
    if (python(m)) {
        mproc__pk_doc *d = NULL;
        mproc__pk *v;
        int r = mproc__pym_request(m->pym, "dummy", NULL, NULL, &d, &v);
        mgr_py_set_error(m, mproc__pym_manager_error(m->pym));
        mproc__pk_doc_free(d);
        return r;
    }
    pthread_mutex_lock(&m->mu);
    int r = mgr_connect_locked(m);
    pthread_mutex_unlock(&m->mu);
    return r;
}

int mproc_manager_shutdown(mproc_manager *m)
{
    if (!valid(m)) return -EINVAL;
    if (python(m)) {
        int r = mproc__pym_shutdown(m->pym);
        mgr_py_set_error(m, mproc__pym_manager_error(m->pym));
        return r;
    }
    mgr_result res = {0};
    int r = mgr_call(m, MGR_SHUTDOWN, 0, NULL, 0, false, &res);
    if (r == 0) r = res.status;
    pthread_mutex_lock(&m->mu);
    if (m->conn) mgr_disconnect_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (m->server && m->starter == mproc__pid()) {
        /* it ends by itself once it has answered; a stuck one is made to */
        if (mproc_process_join(m->server, 5.0) == -ETIMEDOUT) {
            mproc_process_kill(m->server);
            mproc_process_join(m->server, MPROC_FOREVER);
        }
    }
    return r;
}

void mproc_manager_free(mproc_manager *m)
{
    if (!valid(m)) return;
    if (m->server && m->starter == mproc__pid() && mproc_process_is_alive(m->server))
        mproc_manager_shutdown(m);
    free_handle(m);
}

int mproc_manager_delete(mproc_manager *m, const char *name)
{
    if (!valid(m) || !name || !*name || strlen(name) > MPROC__MGR_NAME_MAX) return -EINVAL;
    if (python(m)) return -ENOTSUP; /* Python's managers have no such request */
    mgr_result res = {0};
    int r = mgr_call(m, MGR_DELETE, 0, &(struct iovec){(void *)name, strlen(name)}, 1, false, &res);
    return r < 0 ? r : res.status;
}

/* ---- named objects ---- */

static int open_obj(mproc_manager *m, uint8_t kind, const char *name, uint64_t a, uint64_t b,
                    bool c, void **out)
{
    if (!out) return -EINVAL;
    *out = NULL;
    if (!valid(m)) return -EINVAL;
    void *local;
    mgr_proxy *p;
    if (python(m)) {
        if (kind == MGR_VALUE) return -ENOTSUP;
        mproc_queue_opts qo = {.max_items = a, .max_bytes = b, .joinable = c};
        int r = mgr_py_open(m, kind, name, &qo, &p);
        if (r == 0) *out = p;
        return r;
    }
    int r = mgr_open(m, kind, name, a, b, c, &local, &p);
    if (r < 0) return r;
    *out = local ? local : (void *)p;
    return 0;
}

int mproc_manager_dict(mproc_manager *m, const char *name, mproc_dict **out)
{
    return open_obj(m, MGR_DICT, name, 0, 0, false, (void **)out);
}

int mproc_manager_list(mproc_manager *m, const char *name, mproc_list **out)
{
    return open_obj(m, MGR_LIST, name, 0, 0, false, (void **)out);
}

int mproc_manager_queue(mproc_manager *m, const char *name, const mproc_queue_opts *opts,
                        mproc_queue **out)
{
    mproc_queue_opts o = opts ? *opts : (mproc_queue_opts){0};
    return open_obj(m, MGR_QUEUE, name, o.max_items, o.max_bytes, o.joinable, (void **)out);
}

int mproc_manager_event(mproc_manager *m, const char *name, mproc_event **out)
{
    return open_obj(m, MGR_EVENT, name, 0, 0, false, (void **)out);
}

int mproc_manager_lock(mproc_manager *m, const char *name, mproc_lock **out)
{
    return open_obj(m, MGR_LOCK, name, 0, 0, false, (void **)out);
}

int mproc_manager_value(mproc_manager *m, const char *name, size_t size, bool lock,
                        mproc_value **out)
{
    if (size == 0) {
        if (out) *out = NULL;
        return -EINVAL;
    }
    return open_obj(m, MGR_VALUE, name, size, 0, lock, (void **)out);
}

/* ---- serving ---- */

static int check_opts(const mproc_manager_opts *o)
{
    if (!o) return 0;
    if (o->max_objects > MPROC_MANAGER_MAX_OBJECTS || mproc__timeout_check(o->handshake_timeout) ||
        o->share_arena < MPROC_MANAGER_SHARE_DEFAULT ||
        o->share_arena > MPROC_MANAGER_SHARE_ANY_USER)
        return -EINVAL;
    return 0;
}

typedef struct {
    void (*ready)(const char *address, void *arg);
    void *arg;
} serve_ready;

static void call_ready(const char *address, int code, void *arg)
{
    serve_ready *sr = arg;
    if (code == 0 && sr->ready) sr->ready(address, sr->arg);
}

int mproc_manager_serve(const char *address, const void *authkey, size_t keylen,
                        const mproc_manager_opts *opts)
{
    int r = check_args(address, authkey, keylen);
    if (r < 0 || (r = check_opts(opts)) < 0) return r;
    serve_ready sr = {opts ? opts->ready : NULL, opts ? opts->ready_arg : NULL};
    return mproc__mgr_serve(address, authkey, keylen, authkey != NULL, opts, -1, true, call_ready,
                            &sr);
}

/* What the started server needs, in the arena (so every start method's child sees it). */
typedef struct {
    mproc_event *ready;
    int code;
    bool thread; /* the server runs as a thread of the starter (the "thread" start method) */
    pid_t starter;
    bool has_key, detached;
    size_t keylen;
    mproc_manager_opts opts;
    char address[256];
    char bound[256];
    unsigned char key[]; /* then the key */
} start_info;

static void started(const char *address, int code, void *arg)
{
    start_info *si = arg;
    si->code = code;
    if (code == 0) snprintf(si->bound, sizeof si->bound, "%s", address);
    mproc_event_set(si->ready);
}

static int server_main(void *arg)
{
    start_info *si = arg;
    bool own_process = mproc__pid() != si->starter; /* not under the thread start method */
    si->thread = !own_process;                /* read by the starter once the server listens */
    if (own_process) signal(SIGINT, SIG_IGN); /* Ctrl-C is for the program, not its manager */
    /* A daemonic child gets SIGKILL when its parent dies (process/child.c): the server would leave
     * its socket file behind. SIGTERM it takes as a stop, and removes the file as it ends. */
    if (own_process && !si->detached) prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (si->detached && own_process) {
        pid_t pid = fork();
        if (pid < 0) {
            started(NULL, -errno, si);
            return 1;
        }
        if (pid > 0) {
            /* the server goes on in the grandchild, which nobody joins; this go-between ends
             * once it listens (so the starter can tell a death from a slow start) */
            mproc_event_wait(si->ready, START_TIMEOUT);
            return 0;
        }
        setsid();
    }
    /* si is the starter's, freed once the server listens: the key is copied */
    unsigned char *key = malloc(si->keylen ? si->keylen : 1);
    if (!key) {
        started(NULL, -ENOMEM, si);
        return 1;
    }
    memcpy(key, si->key, si->keylen);
    size_t keylen = si->keylen;
    int watch = -1;
    if (own_process && !si->detached) watch = mproc__pidfd_open(si->starter);
    bool detached_child = si->detached && own_process;
    int r = mproc__mgr_serve(si->address, key, keylen, si->has_key, &si->opts, watch, false,
                             started, si);
    if (watch >= 0) close(watch);
    OPENSSL_cleanse(key, keylen);
    free(key);
    if (detached_child) _exit(r < 0 ? 1 : 0);
    return r < 0 ? 1 : 0;
}

int mproc_manager_start(mproc_manager **out, const char *address, const void *authkey,
                        size_t keylen, const mproc_manager_opts *opts)
{
    if (!out) return -EINVAL;
    *out = NULL;
    int r = check_args(address, authkey, keylen);
    if (r < 0 || (r = check_opts(opts)) < 0) return r;
    if (strlen(address) >= sizeof((start_info *)0)->address) return -ENAMETOOLONG;
    start_info *si = mproc_shared_alloc(sizeof *si + keylen);
    if (!si) return -ENOMEM;
    if ((r = mproc_event_new(&si->ready)) < 0) {
        mproc_shared_free(si);
        return r;
    }
    si->starter = mproc__pid();
    si->has_key = authkey != NULL;
    si->keylen = keylen;
    if (keylen) memcpy(si->key, authkey, keylen);
    if (opts) si->opts = *opts;
    si->opts.ready = NULL;
    si->detached = opts && opts->detached;
    snprintf(si->address, sizeof si->address, "%s", address);
    mproc_process *p = NULL;
    mproc_process_opts po = {.name = "Manager", .run = server_main, .arg = si, .daemon = true};
    if ((r = mproc_process_new(&p, &po)) < 0 || (r = mproc_process_start(p)) < 0) goto out;
    /* until it listens, or it died trying */
    int64_t deadline = mproc__deadline(START_TIMEOUT);
    while ((r = mproc_event_wait(si->ready, 0.02)) == -ETIMEDOUT || r == -EINTR) {
        if (!mproc_process_is_alive(p) && !mproc_event_is_set(si->ready)) {
            r = -ECHILD;
            goto out;
        }
        if (mproc__now_ns() > deadline) {
            r = -ETIMEDOUT;
            goto out;
        }
    }
    if (r == 0) r = si->code;
    if (r < 0) goto out;
    mproc_manager *m;
    if ((r = new_handle(&m, si->bound, authkey, keylen, opts ? opts->handshake_timeout : 0)) < 0)
        goto out;
    if (si->detached && !si->thread) {
        mproc_process_join(p, MPROC_FOREVER); /* the go-between ends once the server listens */
        mproc_process_free(p);
    } else {
        m->server = p;
        m->starter = mproc__pid();
    }
    p = NULL;
    m->dialect = MPROC_MANAGER_DIALECT_NATIVE; /* its own server: no probe */
    pthread_mutex_lock(&m->mu);
    r = mgr_connect_locked(m);
    pthread_mutex_unlock(&m->mu);
    if (r < 0) {
        mproc_manager_free(m);
        goto out;
    }
    *out = m;
out:
    if (p) {
        mproc_process_kill(p);
        mproc_process_join(p, MPROC_FOREVER);
        mproc_process_free(p);
    }
    mproc_event_free(si->ready);
    OPENSSL_cleanse(si->key, keylen);
    mproc_shared_free(si);
    return r;
}
