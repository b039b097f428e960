#include "py_util.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Whether `python` runs, quietly. */
static bool runs(const char *python, const char *code)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        const char *argv[] = {python, "-c", code, NULL};
        execvp(python, (char **)argv);
        _exit(127);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

const char *py_default(void)
{
    return runs("python3", "pass") ? "python3" : NULL;
}

void py_need(void)
{
    if (!py_default()) harness_skip("no python3 on PATH: Python interop not tested");
}

const char *py_find(const char *version)
{
    static char found[4][PATH_MAX];
    static int next;
    char *out = found[next++ % 4];
    char code[96];
    snprintf(code, sizeof code, "import sys; sys.exit('%%d.%%d' %% sys.version_info[:2] != '%s')",
             version);
    snprintf(out, PATH_MAX, "python%s", version);
    if (runs(out, code)) return out;
    const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
    char base[PATH_MAX / 2];
    if (root && *root)
        snprintf(base, sizeof base, "%s/versions", root);
    else if (home)
        snprintf(base, sizeof base, "%s/.pyenv/versions", home);
    else
        return NULL;
    for (int patch = 20; patch >= 0; patch--) {
        snprintf(out, PATH_MAX, "%s/%s.%d/bin/python3", base, version, patch);
        if (access(out, X_OK) == 0 && runs(out, code)) return out;
    }
    return NULL;
}

py_helper py_spawn(const char *python, const char *script, const char *const *args)
{
    char path[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    int dirlen = slash ? (int)(slash - __FILE__) : 1;
    snprintf(path, sizeof path, "%.*s/python/%s", dirlen, slash ? __FILE__ : ".", script);
    const char *argv[16] = {python, path};
    size_t n = 2;
    for (; args && args[n - 2] && n < 15; n++)
        argv[n] = args[n - 2];
    argv[n] = NULL;
    int in[2], out[2];
    CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        execvp(python, (char **)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    return (py_helper){pid, in[1], out[0]};
}

static void wait_readable(int fd, double end)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do {
        int left = (int)((end - harness_now()) * 1000);
        CHECK(left > 0);
        r = poll(&p, 1, left);
    } while (r < 0 && errno == EINTR);
    CHECK(r == 1);
}

void py_await_ready(py_helper *h, char *rest, size_t cap)
{
    char line[512];
    size_t n = 0;
    double end = harness_now() + 30 * harness_slow();
    while (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n')) {
        wait_readable(h->out, end);
        CHECK(read(h->out, line + n, 1) == 1);
        n++;
    }
    line[n - 1] = '\0';
    if (strncmp(line, "READY", 5) != 0 && strncmp(line, "BENCH", 5) != 0)
        harness_fail(__FILE__, __LINE__, "helper said %s", line);
    snprintf(rest, cap, "%s", line[5] ? line + 6 : "");
}

void py_write_all(py_helper *h, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(h->in, c, n);
        if (w < 0 && errno == EINTR) continue;
        CHECK(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

void py_read_all(py_helper *h, void *p, size_t n)
{
    char *c = p;
    double end = harness_now() + 60 * harness_slow();
    while (n) {
        wait_readable(h->out, end);
        ssize_t r = read(h->out, c, n);
        if (r < 0 && errno == EINTR) continue;
        CHECK(r > 0);
        c += r;
        n -= (size_t)r;
    }
}

int py_reap(py_helper *h)
{
    if (h->in >= 0) close(h->in);
    h->in = -1;
    int pfd = (int)syscall(SYS_pidfd_open, h->pid, 0);
    CHECK(pfd >= 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, (int)(60000 * harness_slow()));
    while (r < 0 && errno == EINTR);
    close(pfd);
    if (r == 0) kill(h->pid, SIGKILL);
    int st;
    CHECK_EQ(waitpid(h->pid, &st, 0), h->pid);
    close(h->out);
    CHECK(r == 1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}
