/* Pool mode: the same two jobs on a pool of two workers. e is one task that runs until told to
 * stop; the directory is listed here and its files hashed by a map over the list, whose progress
 * callback prints the status lines (mproc_map_opts.progress) and whose results are digested here.
 * The arguments carry arena pointers (the progress counters, the exit Event), which are valid in
 * the workers as they are in the main process: the C counterpart of passing a Manager().Event()
 * to apply_async. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"

/* The map's shared argument, copied into the arena for the call: the directory and every path,
 * NUL-terminated one after the other; an item is the offset of its path in names. */
typedef struct {
    dir_progress *progress;
    char names[]; /* the directory, then the relative paths */
} hash_arg;

static int hash_item(const void *in, void *out, void *arg)
{
    const hash_arg *a = arg;
    uint64_t off;
    memcpy(&off, in, sizeof off);
    /* Opened per item (a few microseconds next to the hashing): the path stays relative, as in
     * the warnings of process mode, and no fd outlives the map in a worker. */
    int root = open(a->names, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return mproc_task_fail(mproc_task_current(), -errno, "cannot open %s", a->names);
    dirinfo_hash_file(root, a->names + off, a->progress, out);
    close(root);
    return 0;
}

/* The status lines, from the map's progress: files from its count, bytes from the counters the
 * workers bump. Called at most every tick while the count moves, and once at the end. */
typedef struct {
    FILE *status;
    bool tty;
    double t0;
    dir_progress *pg;
} map_status;

static void on_progress(size_t done, size_t total, void *arg)
{
    const map_status *m = arg;
    (void)total; /* the list's length, as files_total */
    atomic_store(&m->pg->files_done, done);
    status_show(m->status, m->tty, demo_now() - m->t0, m->pg);
}

/* The directory's part: list it here, hash its files on the pool, digest the digests. */
static int dir_info(mproc_pool *pool, const demo_opts *o, dir_progress *pg, const map_status *ms,
                    dir_result *out)
{
    double t0 = demo_now();
    char *dir = realpath(o->dir, NULL); /* a worker's working directory may not be ours */
    dir_list l = {.root = -1};
    int rc = dir ? dirinfo_list(dir, pg, &l) : -errno;
    size_t names = dir ? strlen(dir) + 1 : 0;
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        names += strlen(l.paths[i]) + 1;
    hash_arg *arg = rc == 0 ? malloc(sizeof *arg + names) : NULL;
    uint64_t *offsets = arg ? malloc((l.n ? l.n : 1) * sizeof *offsets) : NULL;
    file_digest *files = offsets ? calloc(l.n ? l.n : 1, sizeof *files) : NULL;
    if (rc == 0 && !files) rc = -ENOMEM;
    if (rc == 0) {
        arg->progress = pg;
        size_t at = strlen(dir) + 1;
        memcpy(arg->names, dir, at);
        for (size_t i = 0; i < l.n; i++) {
            size_t len = strlen(l.paths[i]) + 1;
            offsets[i] = at;
            memcpy(arg->names + at, l.paths[i], len);
            at += len;
        }
        MPROC_INFO("hashing %zu files on the pool", l.n);
        /* The stats count from here, both workers busy: the workers' start-up and the listing
         * in this process are not what the verdict is about. */
        mproc_pool_stats_reset(pool);
        mproc_error err;
        /* About 100 chunks: the status moves in steps of 1 %, each chunk still many files. */
        rc = mproc_pool_map(pool, hash_item, offsets, sizeof *offsets, files, sizeof *files, l.n,
                            &(mproc_map_opts){.chunksize = l.n / 100 + 1,
                                              .arg = arg,
                                              .arg_size = sizeof *arg + names,
                                              .error = &err,
                                              .progress = on_progress,
                                              .progress_arg = (void *)ms,
                                              .progress_interval = o->interval});
        if (rc < 0) MPROC_ERROR("hashing failed: %s (%s)", mproc_strerror(rc), err.message);
    }
    if (l.root >= 0) { /* listed: the counts, and the digest unless the hashing failed */
        dirinfo_summarise(&l, files, rc, t0, out);
    } else {
        memset(out, 0, sizeof *out);
        out->error = rc;
    }
    free(files);
    free(offsets);
    free(arg);
    dirinfo_list_free(&l);
    free(dir);
    return rc;
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
    mproc_future *fe = NULL;
    memset(out, 0, sizeof *out);
    out->mode = "pool";

    /* Two workers whatever the CPU count: the e task holds one until the directory is done, the
     * map's chunks run on the other. */
    int rc = mproc_event_new(&stop);
    if (rc == 0) rc = mproc_pool_new(&pool, &(mproc_pool_opts){.workers = 2, .name = "DemoPool"});
    if (rc == 0) rc = mproc_pool_submit(pool, e_task, &stop, sizeof stop, &fe);
    if (rc < 0) {
        MPROC_ERROR("cannot start the pool tasks: %s", mproc_strerror(rc));
        goto done;
    }

    /* The e task runs before the directory work starts (dir_info resets the stats then). */
    double until = demo_now() + 5.0;
    mproc_pool_stat st;
    while (mproc_pool_stats(pool, &st) == 0 && st.running < 1 && demo_now() < until)
        mproc_future_wait(fe, 0.0002);

    /* On a terminal the line is rewritten often; elsewhere one line per interval. */
    map_status ms = {.status = status, .tty = tty, .t0 = t0, .pg = pg};
    demo_opts mo = *o;
    mo.interval = tty && o->interval > 0.1 ? 0.1 : o->interval;
    rc = dir_info(pool, &mo, pg, &ms, &out->dir);
    status_end(status, tty);

    mproc_event_set(stop);
    size_t len = 0;
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
    mproc_future_free(fe);
    mproc_pool_free(pool); /* closes and joins */
    mproc_event_free(stop);
    out->rc = rc;
    out->total_seconds = demo_now() - t0;
    return rc;
}
