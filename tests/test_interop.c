/* Wire compatibility with the real Python: multiprocessing.connection Client and Listener (the
 * installed python3, legacy HMAC-MD5 handshake up to 3.11) and a hand-written CPython 3.12
 * handshake ({sha256}) in tests/python/modern_peer.py. Python helpers run as child processes
 * (fork + exec) and are always reaped. Skipped, saying so, when no python3 is on PATH. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The helper scripts, found from this file's path (CMake compiles with absolute paths). */
static void script_path(const char *name, char *out, size_t cap)
{
    const char *slash = strrchr(__FILE__, '/');
    int dirlen = slash ? (int)(slash - __FILE__) : 1;
    snprintf(out, cap, "%.*s/python/%s", dirlen, slash ? __FILE__ : ".", name);
}

static bool have_python(void)
{
    const char *path = getenv("PATH");
    if (!path) return false;
    char *copy = strdup(path), *save = NULL;
    bool found = false;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char exe[PATH_MAX];
        snprintf(exe, sizeof exe, "%s/python3", *dir ? dir : ".");
        found = access(exe, X_OK) == 0;
    }
    free(copy);
    return found;
}

#define NEED_PYTHON()                                                                              \
    do {                                                                                           \
        if (!have_python()) harness_skip("no python3 on PATH: Python interop not tested");         \
    } while (0)

typedef struct {
    pid_t pid;
    int out; /* the helper's stdout, for its READY line */
} helper;

/* Start PYTHON SCRIPT ARGS... with its stdout on a pipe. */
static helper spawn_with(const char *python, const char *script, const char *a1, const char *a2,
                         const char *a3)
{
    char path[PATH_MAX];
    script_path(script, path, sizeof path);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        const char *argv[] = {python, path, a1, a2, a3, NULL};
        execvp(python, (char **)argv);
        _exit(127);
    }
    close(p[1]);
    return (helper){pid, p[0]};
}

static const char *g_python = "python3";

static helper spawn(const char *script, const char *a1, const char *a2, const char *a3)
{
    return spawn_with(g_python, script, a1, a2, a3);
}

/* Read the helper's "READY <address>" line. */
static void await_ready(helper *h, char *addr, size_t cap)
{
    char line[512];
    size_t n = 0;
    double end = harness_now() + 30 * harness_slow();
    while (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n')) {
        struct pollfd p = {.fd = h->out, .events = POLLIN};
        int left = (int)((end - harness_now()) * 1000);
        CHECK(left > 0 && poll(&p, 1, left) == 1);
        ssize_t r = read(h->out, line + n, 1);
        CHECK(r == 1);
        n++;
    }
    line[n - 1] = '\0';
    CHECK(strncmp(line, "READY ", 6) == 0);
    snprintf(addr, cap, "%s", line + 6);
}

/* Reap the helper (killing it if it outstays 30 s) and return its exit code. */
static int reap(helper *h)
{
    int pfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
    CHECK(pfd >= 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, (int)(30000 * harness_slow()));
    while (r < 0 && errno == EINTR);
    close(pfd);
    if (r == 0) kill(h->pid, SIGKILL);
    int st;
    CHECK_EQ(waitpid(h->pid, &st, 0), h->pid);
    close(h->out);
    CHECK(r == 1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void hex(const char *key, char *out)
{
    if (!key) {
        strcpy(out, "-");
        return;
    }
    for (const char *k = key; *k; k++)
        out += sprintf(out, "%02x", (unsigned char)*k);
}

/* The messages the C side sends; the Python side echoes each reversed. */
static void exchange(mproc_conn *c)
{
    enum { BIG = 1 << 20 };
    unsigned char *big = malloc(BIG), *back = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 251);
    char buf[16];
    size_t len;
    CHECK_OK(mproc_conn_send(c, "hello", 5));
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 30));
    CHECK(len == 5 && memcmp(buf, "olleh", 5) == 0);
    CHECK_OK(mproc_conn_send(c, "", 0));
    CHECK_OK(mproc_conn_recv(c, buf, sizeof buf, &len, 30));
    CHECK_EQ(len, 0);
    CHECK_OK(mproc_conn_send(c, big, BIG));
    CHECK_OK(mproc_conn_recv(c, back, BIG, &len, 30));
    CHECK_EQ(len, BIG);
    for (size_t i = 0; i < BIG; i++)
        if (back[i] != big[BIG - 1 - i]) CHECK(!"reversed message differs");
    free(big);
    free(back);
}

/* ---- Python client, mproc listener ---- */

static int py_client_against_listener(const char *address, const char *skey, const char *ckey,
                                      int *py_code)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, address, skey, skey ? strlen(skey) : 0));
    char k[128];
    hex(ckey, k);
    helper h = spawn("mp_client.py", mproc_listener_address(l), k, NULL);
    mproc_conn *c;
    int r = mproc_listener_accept(l, &c, 60 * harness_slow());
    if (r == 0) {
        exchange(c);
        mproc_conn_close(c);
    }
    *py_code = reap(&h);
    mproc_listener_free(l);
    return r;
}

TEST_T(python_client_to_mproc_listener_tcp, 120)
{
    NEED_PYTHON();
    int code;
    CHECK_OK(py_client_against_listener("tcp:127.0.0.1:0", "sesame", "sesame", &code));
    CHECK_EQ(code, 0);
}

TEST_T(python_client_to_mproc_listener_unix, 120)
{
    NEED_PYTHON();
    char dir[] = "/tmp/mproc-interop-XXXXXX", addr[128];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(addr, sizeof addr, "unix:%s/sock", dir);
    int code;
    CHECK_OK(py_client_against_listener(addr, "sesame", "sesame", &code));
    CHECK_EQ(code, 0);
    snprintf(addr, sizeof addr, "unix:@mproc-interop-%d", (int)getpid());
    CHECK_OK(py_client_against_listener(addr, NULL, NULL, &code)); /* no authkey at all */
    CHECK_EQ(code, 0);
    CHECK_OK(rmdir(dir));
}

TEST_T(python_client_with_wrong_key_fails_both_sides, 120)
{
    NEED_PYTHON();
    int code;
    CHECK_RC(py_client_against_listener("tcp:127.0.0.1:0", "sesame", "open up", &code),
             MPROC_EAUTH);
    CHECK_EQ(code, 3); /* AuthenticationError in Python */
}

/* ---- mproc client, Python listener ---- */

static int client_against_py_listener(const char *script, const char *role, const char *address,
                                      const char *skey, const char *ckey, int *py_code)
{
    char k[128];
    hex(skey, k);
    helper h = role ? spawn(script, role, address, k) : spawn(script, address, k, NULL);
    char bound[256];
    await_ready(&h, bound, sizeof bound);
    mproc_conn *c;
    int r = mproc_client_connect(&c, bound, ckey, ckey ? strlen(ckey) : 0);
    if (r == 0) {
        exchange(c);
        mproc_conn_close(c);
    }
    *py_code = reap(&h);
    return r;
}

TEST_T(mproc_client_to_python_listener, 120)
{
    NEED_PYTHON();
    int code;
    CHECK_OK(client_against_py_listener("mp_listener.py", NULL, "tcp:127.0.0.1:0", "sesame",
                                        "sesame", &code));
    CHECK_EQ(code, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-interop-l-%d", (int)getpid());
    CHECK_OK(client_against_py_listener("mp_listener.py", NULL, addr, "k", "k", &code));
    CHECK_EQ(code, 0);
}

TEST_T(mproc_client_with_wrong_key_fails_both_sides, 120)
{
    NEED_PYTHON();
    int code;
    CHECK_RC(client_against_py_listener("mp_listener.py", NULL, "tcp:127.0.0.1:0", "sesame",
                                        "open up", &code),
             MPROC_EAUTH);
    CHECK_EQ(code, 3);
}

/* ---- the 3.12 "{sha256}" form, byte for byte ---- */

TEST_T(sha256_handshake_against_handwritten_cpython312_client, 120)
{
    NEED_PYTHON();
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, "tcp:127.0.0.1:0", "modern key", 10));
    char k[64];
    hex("modern key", k);
    helper h = spawn("modern_peer.py", "client", mproc_listener_address(l), k);
    mproc_conn *c;
    CHECK_OK(mproc_listener_accept(l, &c, 60 * harness_slow()));
    exchange(c);
    mproc_conn_close(c);
    CHECK_EQ(reap(&h), 0);

    hex("not the key", k);
    h = spawn("modern_peer.py", "client", mproc_listener_address(l), k);
    CHECK_RC(mproc_listener_accept(l, &c, 60 * harness_slow()), MPROC_EAUTH);
    CHECK_EQ(reap(&h), 3);
    mproc_listener_free(l);
}

TEST_T(sha256_handshake_against_handwritten_cpython312_server, 120)
{
    NEED_PYTHON();
    int code;
    CHECK_OK(client_against_py_listener("modern_peer.py", "server", "tcp:127.0.0.1:0", "modern key",
                                        "modern key", &code));
    CHECK_EQ(code, 0);
    CHECK_RC(client_against_py_listener("modern_peer.py", "server", "tcp:127.0.0.1:0", "modern key",
                                        "other key", &code),
             MPROC_EAUTH);
    CHECK_EQ(code, 3);
}

/* ---- a real CPython >= 3.12, when there is one ---- */

/* Whether `python` runs and is at least 3.12. */
static bool is_modern(const char *python)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        const char *argv[] = {python, "-c", "import sys; sys.exit(sys.version_info < (3, 12))",
                              NULL};
        execvp(python, (char **)argv);
        _exit(127);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* $MPROC_TEST_PYTHON312, else python3.13 / python3.12 on PATH, else a pyenv-installed 3.12+. */
static const char *find_modern_python(void)
{
    static char found[PATH_MAX];
    const char *env = getenv("MPROC_TEST_PYTHON312");
    if (env && *env) return is_modern(env) ? env : NULL;
    static const char *names[] = {"python3.13", "python3.12", "python3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (is_modern(names[i])) return names[i];
    const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
    char base[PATH_MAX];
    if (root && *root)
        snprintf(base, sizeof base, "%s/versions", root);
    else if (home)
        snprintf(base, sizeof base, "%s/.pyenv/versions", home);
    else
        return NULL;
    static const char *versions[] = {"3.14", "3.13", "3.12"};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        /* pyenv names its directories by full version: take the first matching one */
        for (int patch = 20; patch >= 0; patch--) {
            snprintf(found, sizeof found, "%s/%s.%d/bin/python3", base, versions[i], patch);
            if (access(found, X_OK) == 0 && is_modern(found)) return found;
        }
    }
    return NULL;
}

#define NEED_MODERN_PYTHON()                                                                       \
    do {                                                                                           \
        NEED_PYTHON();                                                                             \
        g_python = find_modern_python();                                                           \
        if (!g_python)                                                                             \
            harness_skip("no CPython >= 3.12 found (set MPROC_TEST_PYTHON312); the {sha256} "      \
                         "form is still covered by modern_peer.py");                               \
        printf("using %s\n", g_python);                                                            \
    } while (0)

TEST_T(real_cpython312_client_and_listener, 180)
{
    NEED_MODERN_PYTHON();
    int code;
    CHECK_OK(py_client_against_listener("tcp:127.0.0.1:0", "sesame", "sesame", &code));
    CHECK_EQ(code, 0);
    CHECK_OK(client_against_py_listener("mp_listener.py", NULL, "tcp:127.0.0.1:0", "sesame",
                                        "sesame", &code));
    CHECK_EQ(code, 0);
}

TEST_T(real_cpython312_wrong_keys_fail_both_sides, 180)
{
    NEED_MODERN_PYTHON();
    int code;
    CHECK_RC(py_client_against_listener("tcp:127.0.0.1:0", "sesame", "open up", &code),
             MPROC_EAUTH);
    CHECK_EQ(code, 3);
    CHECK_RC(client_against_py_listener("mp_listener.py", NULL, "tcp:127.0.0.1:0", "sesame",
                                        "open up", &code),
             MPROC_EAUTH);
    CHECK_EQ(code, 3);
}
