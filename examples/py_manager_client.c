/* A C worker of a Python orchestrator: it uses a Python SyncManager's shared dict, queue and event
 * through the ordinary mproc calls (docs/manager.md, "C clients of a Python manager").
 *
 * The Python side is any BaseManager/SyncManager server; this one registers three names:
 *
 *     jobs, tasks, done = {"owner": "python"}, queue.Queue(), threading.Event()
 *     Manager.register("get_jobs", callable=lambda: jobs, proxytype=DictProxy)
 *     Manager.register("get_tasks", callable=lambda: tasks)
 *     Manager.register("get_done", callable=lambda: done, proxytype=EventProxy)
 *
 *     py_manager_client tcp:127.0.0.1:PORT AUTHKEY    use a server that runs already
 *     py_manager_client                               start that server with python3 first
 *
 * mproc_manager_connect finds out at connect time that the server speaks Python; Python's str,
 * int and float travel as their pickles, which the mproc_pyvalue_* helpers make and read. */
#define _POSIX_C_SOURCE 200809L /* fdopen, kill under -std=c17 */
#include <errno.h>
#include <mproc.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char server_py[] =
    "import queue, sys, threading\n"
    "from multiprocessing.managers import DictProxy, EventProxy, SyncManager\n"
    "jobs, tasks, done = {'owner': 'python'}, queue.Queue(), threading.Event()\n"
    "for n in (2, 3, 4):\n"
    "    tasks.put(n)\n"
    "class Manager(SyncManager):\n"
    "    pass\n"
    "Manager.register('get_jobs', callable=lambda: jobs, proxytype=DictProxy)\n"
    "Manager.register('get_tasks', callable=lambda: tasks)\n"
    "Manager.register('get_done', callable=lambda: done, proxytype=EventProxy)\n"
    "server = Manager(address=('127.0.0.1', 0), authkey=sys.argv[1].encode()).get_server()\n"
    "print('READY', server.address[1], flush=True)\n"
    "server.serve_forever()\n";

/* Start the Python server above; its port into address. */
static int start_server(const char *key, char *address, size_t cap, pid_t *pid)
{
    int p[2];
    if (pipe(p) < 0) return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv[] = {"python3", "-c", (char *)server_py, (char *)key, NULL};
    int rc = posix_spawnp(pid, "python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -rc;
    }
    FILE *f = fdopen(p[0], "r");
    int port = 0;
    if (!f || fscanf(f, "READY %d", &port) != 1) port = 0;
    if (f) fclose(f);
    snprintf(address, cap, "tcp:127.0.0.1:%d", port);
    return port ? 0 : -ECHILD;
}

/* The key of a Python str, or its value, as bytes (its pickle). */
static size_t str_bytes(unsigned char *buf, size_t cap, const char *s)
{
    size_t len = 0;
    return mproc_pyvalue_str(buf, cap, s, strlen(s), &len) == 0 ? len : 0;
}

static int work(mproc_manager *m)
{
    mproc_dict *jobs = NULL;
    mproc_queue *tasks = NULL;
    mproc_event *done = NULL;
    int rc = mproc_manager_dict(m, "get_jobs", &jobs);
    if (rc == 0) rc = mproc_manager_queue(m, "get_tasks", NULL, &tasks);
    if (rc == 0) rc = mproc_manager_event(m, "get_done", &done);
    unsigned char key[64], val[64];
    char text[64];
    size_t klen, vlen, n;
    /* a str the Python side wrote */
    if (rc == 0)
        rc = mproc_dict_get(jobs, key, str_bytes(key, sizeof key, "owner"), val, sizeof val, &vlen);
    if (rc == 0) rc = mproc_pyvalue_get_str(val, vlen, text, sizeof text, &n);
    if (rc == 0) printf("jobs[\"owner\"] = \"%s\" (a Python str)\n", text);
    /* a key nobody wrote: Python's KeyError */
    if (rc == 0 && mproc_dict_get(jobs, key, str_bytes(key, sizeof key, "missing"), val, sizeof val,
                                  &vlen) == -ENOENT)
        printf("jobs[\"missing\"]: %s\n", mproc_manager_remote_error(m));
    /* take the tasks (Python ints) until the queue is empty, answer each with its square */
    while (rc == 0) {
        int64_t task = 0;
        rc = mproc_queue_get(tasks, val, sizeof val, &vlen, 0);
        if (rc == -EAGAIN) { /* queue.Empty */
            rc = 0;
            break;
        }
        if (rc == 0) rc = mproc_pyvalue_get_int(val, vlen, &task);
        char name[32];
        snprintf(name, sizeof name, "square of %lld", (long long)task);
        klen = str_bytes(key, sizeof key, name);
        if (rc == 0) rc = mproc_pyvalue_int(val, sizeof val, task * task, &vlen);
        if (rc == 0) rc = mproc_dict_set(jobs, key, klen, val, vlen);
        if (rc == 0)
            printf("task %lld done: jobs[\"%s\"] = %lld\n", (long long)task, name,
                   (long long)(task * task));
    }
    size_t len = 0;
    if (rc == 0) rc = mproc_dict_len(jobs, &len);
    if (rc == 0) printf("jobs has %zu entries\n", len);
    if (rc == 0) rc = mproc_event_set(done); /* the orchestrator's done.wait() returns */
    if (rc == 0) printf("done is set: %s\n", mproc_event_is_set(done) ? "yes" : "no");
    mproc_event_free(done);
    mproc_queue_free(tasks);
    mproc_dict_free(jobs);
    return rc;
}

int main(int argc, char **argv)
{
    char address[64];
    const char *key = argc > 2 ? argv[2] : "example key";
    pid_t server = 0;
    int rc = 0;
    if (argc > 2)
        snprintf(address, sizeof address, "%s", argv[1]);
    else
        rc = start_server(key, address, sizeof address, &server);
    mproc_manager *m = NULL;
    if (rc == 0) rc = mproc_manager_connect(&m, address, key, strlen(key));
    if (rc == 0)
        printf("connected to %s, dialect %s\n", address,
               mproc_manager_dialect(m) == MPROC_MANAGER_DIALECT_PYTHON ? "python" : "native");
    if (rc == 0) rc = work(m);
    if (rc != 0) fprintf(stderr, "py_manager_client: %s\n", mproc_strerror(rc));
    if (server) { /* the server this program started: asked to end, or made to */
        if (!m || mproc_manager_shutdown(m) != 0) kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    mproc_manager_free(m);
    return rc == 0 ? 0 : 1;
}
