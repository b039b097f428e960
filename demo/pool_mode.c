/* Pool mode: the same two jobs as pool tasks. The arguments carry arena pointers (the progress
 * counters, the exit Event), which are valid in the workers as they are in the main process: the
 * C counterpart of passing a Manager().Event() to apply_async. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "demo.h"

typedef struct {
    dir_progress *progress;
    char dir[PATH_MAX];
} dir_task_arg;

static int dir_task(mproc_task *t)
{
    size_t len;
    const dir_task_arg *a = mproc_task_arg(t, &len);
    if (len != sizeof *a) return mproc_task_fail(t, -EINVAL, "bad argument size %zu", len);
    dir_result r;
    dirinfo_compute(a->dir, a->progress, &r);
    return mproc_task_return(t, &r, sizeof r);
}

static int e_task(mproc_task *t)
{
    size_t len;
    mproc_event *const *stop = mproc_task_arg(t, &len);
    if (len != sizeof *stop) return mproc_task_fail(t, -EINVAL, "bad argument size %zu", len);
    e_result r;
    e_compute(*stop, &r);
    return mproc_task_return(t, &r, sizeof r);
}

static void log_failure(mproc_future *f, const char *what, int rc)
{
    mproc_error err;
    if (mproc_future_error(f, &err) == 0 && err.message[0])
        MPROC_ERROR("%s task failed: %s (%s)", what, mproc_strerror(rc), err.message);
    else
        MPROC_ERROR("%s task failed: %s", what, mproc_strerror(rc));
}

int run_pool_mode(const demo_opts *o, dir_progress *pg, FILE *status, bool tty, mode_result *out)
{
    double t0 = demo_now();
    mproc_pool *pool = NULL;
    mproc_event *stop = NULL;
    mproc_future *fdir = NULL, *fe = NULL;
    dir_task_arg arg = {.progress = pg};
    snprintf(arg.dir, sizeof arg.dir, "%s", o->dir);
    memset(out, 0, sizeof *out);
    out->mode = "pool";

    /* Two workers whatever the CPU count: the e task runs until the directory task is done, so
     * with one worker the directory task would never start. */
    int rc = mproc_event_new(&stop);
    if (rc == 0) rc = mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 2, .name = "DemoPool"});
    if (rc == 0) rc = mproc_pool_submit(pool, e_task, &stop, sizeof stop, &fe);
    if (rc == 0) rc = mproc_pool_submit(pool, dir_task, &arg, sizeof arg, &fdir);
    if (rc < 0) {
        MPROC_ERROR("cannot start the pool tasks: %s", mproc_strerror(rc));
        goto done;
    }

    /* The stats count from the moment both tasks run (or the directory task is done already):
     * the workers' start-up is not what the verdict is about. */
    double until = demo_now() + 5.0;
    mproc_pool_stat st;
    while (mproc_pool_stats(pool, &st) == 0 && st.running < 2 && !mproc_future_done(fdir) &&
           demo_now() < until)
        mproc_future_wait(fdir, 0.0002);
    mproc_pool_stats_reset(pool);

    double tick = tty && o->interval > 0.1 ? 0.1 : o->interval;
    size_t len = 0;
    while ((rc = mproc_future_get(fdir, &out->dir, sizeof out->dir, &len, tick)) == -ETIMEDOUT)
        status_show(status, tty, demo_now() - t0, pg);
    status_end(status, tty);
    if (rc < 0) log_failure(fdir, "dir info", rc);

    mproc_event_set(stop);
    int erc = mproc_future_get(fe, &out->e, sizeof out->e, &len, 30.0);
    if (erc < 0) log_failure(fe, "e", erc);
    if (rc == 0) rc = erc;
    if (mproc_pool_stats(pool, &st) == 0) {
        out->have_stats = true;
        out->utilisation = st.utilisation;
        out->busy_seconds = st.busy_seconds;
        out->wall_seconds = st.wall_seconds;
        out->workers = st.workers;
    }
done:
    if (stop) mproc_event_set(stop); /* whatever failed, the e task must be able to end */
    mproc_future_free(fdir);
    mproc_future_free(fe);
    mproc_pool_free(pool); /* closes and joins */
    mproc_event_free(stop);
    out->rc = rc;
    out->total_seconds = demo_now() - t0;
    return rc;
}
