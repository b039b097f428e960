/* A run as the main loop sees it. Three sources and no thread:
 *   - the future's fd (mproc_glib_future_add): the result, the moment the worker is done;
 *   - a 50 ms timer that reads the progress the worker publishes in the arena;
 *   - a 10 ms probe timer that measures how late the loop runs it: the longest lateness while the
 *     task is busy is max_stall_ms, how long the window could not have answered. Between two
 *     ticks it also counts the CPU time the GUI thread used: max_busy_ms, the part of a stall
 *     that is the program's own work, not time spent waiting for a CPU on a loaded machine. */
#include <mproc/glib.h>
#include <string.h>

#include "longtask.h"

static void stop_timers(lt_app *a)
{
    if (a->probe_src) g_source_remove(a->probe_src);
    if (a->progress_src) g_source_remove(a->progress_src);
    a->probe_src = a->progress_src = 0;
}

static gboolean on_probe(gpointer data)
{
    lt_app *a = data;
    double now = lt_now(), late_ms = (now - a->last_probe) * 1e3 - 10.0;
    double cpu = lt_thread_cpu(), busy_ms = (cpu - a->last_probe_cpu) * 1e3;
    if (late_ms > a->max_stall_ms) a->max_stall_ms = late_ms;
    if (busy_ms > a->max_busy_ms) a->max_busy_ms = busy_ms;
    a->last_probe = now;
    a->last_probe_cpu = cpu;
    return G_SOURCE_CONTINUE;
}

static gboolean on_progress(gpointer data)
{
    lt_app *a = data;
    unsigned long long k = atomic_load_explicit(&a->progress->iterations, memory_order_relaxed);
    long long ns = atomic_load_explicit(&a->progress->elapsed_ns, memory_order_relaxed);
    lt_window_show_progress(a, k, (double)ns / 1e9 / a->duration);
    return G_SOURCE_CONTINUE;
}

/* How a failed run reads: the signal and the first line of what the pool says happened. */
static void describe_error(mproc_future *f, int code, lt_run *run)
{
    mproc_error err;
    run->code = code;
    if (mproc_future_error(f, &err) != 0) {
        snprintf(run->error, sizeof run->error, "%s", mproc_strerror(code));
        return;
    }
    run->signal = err.signal;
    err.message[strcspn(err.message, "\n")] = 0; /* a crash's backtrace follows */
    if (err.signal) /* "worker W (pid P) was killed by signal 11 (SIGSEGV: ...) while ..." */
        snprintf(run->error, sizeof run->error, "%s", err.message);
    else
        snprintf(run->error, sizeof run->error, "%s%s%s", mproc_strerror(code),
                 err.message[0] ? ": " : "", err.message);
}

/* The future's fd turned readable: the result is there, get() does not block. */
static void on_done(mproc_future *f, void *arg)
{
    lt_app *a = arg;
    lt_run run = {0};
    int rc = mproc_future_get(f, &run.r, sizeof run.r, NULL, 0);
    if (rc != 0) describe_error(f, rc, &run);
    g_array_append_val(a->runs, run);
    mproc_future_free(f);
    a->future = NULL;
    a->future_src = 0; /* the source removes itself after this returns */
    a->running = false;
    stop_timers(a);
    if (rc == 0) lt_window_show_progress(a, run.r.iterations, 1.0);
    lt_window_show_state(a);
    if (a->quit_when_done) lt_quit(a);
}

int lt_run_start(lt_app *a)
{
    if (a->running) return -EALREADY;
    atomic_store(&a->progress->iterations, 0);
    atomic_store(&a->progress->elapsed_ns, 0);
    lt_arg arg = {.progress = a->progress,
                  .duration = a->duration,
                  .crash = gtk_switch_get_active(GTK_SWITCH(a->crash_switch))};
    int rc = mproc_pool_submit(a->pool, lt_calculate_e, &arg, sizeof arg, &a->future);
    if (rc == 0) rc = mproc_glib_future_add(a->future, on_done, a, &a->future_src);
    if (rc < 0) {
        mproc_future_free(a->future);
        a->future = NULL;
        lt_run run = {.code = rc};
        snprintf(run.error, sizeof run.error, "could not start: %s", mproc_strerror(rc));
        g_array_append_val(a->runs, run);
        lt_window_show_state(a);
        return rc;
    }
    a->running = true;
    a->run_started = a->last_probe = lt_now();
    a->last_probe_cpu = lt_thread_cpu();
    a->probe_src = g_timeout_add(10, on_probe, a);
    a->progress_src = g_timeout_add(50, on_progress, a);
    lt_window_show_progress(a, 0, 0.0);
    lt_window_show_state(a);
    return 0;
}

/* Asks the task to stop: it sees mproc_task_cancelled() within 1000 terms and returns
 * MPROC_ECANCELLED, which comes back through the fd like any result. */
void lt_run_cancel(lt_app *a)
{
    if (a->running) mproc_future_cancel(a->future);
}

/* Leaves the loop at once. A running task is cancelled here; main() then terminates the pool,
 * which kills the worker if the task has not stopped by itself yet. */
void lt_quit(lt_app *a)
{
    if (a->quit) return;
    a->quit = true;
    a->quit_asked = lt_now();
    a->quit_while_running = a->running;
    if (a->running) {
        mproc_future_cancel(a->future);
        g_source_remove(a->future_src);
        a->future_src = 0;
        stop_timers(a);
    }
}
