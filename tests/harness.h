/* A small test runner in the spirit of Check: every case runs in a fresh process of its own process
 * group under a supervisor that enforces a timeout, kills whatever the case leaves behind, and
 * fails the case if it leaked a child process (alive or zombie), a grandchild, or a file
 * descriptor. */
#ifndef MPROC_HARNESS_H
#define MPROC_HARNESS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "mproc.h"

typedef void (*harness_fn)(void);
void harness_register(const char *name, harness_fn fn, double timeout);
_Noreturn void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TEST_T(name, timeout)                                                                      \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        harness_register(#name, test_##name, timeout);                                             \
    }                                                                                              \
    static void test_##name(void)
#define TEST(name) TEST_T(name, 30.0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) harness_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                         \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) harness_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);  \
    } while (0)
/* An mproc call that must return 0. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int r_ = (expr);                                                                           \
        if (r_ != 0)                                                                               \
            harness_fail(__FILE__, __LINE__, "%s returned %d (%s)", #expr, r_,                     \
                         mproc_strerror(r_));                                                      \
    } while (0)
/* An mproc call that must return the code `code`. */
#define CHECK_RC(expr, code)                                                                       \
    do {                                                                                           \
        int r_ = (expr), c_ = (code);                                                              \
        if (r_ != c_)                                                                              \
            harness_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", #expr, r_,   \
                         mproc_strerror(r_), c_, mproc_strerror(c_));                              \
    } while (0)
/* lo <= x <= hi, for timing bands. */
#define CHECK_BETWEEN(x, lo, hi)                                                                   \
    do {                                                                                           \
        double x_ = (x), lo_ = (lo), hi_ = (hi);                                                   \
        if (!(x_ >= lo_ && x_ <= hi_))                                                             \
            harness_fail(__FILE__, __LINE__, "%s = %g, expected within [%g, %g]", #x, x_, lo_,     \
                         hi_);                                                                     \
    } while (0)

/* Built with ThreadSanitizer (MPROC_TSAN=ON, scripts/tsan). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HARNESS_TSAN 1
#endif
#endif
#if !defined(HARNESS_TSAN) && defined(__SANITIZE_THREAD__)
#define HARNESS_TSAN 1
#endif

/* End the case as skipped (counted apart, not failed). */
_Noreturn void harness_skip(const char *why);
/* The start method the suite runs under (env MPROC_START): "fork", "forkserver" or "thread". */
const char *harness_method(void);
/* Skip a case that cannot hold when processes are threads (signals, crash isolation). */
#define SKIP_IN_THREAD_MODE(why)                                                                   \
    do {                                                                                           \
        if (strcmp(harness_method(), "thread") == 0) harness_skip(why);                            \
    } while (0)

/* Start a process running fn(arg) (the start method from MPROC_START), failing the case on error.
 */
mproc_process *harness_start(mproc_run_fn fn, void *arg);
/* The same with every option (name, daemon, arg_size, start_method): opts->run is required. */
mproc_process *harness_start_opts(const mproc_process_opts *opts);
/* Join it (60 s, scaled by harness_slow()), free it, and return its exit code (N or -SIGNAL). */
int harness_join(mproc_process *p);
/* Join it and return its exit code as harness_join does, but leave it to the caller (to look at
 * its name, signal it after its end...; mproc_process_free it then). */
int harness_wait(mproc_process *p);

/* Monotonic seconds. */
double harness_now(void);
/* Number of open file descriptors of this process. */
int harness_fd_count(void);
/* Children (alive or zombie) of process pid. */
int harness_child_count(pid_t pid);
/* Whether the process pid exists and is not a zombie. */
bool harness_pid_alive(pid_t pid);
/* Wait up to timeout seconds for the process pid (not necessarily a child) to end: true if it did.
 */
bool harness_wait_gone(pid_t pid, double timeout);
/* The q-quantile (0..1) of v[0..n), which it sorts: timing asserts on a median or p75 stay
 * meaningful on a machine that stalls a few samples. */
double harness_quantile(double *v, size_t n, double q);
/* Multiply timing bands by this under sanitizers and valgrind (env HARNESS_SLOW, default 1). */
double harness_slow(void);

#endif
