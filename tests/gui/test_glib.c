/* The GLib adapter (include/mproc/glib.h, src/adapters/glib.c): the callback runs once, in the
 * thread that runs the main context, while the context keeps running its other sources; also
 * when the future was done before the source was attached; never after the source was removed.
 * Each case runs its own GMainContext, so that no GLib fd outlives the case. */
#include <mproc/glib.h>
#include <time.h>

#include "harness.h"

/* GLib's global default context (its wakeup fd) is made once, here in the runner, so that a case
 * that uses it does not look as if it leaked that fd. */
__attribute__((constructor)) static void make_glib_default_context(void)
{
    g_main_context_default();
}

static int sleep_then_answer(mproc_task *t)
{
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    int v = 42;
    return mproc_task_return(t, &v, sizeof v);
}

typedef struct {
    int calls, ticks, answer, rc;
    GThread *thread;
    bool free_it;
} seen;

static void on_done(mproc_future *f, void *arg)
{
    seen *s = arg;
    s->calls++;
    s->thread = g_thread_self();
    s->rc = mproc_future_get(f, &s->answer, sizeof s->answer, NULL, 0);
    if (s->free_it) mproc_future_free(f); /* allowed: the source never touches it again */
}

static gboolean on_tick(gpointer arg)
{
    ((seen *)arg)->ticks++;
    return G_SOURCE_CONTINUE;
}

/* Iterate ctx until the callback ran or the deadline passed. */
static void run_until(GMainContext *ctx, const seen *s, double seconds)
{
    gint64 end = g_get_monotonic_time() + (gint64)(seconds * 1e6);
    while (s->calls == 0 && g_get_monotonic_time() < end)
        g_main_context_iteration(ctx, TRUE);
}

TEST(fires_once_in_the_loop_thread_while_the_loop_runs)
{
    mproc_pool *p;
    mproc_future *f;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_OK(mproc_pool_submit(p, sleep_then_answer, NULL, 0, &f));
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    seen s = {.free_it = true};
    guint id = 0;
    CHECK_OK(mproc_glib_future_add(f, on_done, &s, &id)); /* the thread-default context */
    CHECK(id > 0);
    GSource *tick = g_timeout_source_new(10);
    g_source_set_callback(tick, on_tick, &s, NULL);
    g_source_attach(tick, ctx);
    run_until(ctx, &s, 10.0);
    CHECK_EQ(s.calls, 1);
    CHECK_OK(s.rc);
    CHECK_EQ(s.answer, 42);
    CHECK(s.thread == g_thread_self());
    CHECK(s.ticks >= 5); /* the loop ran its timer while the task ran: 200 ms at 10 ms */
    /* Removed itself: a while more of the loop calls nothing. */
    gint64 end = g_get_monotonic_time() + 50000;
    while (g_get_monotonic_time() < end)
        g_main_context_iteration(ctx, TRUE);
    CHECK_EQ(s.calls, 1);
    CHECK(g_main_context_find_source_by_id(ctx, id) == NULL);
    g_source_destroy(tick);
    g_source_unref(tick);
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    mproc_pool_free(p);
}

TEST(a_future_done_before_the_source_fires_at_once)
{
    mproc_pool *p;
    mproc_future *f;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_OK(mproc_pool_submit(p, sleep_then_answer, NULL, 0, &f));
    CHECK_OK(mproc_future_wait(f, 10.0));
    seen s = {0};
    CHECK_OK(mproc_glib_future_add(f, on_done, &s, NULL)); /* the global default context, GTK's */
    g_main_context_iteration(NULL, FALSE);                 /* one non-blocking pass */
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.answer, 42);
    mproc_future_free(f);
    mproc_pool_free(p);
}

TEST(a_removed_source_never_calls)
{
    mproc_pool *p;
    mproc_future *f;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_OK(mproc_pool_submit(p, sleep_then_answer, NULL, 0, &f));
    GMainContext *ctx = g_main_context_new();
    seen s = {0};
    GSource *src;
    CHECK_OK(mproc_glib_future_source(f, on_done, &s, &src));
    g_source_attach(src, ctx);
    g_source_destroy(src); /* as before freeing a future that is not done */
    g_source_unref(src);
    CHECK_OK(mproc_future_wait(f, 10.0));
    mproc_future_free(f);
    for (int i = 0; i < 5; i++)
        g_main_context_iteration(ctx, FALSE);
    CHECK_EQ(s.calls, 0);
    g_main_context_unref(ctx);
    mproc_pool_free(p);
}

TEST(bad_arguments)
{
    seen s = {0};
    GSource *src = NULL;
    CHECK_RC(mproc_glib_future_source(NULL, on_done, &s, &src), -EINVAL);
    CHECK_RC(mproc_glib_future_add(NULL, on_done, &s, NULL), -EINVAL);
    mproc_pool *p;
    mproc_future *f;
    CHECK_OK(mproc_pool_new(&p, &(mproc_pool_opts){.workers = 1}));
    CHECK_OK(mproc_pool_submit(p, sleep_then_answer, NULL, 0, &f));
    CHECK_RC(mproc_glib_future_source(f, NULL, &s, &src), -EINVAL);
    CHECK_RC(mproc_glib_future_source(f, on_done, &s, NULL), -EINVAL);
    CHECK(src == NULL);
    mproc_future_free(f);
    mproc_pool_free(p);
}
