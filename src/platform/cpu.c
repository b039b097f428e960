/* How many CPUs this process may really use: affinity, then cgroup CPU quota. */
#include <errno.h>
#include <hwloc.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/cpu.h"
#include "mproc/common.h"

static int affinity_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Quota/period rounded up to whole CPUs, or 0 when there is no limit. */
static int quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0) return 0;
    long long n = (quota + period - 1) / period;
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* cgroup v2: the smallest cpu.max limit on the path from the group up to the root. */
static int v2_limit(const char *root, const char *group)
{
    char path[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", group);
    int best = 0;
    for (;;) {
        snprintf(path, sizeof path, "%s%s/cpu.max", root, strcmp(dir, "/") ? dir : "");
        FILE *f = fopen(path, "re");
        if (f) {
            char q[32];
            long long period = 0;
            if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0) {
                int n = quota_cpus(atoll(q), period);
                if (n > 0 && (best == 0 || n < best)) best = n;
            }
            fclose(f);
        }
        char *slash = strrchr(dir, '/');
        if (!slash || strcmp(dir, "/") == 0) break;
        if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    }
    return best;
}

/* cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us of the cpu controller's group. */
static int v1_limit(const char *root, const char *controllers, const char *group)
{
    char path[PATH_MAX];
    long long quota = -1, period = 0;
    const char *mounts[] = {controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"};
    for (size_t i = 0; i < sizeof mounts / sizeof *mounts; i++) {
        snprintf(path, sizeof path, "%s/%s%s/cpu.cfs_quota_us", root, mounts[i], group);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        if (fscanf(f, "%lld", &quota) != 1) quota = -1;
        fclose(f);
        snprintf(path, sizeof path, "%s/%s%s/cpu.cfs_period_us", root, mounts[i], group);
        f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%lld", &period) != 1) period = 0;
            fclose(f);
        }
        break;
    }
    return quota_cpus(quota, period);
}

int mproc__cgroup_cpu_limit(const char *proc_cgroup, const char *sysfs_root)
{
    FILE *f = fopen(proc_cgroup, "re");
    if (!f) return 0;
    char line[PATH_MAX + 64];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* hierarchy-ID:controller-list:cgroup-path */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *group = c2 + 1;
        int n = 0;
        if (strcmp(line, "0") == 0 && *controllers == '\0') {
            n = v2_limit(sysfs_root, group);
        } else {
            char list[256];
            snprintf(list, sizeof list, ",%s,", controllers);
            if (strstr(list, ",cpu,")) n = v1_limit(sysfs_root, controllers, group);
        }
        if (n > 0 && (best == 0 || n < best)) best = n;
    }
    fclose(f);
    return best;
}

int mproc_cpu_count(void)
{
    const char *env = getenv("MPROC_CPU_COUNT");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= INT_MAX) return (int)v;
    }
    int n = affinity_count();
    int q = mproc__cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    if (q > 0 && q < n) n = q;
    return n > 0 ? n : 1;
}

int mproc_physical_cores(void)
{
    static int cached;
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c > 0) return c;
    hwloc_topology_t topo;
    int n = 0;
    if (hwloc_topology_init(&topo) == 0) {
        if (hwloc_topology_load(topo) == 0) n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
        hwloc_topology_destroy(topo);
    }
    if (n < 1) n = affinity_count();
    __atomic_store_n(&cached, n, __ATOMIC_RELAXED);
    return n;
}

int mproc__cpu_list_parse(const char *list, cpu_set_t *out)
{
    CPU_ZERO(out);
    if (!list || !*list) return -EINVAL;
    const char *s = list;
    for (;;) {
        char *end;
        if (*s < '0' || *s > '9') return -EINVAL;
        unsigned long lo = strtoul(s, &end, 10), hi = lo;
        s = end;
        if (*s == '-') {
            s++;
            if (*s < '0' || *s > '9') return -EINVAL;
            hi = strtoul(s, &end, 10);
            s = end;
        }
        if (hi < lo || hi >= CPU_SETSIZE) return -EINVAL;
        for (unsigned long c = lo; c <= hi; c++)
            CPU_SET((int)c, out);
        if (*s == '\0') return 0;
        if (*s++ != ',') return -EINVAL;
    }
}

/* Append `set` to the array (grown by doubling). */
static int push_set(cpu_set_t **sets, int *n, int *cap, const cpu_set_t *set)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        cpu_set_t *g = realloc(*sets, (size_t)c * sizeof *g);
        if (!g) return -ENOMEM;
        *sets = g;
        *cap = c;
    }
    (*sets)[(*n)++] = *set;
    return 0;
}

/* One set per physical core: its CPUs among `allowed`. hwloc's view is the whole machine's
 * (disallowed CPUs included or not, by version): narrowing each core to `allowed` gives the
 * same answer either way. */
static int core_sets(const cpu_set_t *allowed, cpu_set_t **sets, int *n, int *cap)
{
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) return -ENOMEM;
    int r = 0;
    if (hwloc_topology_load(topo) == 0) {
        int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
        for (int i = 0; r == 0 && i < cores; i++) {
            hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)i);
            if (!core || !core->cpuset) continue;
            cpu_set_t set;
            CPU_ZERO(&set);
            int id;
            hwloc_bitmap_foreach_begin(id, core->cpuset)
            {
                if (id < CPU_SETSIZE && CPU_ISSET(id, allowed)) CPU_SET(id, &set);
            }
            hwloc_bitmap_foreach_end();
            if (CPU_COUNT(&set) > 0) r = push_set(sets, n, cap, &set);
        }
    }
    hwloc_topology_destroy(topo);
    return r;
}

int mproc__cpu_placement(int placement, const char *list, cpu_set_t **sets)
{
    *sets = NULL;
    if (placement < 0 || placement > 2) return -EINVAL;
    cpu_set_t allowed, want;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -errno;
    if (list) {
        int r = mproc__cpu_list_parse(list, &want);
        if (r < 0) return r;
        cpu_set_t outside;
        CPU_XOR(&outside, &want, &allowed);
        CPU_AND(&outside, &outside, &want);
        if (CPU_COUNT(&outside) > 0) return -EINVAL; /* never pin outside what we may use */
        allowed = want;
    }
    int n = 0, cap = 0, r = 0;
    if (placement == 0) {
        r = push_set(sets, &n, &cap, &allowed);
    } else if (placement == 2) {
        for (int c = 0; r == 0 && c < CPU_SETSIZE; c++) {
            if (!CPU_ISSET(c, &allowed)) continue;
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            r = push_set(sets, &n, &cap, &one);
        }
    } else {
        r = core_sets(&allowed, sets, &n, &cap);
        /* No topology: each CPU is its own core. */
        if (r == 0 && n == 0) return mproc__cpu_placement(2, list, sets);
    }
    if (r < 0) {
        free(*sets);
        *sets = NULL;
        return r;
    }
    return n;
}
