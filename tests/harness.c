#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena/arena.h"
#include "process/process.h"

#define MAX_CASES 256
#define GRACE_S 2.0

static struct {
    const char *name;
    harness_fn fn;
    double timeout;
} cases[MAX_CASES];
static int ncases;
static const char *current_case;

void harness_register(const char *name, harness_fn fn, double timeout)
{
    if (ncases == MAX_CASES) abort();
    cases[ncases].name = name;
    cases[ncases].fn = fn;
    cases[ncases].timeout = timeout;
    ncases++;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: %s: failed: %s (pid %d)\n", file, line,
            current_case ? current_case : "?", msg, (int)getpid());
    fflush(stderr);
    _exit(1);
}

#define SKIP_STATUS 77

void harness_skip(const char *why)
{
    printf("    skipped: %s\n", why);
    fflush(stdout);
    _exit(SKIP_STATUS);
}

const char *harness_method(void)
{
    const char *m = getenv("MPROC_START");
    return m && *m ? m : "fork";
}

mproc_process *harness_start_opts(const mproc_process_opts *opts)
{
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, opts));
    CHECK_OK(mproc_process_start(p));
    return p;
}

mproc_process *harness_start(mproc_run_fn fn, void *arg)
{
    return harness_start_opts(&(mproc_process_opts){.run = fn, .arg = arg});
}

int harness_wait(mproc_process *p)
{
    int code = 12345;
    CHECK_OK(mproc_process_join(p, 60 * harness_slow()));
    CHECK_OK(mproc_process_exitcode(p, &code));
    return code;
}

int harness_join(mproc_process *p)
{
    int code = harness_wait(p);
    mproc_process_free(p);
    return code;
}

double harness_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double harness_slow(void)
{
    const char *s = getenv("HARNESS_SLOW");
    double v = s ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

/* Open fds as a bitmap over [0, 1024) plus a count; the directory's own fd is left out, and so is
 * the arena's memfd, which the arena keeps open from its first use on (arena/arena.h). */
static int fd_snapshot(unsigned char *bits, size_t nbits)
{
    memset(bits, 0, nbits / 8);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == self || fd == mproc__arena_share_fd()) continue;
        n++;
        if ((size_t)fd < nbits) bits[fd / 8] |= (unsigned char)(1u << (fd % 8));
    }
    closedir(d);
    return n;
}

int harness_fd_count(void)
{
    unsigned char bits[128];
    return fd_snapshot(bits, sizeof bits * 8);
}

int harness_child_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char cp[300];
        snprintf(cp, sizeof cp, "/proc/%d/task/%s/children", (int)pid, e->d_name);
        FILE *f = fopen(cp, "re");
        if (!f) continue;
        int c;
        while (fscanf(f, "%d", &c) == 1)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

bool harness_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

bool harness_wait_gone(pid_t pid, double timeout)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS) {
        /* No pidfds (old kernel, valgrind): watch /proc instead. */
        double until = harness_now() + timeout;
        while (harness_pid_alive(pid) && harness_now() < until)
            usleep(1000);
        return !harness_pid_alive(pid);
    }
    if (fd < 0) return errno == ESRCH;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, (int)(timeout * 1000));
    while (r < 0 && errno == EINTR);
    close(fd);
    return r == 1;
}

static void describe_fd(int fd, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* The case process: run the body, then insist it cleaned up after itself. */
static _Noreturn void run_case(int i)
{
    current_case = cases[i].name;
    setpgid(0, 0);
    unsigned char before[128], after[128];
    int nb = fd_snapshot(before, sizeof before * 8);
    cases[i].fn();
    /* The forkserver helper is the library's, not the case's: stop it before counting. */
    mproc__forkserver_stop();
    int children = harness_child_count(getpid());
    if (children > 0) harness_fail(__FILE__, __LINE__, "leaked %d child process(es)", children);
    int na = fd_snapshot(after, sizeof after * 8);
    if (na != nb || memcmp(before, after, sizeof before) != 0) {
        for (int fd = 0; fd < 1024; fd++) {
            if ((after[fd / 8] & (1u << (fd % 8))) && !(before[fd / 8] & (1u << (fd % 8)))) {
                char what[256];
                describe_fd(fd, what, sizeof what);
                harness_fail(__FILE__, __LINE__, "leaked fd %d (%s)", fd, what);
            }
        }
        harness_fail(__FILE__, __LINE__, "fd count went from %d to %d", nb, na);
    }
    fflush(stdout);
    _exit(0);
}

/* Reap adopted orphans; true while any process of ours is still alive. */
static bool others_alive(pid_t pgid)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    bool kids = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
    return kids || kill(-pgid, 0) == 0;
}

enum { CASE_PASSED, CASE_FAILED, CASE_SKIPPED };

/* 1 when the case process has ended (reaped, *status set), 0 on timeout (not reaped). */
static int wait_case(pid_t pid, double timeout, int *status)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0) {
        /* No pidfds (old kernel, valgrind): poll for the end instead. */
        double until = harness_now() + timeout;
        for (;;) {
            if (waitpid(pid, status, WNOHANG) == pid) return 1;
            if (harness_now() >= until) return 0;
            usleep(1000);
        }
    }
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, (int)(timeout * 1000));
    while (r < 0 && errno == EINTR);
    close(pfd);
    if (r == 1) waitpid(pid, status, 0);
    return r == 1;
}

static int run_one(int i)
{
    double t0 = harness_now();
    double timeout = cases[i].timeout * harness_slow();
    printf("[ RUN      ] %s\n", cases[i].name);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) run_case(i);
    setpgid(pid, pid);
    int status = 0;
    bool ok = true;
    if (!wait_case(pid, timeout, &status)) {
        fprintf(stderr, "%s: timed out after %.1f s\n", cases[i].name, timeout);
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        ok = false;
    }
    bool skipped = ok && WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS;
    if (ok && !skipped && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "%s: case died of signal %d\n", cases[i].name, WTERMSIG(status));
        ok = false;
    }
    /* Daemonic children die through their parent-death signal: give them a moment. */
    double until = harness_now() + GRACE_S;
    while (others_alive(pid) && harness_now() < until)
        usleep(2000);
    if (others_alive(pid)) {
        fprintf(stderr, "%s: left processes running after it ended\n", cases[i].name);
        kill(-pid, SIGKILL);
        siginfo_t si;
        while (waitid(P_ALL, 0, &si, WEXITED) == 0) {
        }
        ok = false;
    }
    printf("[ %8s ] %s (%.0f ms)\n",
           !ok       ? "FAILED"
           : skipped ? "SKIPPED"
                     : "OK",
           cases[i].name, (harness_now() - t0) * 1000);
    fflush(stdout);
    return !ok ? CASE_FAILED : skipped ? CASE_SKIPPED : CASE_PASSED;
}

int main(int argc, char **argv)
{
    /* Orphans of a case come back here, so nothing a case starts can escape the check. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < ncases; i++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(cases[i].name, argv[a])) selected = true;
        if (!selected) continue;
        switch (run_one(i)) {
        case CASE_PASSED:
            passed++;
            break;
        case CASE_FAILED:
            failed++;
            break;
        default:
            skipped++;
            break;
        }
    }
    printf("%s: %d passed, %d failed, %d skipped\n", harness_method(), passed, failed, skipped);
    return failed ? 1 : 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double harness_quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}
