/* mproc-longtask: the talk's long-task GUI (a window that stays responsive while e is computed
 * for seconds), in C with GTK 4 and no helper thread. docs/gui.md explains the pattern.
 *
 *   task.c    the computation, run in a pool worker
 *   run.c     starting, watching, cancelling a run from the main loop
 *   window.c  the widgets
 *   report.c  the --report JSON and the leak counts it carries
 *   main.c    options, set-up, the loop, tear-down */
#ifndef LONGTASK_H
#define LONGTASK_H

#include <gtk/gtk.h>
#include <mproc.h>
#include <stdatomic.h>
#include <stdbool.h>

/* What the worker publishes while it runs, read by a timer in the main loop: the only state the
 * two processes share. It lives in the family arena, so the same pointer works in the worker. */
typedef struct {
    _Atomic unsigned long long iterations;
    _Atomic long long elapsed_ns;
} lt_progress;

typedef struct {
    lt_progress *progress;
    double duration; /* seconds of work */
    bool crash;      /* raise(SIGSEGV) half way */
} lt_arg;

typedef struct {
    double e;
    unsigned long long iterations;
    double seconds;
} lt_result;

/* One finished run, as the window and the report show it. */
typedef struct {
    lt_result r;      /* valid when error[0] == 0 */
    int code, signal; /* mproc error code and the signal that killed the worker, or 0 */
    char error[512];  /* "" on success */
} lt_run;

typedef struct {
    /* options */
    double duration;
    bool crash, quit_when_done;
    const char *report;
    /* mproc */
    mproc_pool *pool;
    lt_progress *progress;
    mproc_future *future; /* the running task, or NULL */
    guint future_src, probe_src, progress_src;
    /* state */
    bool running, quit, quit_while_running;
    double run_started, last_probe, last_probe_cpu, quit_asked;
    double max_stall_ms, max_busy_ms;
    int clicks, clicks_while_running;
    GArray *runs; /* lt_run */
    /* widgets */
    GtkWidget *window, *bar, *iterations, *result, *click, *clicks_label, *crash_switch, *run,
        *cancel;
} lt_app;

double lt_now(void);
double lt_thread_cpu(void);        /* CPU seconds this thread has used */
int lt_calculate_e(mproc_task *t); /* the pool task */
int lt_lower_priority(void *arg);  /* the pool's worker initializer */

int lt_run_start(lt_app *a);
void lt_run_cancel(lt_app *a);
void lt_quit(lt_app *a);

void lt_window_build(lt_app *a);
void lt_window_show_state(lt_app *a); /* buttons, title, result after a change */
void lt_window_show_progress(lt_app *a, unsigned long long iterations, double fraction);

/* The fds open in this process right now (below LT_MAX_FDS), pidfds told apart: no one but
 * mproc makes those here. */
#define LT_MAX_FDS 1024
enum { LT_FD_CLOSED, LT_FD_OPEN, LT_FD_PIDFD };
typedef struct {
    unsigned char kind[LT_MAX_FDS];
} lt_fds;
void lt_fds_take(lt_fds *s);
/* Child processes of this process right now, zombies included. */
int lt_count_children(void);
int lt_report_write(const lt_app *a, const char *path, int leaked_fds, int children);

#endif
