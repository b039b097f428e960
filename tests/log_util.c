/* Helpers shared by the log suites; see log_util.h. */
#include "log_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "log/log.h"

char *tmpdir_make(void)
{
    char *d = strdup("/tmp/mproc-log-XXXXXX");
    CHECK(d && mkdtemp(d));
    return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tmpdir_remove(char *d)
{
    nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    CHECK(buf);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            CHECK(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        CHECK(r >= 0);
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

bool parse_line(char *line, parsed *p)
{
    /* 2026-11-25T13:51:49.247979+00:00 */
    char *t = line;
    if (!(digits(t, 4) && t[4] == '-' && digits(t + 5, 2) && t[7] == '-' && digits(t + 8, 2) &&
          t[10] == 'T' && digits(t + 11, 2) && t[13] == ':' && digits(t + 14, 2) && t[16] == ':' &&
          digits(t + 17, 2) && t[19] == '.' && digits(t + 20, 6) &&
          (t[26] == '+' || t[26] == '-') && digits(t + 27, 2) && t[29] == ':' && digits(t + 30, 2)))
        return false;
    if (strncmp(t + 32, " - ", 3) != 0) return false;
    char *f[7];
    char *s = t + 35;
    for (int i = 0; i < 6; i++) {
        char *sep = strstr(s, " - ");
        if (!sep) return false;
        *sep = '\0';
        f[i] = s;
        s = sep + 3;
    }
    f[6] = s; /* the message: the rest, " - " and all */
    memcpy(p->offset, t + 26, 6);
    p->offset[6] = '\0';
    t[26] = '\0';
    p->time = t;
    p->app = f[0];
    p->process = f[1];
    p->file = f[2];
    if (!*f[3] || !digits(f[3], (int)strlen(f[3]))) return false;
    p->line = atoi(f[3]);
    p->func = f[4];
    p->level = f[5];
    p->msg = f[6];
    return true;
}

/* ---- the exec'd helper: this binary re-run with MPROC_LOG_TEST_HELPER set ---------------- */

__attribute__((constructor)) static void exec_helper(void)
{
    const char *mode = getenv("MPROC_LOG_TEST_HELPER");
    if (!mode) return;
    int code = 0;
    if (strcmp(mode, "explicit") == 0) {
        if (mproc_log_init_from_env() != 0) _exit(3);
        MPROC_INFO("helper explicit %d", (int)getpid());
    } else if (strcmp(mode, "rotate") == 0) {
        /* Log until this program (another family) has rotated the file. */
        if (mproc_log_init_from_env() != 0) _exit(3);
        char backup[4096];
        snprintf(backup, sizeof backup, "%s.1", mproc_log_file_path());
        struct stat st;
        for (int i = 0; stat(backup, &st) < 0; i++) {
            if (i > 10000) _exit(5);
            MPROC_INFO("helper filler %d padding padding padding", i);
        }
    } else {
        MPROC_INFO("helper auto %d", (int)getpid()); /* joins at the first record */
    }
    const char *want = getenv("MPROC_LOG_TEST_PATH");
    const char *got = mproc_log_file_path();
    if (!want || !got || strcmp(want, got) != 0) code = 4;
    mproc_log_shutdown();
    _exit(code);
}

void run_exec_helper(const char *mode)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("MPROC_LOG_TEST_HELPER", mode, 1);
        setenv("MPROC_LOG_TEST_PATH", mproc_log_file_path(), 1);
        execl("/proc/self/exe", program_invocation_short_name, (char *)NULL);
        _exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}
