/* CPU accounting internals, exposed for tests. */
#ifndef MPROC_PLATFORM_CPU_H
#define MPROC_PLATFORM_CPU_H

/* Whole CPUs allowed by the cgroup CPU quota found through a /proc/PID/cgroup file, with the
 * cgroup filesystem mounted at sysfs_root; 0 when unlimited or unknown. */
int mproc__cgroup_cpu_limit(const char *proc_cgroup, const char *sysfs_root);

#endif
