#include "process/start_method.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arena/arena.h"
#include "process/process.h"

static const mproc__start_ops *const methods[MPROC__START_METHOD_COUNT] = {
    [MPROC__START_FORK] = &mproc__start_fork_ops,
    [MPROC__START_FORKSERVER] = &mproc__start_forkserver_ops,
    [MPROC__START_THREAD] = &mproc__start_thread_ops,
};

static mproc__start_method configured = MPROC__START_FORK;
static _Atomic bool started;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

const mproc__start_ops *mproc__start_ops_of(mproc__start_method m)
{
    return methods[m];
}

int mproc__parse_start_method(const char *s, mproc__start_method *m)
{
    if (!s || !*s) {
        *m = MPROC__START_FORK;
        return 0;
    }
    for (int i = 0; i < MPROC__START_METHOD_COUNT; i++)
        if (strcmp(s, methods[i]->name) == 0) {
            *m = (mproc__start_method)i;
            return 0;
        }
    return -EINVAL;
}

int mproc__start_method_resolve(const char *requested, mproc__start_method *m)
{
    const char *env = getenv("MPROC_START");
    if (env && *env) return mproc__parse_start_method(env, m);
    if (requested) return mproc__parse_start_method(requested, m);
    *m = configured;
    return 0;
}

void mproc__start_method_configure(mproc__start_method m)
{
    configured = m;
}

static void register_exit(void)
{
    atexit(mproc__registry_end_children);
}

void mproc__process_layer_setup(void)
{
    pthread_once(&exit_once, register_exit);
    if (atomic_exchange(&started, true)) return;
    /* Outside the once: the helper is a fork, and its children must not inherit a once in
     * progress. A failure here is not fatal: the first forkserver start tries again. */
    mproc__start_method m;
    if (mproc__start_method_resolve(NULL, &m) == 0 && m == MPROC__START_FORKSERVER)
        mproc__forkserver_prestart();
}

bool mproc__process_layer_started(void)
{
    return atomic_load(&started);
}

int mproc__start_method_for(const char *requested, mproc__start_method *m)
{
    /* Every child must inherit the family arena, or an object made after it started would not be
     * shared with it: map it before the first child exists. */
    int r = mproc__arena_ensure();
    if (r < 0) return r;
    mproc__process_layer_setup();
    return mproc__start_method_resolve(requested, m);
}
