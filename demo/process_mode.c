/* Process mode: each worker is an mproc_process "subclass", as the talk's CalculateE(Process): a
 * struct that holds the process, its channels (an exit Event, a result Queue) and its data, a run
 * function that is the child's body, and a get that blocks for the result.
 *
 * The structs live in the family arena (mproc_shared_alloc), so the child sees the same object
 * through the same pointer with every start method, forkserver included. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "demo.h"

/* ---- class DirInfo(Process) ---------------------------------------------------------------- */

typedef struct {
    mproc_process *proc;
    mproc_queue *results;
    dir_progress *progress;
    char dir[PATH_MAX];
} dir_info;

static int dir_info_run(void *arg)
{
    dir_info *self = arg;
    dir_result r;
    dirinfo_compute(self->dir, self->progress, &r);
    return mproc_queue_put(self->results, &r, sizeof r, MPROC_FOREVER) == 0 ? 0 : 1;
}

static void dir_info_free(dir_info *self)
{
    if (!self) return;
    mproc_process_free(self->proc);
    mproc_queue_free(self->results);
    mproc_shared_free(self);
}

static int dir_info_new(dir_info **out, const char *dir, dir_progress *pg)
{
    dir_info *self = mproc_shared_alloc(sizeof *self);
    if (!self) return -ENOMEM;
    snprintf(self->dir, sizeof self->dir, "%s", dir);
    self->progress = pg;
    int rc = mproc_queue_new(&self->results, NULL);
    if (rc == 0)
        rc = mproc_process_new(
            &self->proc,
            &(mproc_process_opts){.name = "DirInfo", .run = dir_info_run, .arg = self});
    if (rc < 0) {
        dir_info_free(self);
        return rc;
    }
    *out = self;
    return 0;
}

static int dir_info_get(dir_info *self, dir_result *out, double timeout)
{
    return mproc_queue_get(self->results, out, sizeof *out, NULL, timeout);
}

/* ---- class CalculateE(Process) ------------------------------------------------------------- */

typedef struct {
    mproc_process *proc;
    mproc_event *exit_event;
    mproc_queue *results;
} calculate_e;

static int calculate_e_run(void *arg)
{
    calculate_e *self = arg;
    e_result r;
    e_compute(self->exit_event, &r);
    return mproc_queue_put(self->results, &r, sizeof r, MPROC_FOREVER) == 0 ? 0 : 1;
}

static void calculate_e_free(calculate_e *self)
{
    if (!self) return;
    mproc_process_free(self->proc);
    mproc_queue_free(self->results);
    mproc_event_free(self->exit_event);
    mproc_shared_free(self);
}

static int calculate_e_new(calculate_e **out)
{
    calculate_e *self = mproc_shared_alloc(sizeof *self);
    if (!self) return -ENOMEM;
    int rc = mproc_event_new(&self->exit_event);
    if (rc == 0) rc = mproc_queue_new(&self->results, NULL);
    if (rc == 0)
        rc = mproc_process_new(
            &self->proc,
            &(mproc_process_opts){.name = "CalculateE", .run = calculate_e_run, .arg = self});
    if (rc < 0) {
        calculate_e_free(self);
        return rc;
    }
    *out = self;
    return 0;
}

static int calculate_e_get(calculate_e *self, e_result *out, double timeout)
{
    return mproc_queue_get(self->results, out, sizeof *out, NULL, timeout);
}

/* ---- the main process's side --------------------------------------------------------------- */

int run_process_mode(const demo_opts *o, dir_progress *pg, FILE *status, bool tty, mode_result *out)
{
    double t0 = demo_now();
    dir_info *di = NULL;
    calculate_e *ce = NULL;
    memset(out, 0, sizeof *out);
    out->mode = "process";
    int rc = calculate_e_new(&ce);
    if (rc == 0) rc = dir_info_new(&di, o->dir, pg);
    if (rc == 0) rc = mproc_process_start(ce->proc);
    if (rc == 0) {
        rc = mproc_process_start(di->proc);
        if (rc < 0) mproc_event_set(ce->exit_event); /* let the e worker end */
    }
    if (rc < 0) {
        MPROC_ERROR("cannot start the workers: %s", mproc_strerror(rc));
        goto done;
    }
    MPROC_INFO("started %s (pid %d) and %s (pid %d)", mproc_process_name(ce->proc),
               (int)mproc_process_pid(ce->proc), mproc_process_name(di->proc),
               (int)mproc_process_pid(di->proc));

    /* The talk's loop: join with a timeout, say what we are waiting for each time it expires. */
    double tick = tty && o->interval > 0.1 ? 0.1 : o->interval;
    while (mproc_process_join(di->proc, tick) == -ETIMEDOUT)
        status_show(status, tty, demo_now() - t0, pg);
    status_end(status, tty);

    /* The result was put before the process ended: a get that finds nothing means it died. */
    rc = dir_info_get(di, &out->dir, 0);
    if (rc < 0) {
        int code = 0;
        mproc_process_exitcode(di->proc, &code);
        MPROC_ERROR("%s ended with exit code %d and no result", mproc_process_name(di->proc), code);
        rc = MPROC_EWORKERLOST;
    }
    mproc_event_set(ce->exit_event);
    int erc = calculate_e_get(ce, &out->e, 30.0);
    if (rc == 0) rc = erc;
    mproc_process_join(ce->proc, 30.0);
done:
    calculate_e_free(ce);
    dir_info_free(di);
    out->rc = rc;
    out->total_seconds = demo_now() - t0;
    return rc;
}
