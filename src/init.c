#include "init.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "arena.h"
#include "mproc/common.h"
#include "process_registry.h"

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static mproc__start_method start_method = MPROC__START_FORK;
static char current_name[MPROC__NAME_MAX] = "MainProcess";
static pid_t parent_pid;

static int parse_start_method(const char *s, mproc__start_method *m)
{
    if (!s || !*s || strcmp(s, "fork") == 0) {
        *m = MPROC__START_FORK;
        return 0;
    }
    /* forkserver and thread are designed (DESIGN.md) but not built yet. */
    if (strcmp(s, "forkserver") == 0 || strcmp(s, "thread") == 0) return -ENOTSUP;
    return -EINVAL;
}

static int init_locked(const mproc_config *cfg)
{
    mproc__start_method m;
    const char *env = getenv("MPROC_START");
    int r = parse_start_method(env && *env ? env : (cfg ? cfg->start_method : NULL), &m);
    if (r < 0) return r;
    size_t size = cfg ? cfg->arena_size : 0;
    const char *esz = getenv("MPROC_ARENA_SIZE");
    if (size == 0 && esz && *esz) {
        char *end;
        unsigned long long v = strtoull(esz, &end, 10);
        if (*end == 'G' || *end == 'g') v <<= 30;
        else if (*end == 'M' || *end == 'm') v <<= 20;
        size = (size_t)v;
    }
    r = mproc__arena_create(size);
    if (r < 0) return r;
    start_method = m;
    mproc__registry_init();
    initialised = 1;
    return 0;
}

int mproc_init(const mproc_config *cfg)
{
    pthread_mutex_lock(&init_mu);
    int r = initialised ? -EALREADY : init_locked(cfg);
    pthread_mutex_unlock(&init_mu);
    return r;
}

int mproc__ensure_init(void)
{
    if (__atomic_load_n(&initialised, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&init_mu);
    int r = initialised ? 0 : init_locked(NULL);
    pthread_mutex_unlock(&init_mu);
    return r;
}

mproc__start_method mproc__start_method_get(void)
{
    return start_method;
}

void mproc__set_identity(const char *name, pid_t parent)
{
    snprintf(current_name, sizeof current_name, "%s", name);
    parent_pid = parent;
    /* The kernel's comm name (15 bytes) makes the process recognisable in ps and top. */
    prctl(PR_SET_NAME, current_name, 0, 0, 0);
}

const char *mproc_current_name(void)
{
    return current_name;
}

pid_t mproc_parent_pid(void)
{
    return parent_pid;
}
