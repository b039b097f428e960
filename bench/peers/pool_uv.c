/* libuv's thread pool (UV_THREADPOOL_SIZE = CPUs): uv_queue_work with 100k requests in flight,
 * each result checked in its after-work callback on the loop thread, and a map of 10 M ints in
 * 4 chunks per thread. Rows: bench/peers/pool.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "pool.h"

typedef struct {
    uv_work_t req;
    int arg, result;
    const int *in;
    int *out;
    size_t n;
} job;

static long completed;

static void work(uv_work_t *req)
{
    job *j = req->data;
    if (j->n)
        for (size_t i = 0; i < j->n; i++)
            peer_item_fn(&j->in[i], &j->out[i], NULL);
    else
        j->result = peer_task_fn(j->arg);
}

static void after(uv_work_t *req, int status)
{
    job *j = req->data;
    if (status || (!j->n && j->result != j->arg + 1)) peer_fail("libuv submit+get");
    completed++;
}

static void queue(uv_loop_t *loop, job *j)
{
    j->req.data = j;
    if (uv_queue_work(loop, &j->req, work, after)) peer_fail("uv_queue_work");
}

static double map_once(uv_loop_t *loop, const int *in, int *out, int threads)
{
    int chunks = threads * 4;
    job *cj = calloc((size_t)chunks, sizeof *cj);
    size_t per = (PEER_MAP_N + (size_t)chunks - 1) / (size_t)chunks;
    double t0 = peer_now();
    for (int c = 0; c < chunks; c++) {
        size_t first = (size_t)c * per;
        cj[c].in = in + first;
        cj[c].out = out + first;
        cj[c].n = first >= PEER_MAP_N ? 0 : (PEER_MAP_N - first < per ? PEER_MAP_N - first : per);
        queue(loop, &cj[c]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    double dt = peer_now() - t0;
    free(cj);
    peer_check_map("libuv map", in, out, PEER_MAP_N);
    return PEER_MAP_N / dt;
}

int main(void)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char n[16];
    snprintf(n, sizeof n, "%d", threads);
    setenv("UV_THREADPOOL_SIZE", n, 1); /* read when the pool starts, at the first request */
    uv_loop_t *loop = uv_default_loop();
    job *js = calloc(PEER_SUBMIT_N, sizeof *js);
    queue(loop, &js[0]); /* warm: the pool's threads start */
    uv_run(loop, UV_RUN_DEFAULT);

    completed = 0;
    double t0 = peer_now();
    for (int i = 0; i < PEER_SUBMIT_N; i++) {
        js[i].arg = i;
        queue(loop, &js[i]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    double dt = peer_now() - t0;
    if (completed != PEER_SUBMIT_N) peer_fail("libuv submit+get count");
    peer_row(PEER_SUBMIT_WORKLOAD, "libuv", PEER_SUBMIT_N / dt, "tasks/s", "higher");
    free(js);

    int *in = malloc(PEER_MAP_N * sizeof *in), *out = calloc(PEER_MAP_N, sizeof *out);
    for (int i = 0; i < PEER_MAP_N; i++)
        in[i] = i;
    map_once(loop, in, out, threads);
    memset(out, 0, PEER_MAP_N * sizeof *out);
    peer_map_rows("libuv", map_once(loop, in, out, threads));
    uv_loop_close(loop);
    free(in);
    free(out);
    return 0;
}
