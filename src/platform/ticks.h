/* A cheap timestamp for per-task accounting (pool stats): the CPU's time-stamp counter where it
 * runs at a constant rate (x86-64, aarch64), else CLOCK_MONOTONIC nanoseconds. A counter read
 * costs about a third of a clock_gettime on a VM, and the pool takes three per task. Ticks are
 * only ever subtracted and summed; mproc__tick_ns converts them to nanoseconds. */
#ifndef MPROC_PLATFORM_TICKS_H
#define MPROC_PLATFORM_TICKS_H

#include <stdint.h>

#include "platform/platform.h"

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t mproc__ticks(void)
{
    return __rdtsc();
}
#define MPROC__TICKS_ARE_NS 0
#elif defined(__aarch64__)
static inline uint64_t mproc__ticks(void)
{
    uint64_t v;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
#define MPROC__TICKS_ARE_NS 0
#else
static inline uint64_t mproc__ticks(void)
{
    return (uint64_t)mproc__now_ns();
}
#define MPROC__TICKS_ARE_NS 1
#endif

/* Note a (ticks, ns) pair to calibrate against, once per process (cheap; a pool calls it when
 * it starts). */
void mproc__ticks_mark(void);
/* Nanoseconds per tick, measured between the mark and now (waits until 2 ms have passed since
 * the mark, so only a call right after the first mark waits). */
double mproc__tick_ns(void);

#endif
