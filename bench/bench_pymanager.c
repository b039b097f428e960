/* A C client of a Python SyncManager through the public API (mproc_manager_connect, which finds
 * the Python dialect, and the ordinary mproc_dict calls) beside Python's own client of the same
 * server, same run, rounds interleaved: dict set+get one at a time (bench_manager's workload), and
 * the cost of a connect. The server is python3's SyncManager on an abstract unix socket; without
 * python3 the program prints nothing. */
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

#define ROUNDS 5
#define PAIRS 5000
#define CONNECTS 20

extern char **environ;

static const char server_py[] =
    "import sys\n"
    "from multiprocessing.managers import SyncManager\n"
    "server = SyncManager(address='\\0' + sys.argv[1], authkey=b'bench').get_server()\n"
    "print('READY', flush=True)\n"
    "server.serve_forever()\n";

/* Python's client: the same pairs through a DictProxy; prints "<ops/s> <connect ms>". */
static const char client_py[] =
    "import statistics, sys, time\n"
    "from multiprocessing.managers import SyncManager\n"
    "addr, pairs, connects = '\\0' + sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "ms = []\n"
    "for _ in range(connects):\n"
    "    t0 = time.perf_counter()\n"
    "    m = SyncManager(address=addr, authkey=b'bench')\n"
    "    m.connect()\n"
    "    ms.append((time.perf_counter() - t0) * 1e3)\n"
    "d = m.dict()\n"
    "t0 = time.perf_counter()\n"
    "for i in range(pairs):\n"
    "    k = b'k%d' % (i & 1023)\n"
    "    d[k] = k\n"
    "    d[k]\n"
    "print(2 * pairs / (time.perf_counter() - t0), statistics.median(ms), flush=True)\n";

static pid_t spawn_py(const char *script, char *const *args, FILE **out)
{
    int p[2];
    if (pipe(p) < 0) abort();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv[8] = {"python3", "-c", (char *)script};
    for (int i = 0; args[i] && i < 4; i++)
        argv[3 + i] = args[i];
    pid_t pid;
    int rc = posix_spawnp(&pid, "python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return 0;
    }
    *out = fdopen(p[0], "r");
    return pid;
}

static double c_pairs(mproc_dict *d)
{
    char key[16], buf[16];
    size_t len;
    double t0 = bench_now();
    for (int i = 0; i < PAIRS; i++) {
        int n = snprintf(key, sizeof key, "k%d", i & 1023);
        if (mproc_dict_set(d, key, (size_t)n, key, (size_t)n) < 0) abort();
        if (mproc_dict_get(d, key, (size_t)n, buf, sizeof buf, &len) < 0) abort();
    }
    return 2.0 * PAIRS / (bench_now() - t0);
}

int main(void)
{
    char name[64], address[80], pairs[16], connects[16];
    snprintf(name, sizeof name, "mproc-bench-pym-%d", (int)getpid());
    snprintf(address, sizeof address, "unix:@%s", name);
    snprintf(pairs, sizeof pairs, "%d", PAIRS);
    snprintf(connects, sizeof connects, "%d", CONNECTS);
    FILE *srv_out;
    pid_t srv = spawn_py(server_py, (char *[]){name, NULL}, &srv_out);
    char line[128];
    if (!srv) return 0; /* no python3 */
    if (!fgets(line, sizeof line, srv_out) || strncmp(line, "READY", 5) != 0) abort();
    double c_ops[ROUNDS], py_ops[ROUNDS], c_conn[ROUNDS], py_conn[ROUNDS];
    mproc_manager *m = NULL;
    for (int r = 0; r < ROUNDS; r++) {
        double ms[CONNECTS];
        for (int i = 0; i < CONNECTS; i++) {
            mproc_manager_free(m);
            double t0 = bench_now();
            if (mproc_manager_connect(&m, address, "bench", 5) < 0) abort();
            ms[i] = (bench_now() - t0) * 1e3;
        }
        if (mproc_manager_dialect(m) != MPROC_MANAGER_DIALECT_PYTHON) abort();
        c_conn[r] = bench_median(ms, CONNECTS);
        mproc_dict *d;
        if (mproc_manager_dict(m, "dict", &d) < 0) abort();
        c_ops[r] = c_pairs(d);
        mproc_dict_free(d);
        FILE *out;
        pid_t cl = spawn_py(client_py, (char *[]){name, pairs, connects, NULL}, &out);
        if (!cl || !fgets(line, sizeof line, out) ||
            sscanf(line, "%lf %lf", &py_ops[r], &py_conn[r]) != 2)
            abort();
        fclose(out);
        int st;
        if (waitpid(cl, &st, 0) != cl || !WIFEXITED(st) || WEXITSTATUS(st)) abort();
    }
    if (mproc_manager_shutdown(m) < 0) abort();
    mproc_manager_free(m);
    int st;
    waitpid(srv, &st, 0);
    fclose(srv_out);
    const char *w =
        "Python SyncManager dict set+get, unix socket, one at a time (C client vs Python's)";
    bench_row(w, "mproc", bench_median(c_ops, ROUNDS) / 1e3, "k ops/s", "higher");
    bench_row(w, "python", bench_median(py_ops, ROUNDS) / 1e3, "k ops/s", "higher");
    w = "Python SyncManager connect + handshake (C: + dialect probe; Python: + dummy)";
    bench_row(w, "mproc", bench_median(c_conn, ROUNDS), "ms", "lower");
    bench_row(w, "python", bench_median(py_conn, ROUNDS), "ms", "lower");
    return 0;
}
