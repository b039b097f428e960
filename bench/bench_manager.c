/* Manager dict throughput (issue 18): set+get from a family process (the arena object itself),
 * then from a process outside the family (exec'd, so no arena of its own) over a unix socket,
 * with the server's arena mapped (the default: manager/share.c) and through proxies
 * (MPROC_MANAGER_MAP=0), and over loopback TCP (proxies), one call at a time and batched
 * (set_many/get_many of BATCH entries). Each row is the median of ROUNDS rounds, in operations
 * (calls, or entries of a batch) per second. Python's SyncManager dict one at a time:
 * bench/py/bench_manager.py. */
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

#define ROUNDS 5
#define ONE_OPS 20000 /* set+get pairs a round, through a proxy */
#define ARENA_OPS 1000000
#define BATCH 1000
#define BATCHES 50

extern char **environ;

static double one_at_a_time(mproc_dict *d, int pairs)
{
    char key[16], val[16], buf[16];
    size_t len;
    double t0 = bench_now();
    for (int i = 0; i < pairs; i++) {
        int n = snprintf(key, sizeof key, "k%d", i & 1023);
        memcpy(val, key, 16);
        if (mproc_dict_set(d, key, (size_t)n, val, (size_t)n) < 0) abort();
        if (mproc_dict_get(d, key, (size_t)n, buf, sizeof buf, &len) < 0) abort();
    }
    return 2.0 * pairs / (bench_now() - t0);
}

static double batched(mproc_dict *d)
{
    static char keys[BATCH][16];
    static mproc_dict_item items[BATCH];
    for (int i = 0; i < BATCH; i++) {
        int n = snprintf(keys[i], sizeof keys[i], "b%d", i);
        items[i] = (mproc_dict_item){keys[i], (size_t)n, keys[i], (size_t)n};
    }
    double t0 = bench_now();
    for (int b = 0; b < BATCHES; b++) {
        if (mproc_dict_set_many(d, items, BATCH) < 0) abort();
        void *block;
        if (mproc_dict_get_many(d, items, BATCH, &block) != BATCH) abort();
        free(block);
        for (int i = 0; i < BATCH; i++) /* get_many pointed val into the block */
            items[i].val = keys[i], items[i].vlen = items[i].klen;
    }
    return 2.0 * BATCH * BATCHES / (bench_now() - t0);
}

static void rows(mproc_dict *d, const char *where, int pairs)
{
    double one[ROUNDS], many[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        one[r] = one_at_a_time(d, pairs);
        many[r] = batched(d);
    }
    char w[96];
    snprintf(w, sizeof w, "manager dict set+get, %s, one at a time", where);
    bench_row(w, "mproc", bench_median(one, ROUNDS) / 1e3, "k ops/s", "higher");
    snprintf(w, sizeof w, "manager dict set+get, %s, batched %d", where, BATCH);
    bench_row(w, "mproc", bench_median(many, ROUNDS) / 1e3, "k ops/s", "higher");
}

/* The outside process: bench_manager --outside ADDRESS WHERE MAPPED (1: it must have mapped the
 * arena, 0: it must not) */
static int outside(const char *address, const char *where, bool want_mapped)
{
    mproc_manager *m;
    mproc_dict *d;
    mproc_value *probe;
    if (mproc_manager_connect(&m, address, "bench", 5) < 0) return 1;
    if (mproc_manager_dict(m, "bench", &d) < 0) return 1;
    /* a value's pointer: the bytes themselves when mapped, NULL through a proxy */
    if (mproc_manager_value(m, "bench-probe", 8, false, &probe) < 0) return 1;
    if ((mproc_value_ptr(probe) != NULL) != want_mapped) return 2;
    rows(d, where, want_mapped ? ARENA_OPS : ONE_OPS);
    mproc_manager_free(m);
    return 0;
}

static void run_outside(const char *address, const char *where, bool map)
{
    char *argv[] = {"/proc/self/exe", "--outside",     (char *)address,
                    (char *)where,    map ? "1" : "0", NULL};
    setenv("MPROC_MANAGER_MAP", map ? "1" : "0", 1);
    pid_t pid;
    int st;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0) abort();
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) abort();
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--outside") == 0)
        return outside(argv[2], argv[3], strcmp(argv[4], "1") == 0);
    mproc_manager *m;
    char unix_addr[64];
    snprintf(unix_addr, sizeof unix_addr, "unix:@mproc-bench-manager-%d", (int)getpid());
    if (mproc_manager_start(&m, unix_addr, "bench", 5, NULL) < 0) abort();
    mproc_dict *d;
    if (mproc_manager_dict(m, "bench", &d) < 0) abort();
    rows(d, "family (arena)", ARENA_OPS);
    run_outside(unix_addr, "outside, unix socket, mapped arena", true);
    run_outside(unix_addr, "outside, unix socket", false);
    mproc_manager_free(m);
    if (mproc_manager_start(&m, "tcp:127.0.0.1:0", "bench", 5, NULL) < 0) abort();
    run_outside(mproc_manager_address(m), "outside, loopback TCP", false);
    mproc_manager_free(m);
    return 0;
}
