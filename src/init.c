#include "init.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "arena.h"
#include "mproc/common.h"
#include "mproc/log.h"
#include "process_internal.h"
#include "process_registry.h"

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static mproc__start_method start_method = MPROC__START_FORK;
static char current_name[MPROC__NAME_MAX] = "MainProcess";
static char current_identity[MPROC__NAME_MAX]; /* "" in the main process, "1:3" in a grandchild */
static pid_t parent_pid;
/* A process run as a thread (start method "thread") has its identity per thread. */
static _Thread_local const char *thread_name, *thread_identity;
static _Thread_local pid_t thread_parent;

int mproc__parse_start_method(const char *s, mproc__start_method *m)
{
    if (!s || !*s || strcmp(s, "fork") == 0)
        *m = MPROC__START_FORK;
    else if (strcmp(s, "forkserver") == 0)
        *m = MPROC__START_FORKSERVER;
    else if (strcmp(s, "thread") == 0)
        *m = MPROC__START_THREAD;
    else
        return -EINVAL;
    return 0;
}

int mproc__start_method_for(const char *requested, mproc__start_method *m)
{
    const char *env = getenv("MPROC_START");
    if (env && *env) return mproc__parse_start_method(env, m);
    if (requested) return mproc__parse_start_method(requested, m);
    *m = start_method;
    return 0;
}

static int init_locked(const mproc_config *cfg)
{
    mproc__start_method m;
    const char *env = getenv("MPROC_START");
    int r = mproc__parse_start_method(env && *env ? env : (cfg ? cfg->start_method : NULL), &m);
    if (r < 0) return r;
    size_t size = cfg ? cfg->arena_size : 0;
    const char *esz = getenv("MPROC_ARENA_SIZE");
    if (size == 0 && esz && *esz) {
        char *end;
        unsigned long long v = strtoull(esz, &end, 10);
        if (*end == 'G' || *end == 'g')
            v <<= 30;
        else if (*end == 'M' || *end == 'm')
            v <<= 20;
        size = (size_t)v;
    }
    r = mproc__arena_create(size);
    if (r < 0) return r;
    start_method = m;
    mproc__registry_init();
    initialised = 1;
    return 0;
}

/* Fork the forkserver helper now, while the program is (hopefully) still single-threaded, and
 * outside init_mu so that the helper's children do not inherit it locked. If this fails, the first
 * start tries again. */
static void after_init(void)
{
    if (start_method == MPROC__START_FORKSERVER) mproc__forkserver_prestart();
}

int mproc_init(const mproc_config *cfg)
{
    pthread_mutex_lock(&init_mu);
    int r = initialised ? -EALREADY : init_locked(cfg);
    pthread_mutex_unlock(&init_mu);
    /* Outside the lock: the log set-up allocates its family state in the arena. */
    if (r == 0 && cfg && cfg->log) r = mproc_log_init(cfg->log);
    if (r == 0) after_init();
    return r;
}

int mproc__ensure_init(void)
{
    if (__atomic_load_n(&initialised, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&init_mu);
    bool first = !initialised;
    int r = first ? init_locked(NULL) : 0;
    pthread_mutex_unlock(&init_mu);
    if (r == 0 && first) after_init();
    return r;
}

mproc__start_method mproc__start_method_get(void)
{
    return start_method;
}

void mproc__set_identity(const char *name, const char *identity, pid_t parent)
{
    snprintf(current_name, sizeof current_name, "%s", name);
    snprintf(current_identity, sizeof current_identity, "%s", identity);
    parent_pid = parent;
    thread_name = thread_identity = NULL;
    /* The kernel's comm name (15 bytes) makes the process recognisable in ps and top. */
    prctl(PR_SET_NAME, current_name, 0, 0, 0);
}

void mproc__set_thread_identity(const char *name, const char *identity, pid_t parent)
{
    thread_name = name;
    thread_identity = identity;
    thread_parent = parent;
    /* gdb's "info threads" shows it. */
    char comm[16];
    snprintf(comm, sizeof comm, "%s", name);
    pthread_setname_np(pthread_self(), comm);
}

const char *mproc__identity(void)
{
    return thread_identity ? thread_identity : current_identity;
}

const char *mproc_current_name(void)
{
    return thread_name ? thread_name : current_name;
}

pid_t mproc_parent_pid(void)
{
    return thread_name ? thread_parent : parent_pid;
}
