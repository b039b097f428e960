/* Running a built program from a test: capture its output, wait for it, find it beside the test. */
#include "harness_run.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void harness_run_free(harness_run_result *r)
{
    free(r->out);
    free(r->err);
}

/* The environment plus `extra` ("KEY=VALUE" strings, NULL-terminated), extra winning. Built before
 * the fork: the child only calls async-signal-safe functions. */
static char **make_env(char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    while (extra && extra[k])
        k++;
    char **env = calloc(n + k + 1, sizeof *env);
    CHECK(env != NULL);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < k; j++) {
            size_t klen = strcspn(extra[j], "=");
            if (strncmp(environ[i], extra[j], klen + 1) == 0) overridden = true;
        }
        if (!overridden) env[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        env[m++] = extra[j];
    return env;
}

void harness_append(char **buf, size_t *len, const char *data, size_t n)
{
    char *b = realloc(*buf, *len + n + 1);
    CHECK(b != NULL);
    memcpy(b + *len, data, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
}

/* Runs argv[0] with stdin from /dev/null, capturing stdout and stderr; as user `uid` unless it is
 * (uid_t)-1. */
harness_run_result harness_run_as(char *const argv[], char *const *extra_env, uid_t uid)
{
    harness_run_result r = {0};
    harness_append(&r.out, &r.out_len, "", 0);
    harness_append(&r.err, &r.err_len, "", 0);
    int po[2], pe[2];
    CHECK(pipe2(po, O_CLOEXEC) == 0);
    CHECK(pipe2(pe, O_CLOEXEC) == 0);
    char **env = make_env(extra_env);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(126);
        if (uid != (uid_t)-1 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
            _exit(125);
        execve(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            CHECK(errno == EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            char buf[65536];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                if (i == 0)
                    harness_append(&r.out, &r.out_len, buf, (size_t)n);
                else
                    harness_append(&r.err, &r.err_len, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    while (waitpid(pid, &r.status, 0) < 0)
        CHECK(errno == EINTR);
    return r;
}

harness_run_result harness_run(char *const argv[], char *const *extra_env)
{
    return harness_run_as(argv, extra_env, (uid_t)-1);
}

/* A program built beside this test: build/tests/test_x -> build/DIR/NAME. */
void harness_built_path(const char *dir, const char *name, char *buf, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    CHECK(slash != NULL);
    *slash = '\0';
    snprintf(buf, cap, "%s/../%s/%s", self, dir, name);
    if (access(buf, X_OK) != 0) harness_fail(__FILE__, __LINE__, "%s is not built", buf);
}
