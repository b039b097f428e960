/* GLib's GThreadPool (one exclusive thread per CPU): submit+get with 100k tasks in flight, each
 * task's result handed back through a GAsyncQueue, and a map of 10 M ints in 4 chunks per thread.
 * Rows: bench/peers/pool.h. */
#include <glib.h>
#include <string.h>

#include "pool.h"

typedef struct {
    int arg, result;
    /* a map chunk when n > 0 */
    const int *in;
    int *out;
    size_t n;
} job;

static GAsyncQueue *done;

static void work(gpointer data, gpointer user)
{
    (void)user;
    job *j = data;
    if (j->n)
        for (size_t i = 0; i < j->n; i++)
            peer_item_fn(&j->in[i], &j->out[i], NULL);
    else
        j->result = peer_task_fn(j->arg);
    g_async_queue_push(done, j);
}

static double map_once(GThreadPool *p, const int *in, int *out, int threads)
{
    int chunks = threads * 4;
    job *cj = g_new0(job, chunks);
    size_t per = (PEER_MAP_N + (size_t)chunks - 1) / (size_t)chunks;
    double t0 = peer_now();
    for (int c = 0; c < chunks; c++) {
        size_t first = (size_t)c * per;
        cj[c].in = in + first;
        cj[c].out = out + first;
        cj[c].n = first >= PEER_MAP_N ? 0 : (PEER_MAP_N - first < per ? PEER_MAP_N - first : per);
        g_thread_pool_push(p, &cj[c], NULL);
    }
    for (int c = 0; c < chunks; c++)
        g_async_queue_pop(done);
    double dt = peer_now() - t0;
    g_free(cj);
    peer_check_map("glib map", in, out, PEER_MAP_N);
    return PEER_MAP_N / dt;
}

int main(void)
{
    int threads = (int)g_get_num_processors();
    done = g_async_queue_new();
    GThreadPool *p = g_thread_pool_new(work, NULL, threads, TRUE, NULL);
    job *js = g_new0(job, PEER_SUBMIT_N);
    /* warm: the threads exist and have run */
    js[0].arg = 0;
    g_thread_pool_push(p, &js[0], NULL);
    g_async_queue_pop(done);

    double t0 = peer_now();
    for (int i = 0; i < PEER_SUBMIT_N; i++) {
        js[i].arg = i;
        g_thread_pool_push(p, &js[i], NULL);
    }
    for (int i = 0; i < PEER_SUBMIT_N; i++) {
        job *j = g_async_queue_pop(done);
        if (j->result != j->arg + 1) peer_fail("glib submit+get");
    }
    double dt = peer_now() - t0;
    peer_row(PEER_SUBMIT_WORKLOAD, "glib", PEER_SUBMIT_N / dt, "tasks/s", "higher");
    g_free(js);

    int *in = g_new(int, PEER_MAP_N), *out = g_new0(int, PEER_MAP_N);
    for (int i = 0; i < PEER_MAP_N; i++)
        in[i] = i;
    map_once(p, in, out, threads); /* warm, as mproc's map row is */
    memset(out, 0, PEER_MAP_N * sizeof *out);
    peer_map_rows("glib", map_once(p, in, out, threads));
    g_thread_pool_free(p, FALSE, TRUE);
    g_free(in);
    g_free(out);
    return 0;
}
