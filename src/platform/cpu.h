/* CPU accounting internals, exposed for tests. */
#ifndef MPROC_PLATFORM_CPU_H
#define MPROC_PLATFORM_CPU_H

/* Whole CPUs allowed by the cgroup CPU quota found through a /proc/PID/cgroup file, with the
 * cgroup filesystem mounted at sysfs_root; 0 when unlimited or unknown. */
int mproc__cgroup_cpu_limit(const char *proc_cgroup, const char *sysfs_root);

#include <sched.h>

/* Parse a CPU list ("0-3,8", the kernel's cpuset format: ranges and single numbers, comma
 * separated, no spaces) into *out. 0, or -EINVAL for a malformed list, an empty one, or a CPU
 * past CPU_SETSIZE. */
int mproc__cpu_list_parse(const char *list, cpu_set_t *out);
/* The CPU sets workers are confined to: *sets gets a malloc'd array of the returned count.
 * CPUs are those this process may use (its affinity mask, which the kernel keeps within the
 * cgroup's cpuset), narrowed to `list` when it is not NULL (-EINVAL when it names a CPU outside
 * them). MPROC_PLACE_NONE: one set, all of them (a forkserver helper started before the mask
 * was narrowed would give its workers its own, wider one);
 * MPROC_PLACE_CORES: one per physical core that has such CPUs (hwloc), its CPUs among them;
 * MPROC_PLACE_CPUS: one per CPU. -EINVAL for another placement, -ENOMEM. */
int mproc__cpu_placement(int placement, const char *list, cpu_set_t **sets);

#endif
