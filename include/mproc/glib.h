/* mproc-glib: a pool future as a GLib main-loop source (optional library libmproc-glib, built
 * when GLib is found; link with it and GLib, `pkg-config --cflags --libs mproc-glib`).
 *
 * The core library has no GLib dependency, so this header is not included by <mproc.h>. It only
 * wraps what the core offers any loop: mproc_future_fd() is an eventfd that becomes readable when
 * the future is done and stays readable. The callback then runs in the thread that runs the
 * GMainContext, like any other GSource: no helper thread, no polling, no locking in the program.
 * The same pattern for libuv and epoll, and the source of these functions, are in
 * docs/event-loops.md.
 */
#ifndef MPROC_GLIB_H
#define MPROC_GLIB_H

#include <glib.h>

#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs once, in the main context, when the future is done. It may free the future (the source
 * is removed right after it returns and never touches the future again). */
typedef void (*mproc_glib_future_fn)(mproc_future *f, void *arg);

/* A new, unattached GSource that calls cb(f, arg) once when f is done, then removes itself.
 * Attach it with g_source_attach() to any GMainContext, then g_source_unref() it. 0, -EINVAL (NULL
 * f or cb, or out), or what mproc_future_fd() returns (-ENOMEM, -EMFILE ...). Until it has run,
 * destroy it (g_source_destroy) before freeing the future. */
int mproc_glib_future_source(mproc_future *f, mproc_glib_future_fn cb, void *arg, GSource **out);

/* The one-line form: the same source attached to the thread's default main context (the global
 * one, which GTK runs, unless the thread pushed its own), as g_unix_fd_add() does. *id (may be
 * NULL) gets its id, for g_source_remove() before freeing a future that is not done. 0 or the
 * errors of mproc_glib_future_source(). */
int mproc_glib_future_add(mproc_future *f, mproc_glib_future_fn cb, void *arg, guint *id);

#ifdef __cplusplus
}
#endif
#endif
