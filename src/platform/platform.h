/* Thin wrappers over Linux primitives: futex, pidfd, clocks, deadlines. No policy here. */
#ifndef MPROC_PLATFORM_PLATFORM_H
#define MPROC_PLATFORM_PLATFORM_H

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Thread-locals read on fast paths: the initial-exec model makes each read one instruction instead
 * of a call to __tls_get_addr. Keep them small: a library loaded by dlopen gets them from glibc's
 * small static TLS surplus. */
#define MPROC_TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* Monotonic clock in nanoseconds. */
int64_t mproc__now_ns(void);

/* Every timeout and time limit of the API follows one rule (docs/conventions.md): NaN is refused
 * (-EINVAL); a negative value, infinity and anything above MPROC__TIMEOUT_MAX_S mean forever
 * (INT64_MAX nanoseconds); the rest converts to nanoseconds, rounded down. Callers that refuse
 * negative values (pool time limits) check that first. */
#define MPROC__TIMEOUT_MAX_S 1e9
int mproc__timeout_ns(double timeout, int64_t *ns);
/* -EINVAL for a timeout the rule refuses, else 0: a call checks it on entry, with its handle. */
static inline int mproc__timeout_check(double timeout)
{
    return timeout != timeout ? -EINVAL : 0;
}
/* The absolute CLOCK_MONOTONIC deadline of a wait of `timeout` seconds (checked) by that rule;
 * INT64_MAX means none. */
int64_t mproc__deadline(double timeout);
/* now + ns without overflow: INT64_MAX (none) for ns == INT64_MAX or a sum that would not fit. */
static inline int64_t mproc__deadline_after(int64_t now, int64_t ns)
{
    return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}
/* Nanoseconds left before a deadline (<= 0: passed); INT64_MAX when there is none. */
int64_t mproc__remaining_ns(int64_t deadline);
/* Remaining time in milliseconds for poll(): -1 forever, rounded up so it never spins early. */
int mproc__poll_ms(int64_t deadline);
/* struct timespec for an absolute CLOCK_MONOTONIC deadline. */
struct timespec mproc__abs_timespec(int64_t deadline);

/* Sleep while *addr == expected, until woken or the deadline (absolute monotonic ns; INT64_MAX
 * waits forever). Shared futexes: the word may live in memory shared between processes.
 * Returns 0 when woken or the value changed, -ETIMEDOUT, or -EINTR. */
int mproc__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline);
/* Wake up to n sleepers; returns how many were woken. */
int mproc__futex_wake(_Atomic uint32_t *addr, int n);

/* A spin-pause for busy waits. */
/* Ask for the cache line at p in a state we may write, ahead of a store or CAS to it, so the
 * transfer from another core overlaps with other work instead of stalling a locked instruction. */
static inline void mproc__prefetch_write(const void *p)
{
#if defined(__x86_64__)
    __asm__("prefetchw %0" ::"m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

static inline void mproc__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Whether pidfds work here (Linux >= 5.3, and not under tools that lack the syscalls, such as
 * valgrind 3.19). Without them the library falls back to a sentinel pipe per child and
 * waitpid(pid) / kill(pid) on its own unreaped children. MPROC_NO_PIDFD=1 forces the fallback. */
bool mproc__pidfd_supported(void);

/* pidfd_open / pidfd_send_signal through syscall(2) (glibc 2.36 wraps them, older ones do not). */
int mproc__pidfd_open(pid_t pid);
int mproc__pidfd_send_signal(int pidfd, int sig);
/* Poll a pidfd until the process ends or the deadline: 1 ended, 0 not yet, <0 error. */
int mproc__pidfd_wait(int pidfd, int64_t deadline);

/* This thread's kernel id. */
pid_t mproc__gettid(void);
/* getpid() without the system call after the first: cached, and cleared in a fork child by a
 * pthread_atfork handler, so every fork() (the library's and the program's) is seen; a child
 * made without fork() (a raw clone, _Fork) must not call the library before exec. */
pid_t mproc__pid(void);

#endif
