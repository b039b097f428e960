/* mproc's side of the chunked-imap comparison: mproc_imap over 5 M tiny items (an int each),
 * chunksize 1000, default pool, results in order, each checked. The peer is the MPI
 * master/worker of mpi_pool.c with 1000 items per message. */
#include <stdlib.h>

#include "mproc.h"
#include "pool.h"

typedef struct {
    int next;
} input;

static int gen(const void **data, size_t *len, void *arg)
{
    input *in = arg;
    if (in->next >= PEER_IMAP_N) return 0;
    static int item;
    item = in->next++;
    *data = &item;
    *len = sizeof item;
    return 1;
}

static int task(mproc_task *t)
{
    size_t len;
    const int *x = mproc_task_arg(t, &len);
    int y;
    peer_item_fn(x, &y, NULL);
    return mproc_task_return(t, &y, sizeof y);
}

static double imap_once(mproc_pool *p)
{
    input in = {0};
    mproc_imap *it;
    double t0 = peer_now();
    if (mproc_imap_new(&it, p, task, gen, &in, &(mproc_imap_opts){.chunksize = PEER_IMAP_CHUNK}) <
        0)
        peer_fail("mproc imap_new");
    const void *data;
    size_t len, index, want = 0;
    int r;
    while ((r = mproc_imap_next(it, &data, &len, &index, MPROC_FOREVER)) == 0) {
        if (index != want || len != sizeof(int) || *(const int *)data != (int)want * 2)
            peer_fail("mproc imap");
        want++;
    }
    double dt = peer_now() - t0;
    if (r != MPROC_EEND || want != PEER_IMAP_N) peer_fail("mproc imap end");
    mproc_imap_free(it);
    return PEER_IMAP_N / dt;
}

int main(void)
{
    mproc_pool *p;
    if (mproc_pool_new(&p, NULL) < 0) peer_fail("mproc pool_new");
    imap_once(p); /* warm, as the map rows are */
    peer_row(PEER_IMAP_WORKLOAD, "mproc", imap_once(p), "items/s", "higher");
    mproc_pool_free(p);
    return 0;
}
