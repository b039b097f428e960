/* mproc-glib: a future's eventfd as a GLib fd source (include/mproc/glib.h). Outside the layers:
 * it sees only the public headers and links the shared library, which exports only mproc_*. */
#include <errno.h>
#include <glib-unix.h>
#include <mproc.h>
#include <mproc/glib.h>

typedef struct {
    mproc_future *f;
    mproc_glib_future_fn cb;
    void *arg;
} watch;

/* The eventfd stays readable once the future is done, so a level-triggered poll sees it at once
 * even when the source was attached after completion. */
static gboolean on_ready(gint fd, GIOCondition cond, gpointer data)
{
    watch *w = data;
    w->cb(w->f, w->arg);
    return G_SOURCE_REMOVE;
}

int mproc_glib_future_source(mproc_future *f, mproc_glib_future_fn cb, void *arg, GSource **out)
{
    if (!f || !cb || !out) return -EINVAL;
    int fd = mproc_future_fd(f);
    if (fd < 0) return fd;
    watch *w = g_new(watch, 1);
    *w = (watch){.f = f, .cb = cb, .arg = arg};
    GSource *s = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(s, G_SOURCE_FUNC(on_ready), w, g_free);
    g_source_set_name(s, "mproc future");
    *out = s;
    return 0;
}

int mproc_glib_future_add(mproc_future *f, mproc_glib_future_fn cb, void *arg, guint *id)
{
    GSource *s;
    int rc = mproc_glib_future_source(f, cb, arg, &s);
    if (rc < 0) return rc;
    guint sid = g_source_attach(s, g_main_context_get_thread_default()); /* NULL: the global */
    g_source_unref(s);
    if (id) *id = sid;
    return 0;
}
