#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/cpu.h"
#include "harness.h"

static char root[256];

static void put(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void make_root(void)
{
    snprintf(root, sizeof root, "/tmp/mproc-cgroup-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
}

static void remove_root(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_EQ(system(cmd), 0);
}

TEST(cgroup_v2_quota_rounds_up_and_takes_the_tightest_ancestor)
{
    make_root();
    put("proc_cgroup", "0::/a/b\n");
    put("sys/cpu.max", "max 100000\n");
    put("sys/a/cpu.max", "300000 100000\n");
    put("sys/a/b/cpu.max", "150000 100000\n");
    char pc[300], sys[300];
    snprintf(pc, sizeof pc, "%s/proc_cgroup", root);
    snprintf(sys, sizeof sys, "%s/sys", root);
    CHECK_EQ(mproc__cgroup_cpu_limit(pc, sys), 2);
    put("sys/a/b/cpu.max", "max 100000\n");
    CHECK_EQ(mproc__cgroup_cpu_limit(pc, sys), 3);
    put("sys/a/cpu.max", "max 100000\n");
    CHECK_EQ(mproc__cgroup_cpu_limit(pc, sys), 0);
    remove_root();
}

TEST(cgroup_v1_quota)
{
    make_root();
    put("proc_cgroup", "12:memory:/x\n4:cpu,cpuacct:/job\n");
    put("sys/cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n");
    put("sys/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    char pc[300], sys[300];
    snprintf(pc, sizeof pc, "%s/proc_cgroup", root);
    snprintf(sys, sizeof sys, "%s/sys", root);
    CHECK_EQ(mproc__cgroup_cpu_limit(pc, sys), 3);
    put("sys/cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
    CHECK_EQ(mproc__cgroup_cpu_limit(pc, sys), 0);
    remove_root();
}

TEST(missing_cgroup_files_mean_no_limit)
{
    CHECK_EQ(mproc__cgroup_cpu_limit("/nonexistent/cgroup", "/nonexistent"), 0);
}

TEST(cpu_count_honours_affinity_and_env)
{
    int n = mproc_cpu_count();
    CHECK(n >= 1);
    cpu_set_t set;
    CHECK_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    CHECK(n <= CPU_COUNT(&set));
    /* Narrow the affinity to one CPU: the count follows. */
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) {
            CPU_SET(c, &one);
            break;
        }
    CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    CHECK_EQ(mproc_cpu_count(), 1);
    CHECK_EQ(sched_setaffinity(0, sizeof set, &set), 0);
    setenv("MPROC_CPU_COUNT", "7", 1);
    CHECK_EQ(mproc_cpu_count(), 7);
    setenv("MPROC_CPU_COUNT", "bogus", 1);
    CHECK_EQ(mproc_cpu_count(), n);
    unsetenv("MPROC_CPU_COUNT");
}

TEST(physical_cores)
{
    int c = mproc_physical_cores();
    CHECK(c >= 1);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(c <= online);
}

TEST(strerror_names_every_code)
{
    int codes[] = {MPROC_ECLOSED, MPROC_EWORKERLOST, MPROC_ETASKFAILED, MPROC_ECANCELLED,
                   MPROC_EBROKEN, MPROC_EAUTH,       MPROC_EOWNERDEAD,  MPROC_EPROTO,
                   MPROC_EEND,    MPROC_ETIMELIMIT,  MPROC_EREMOTE};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        CHECK(codes[i] < -4095);
        CHECK(strcmp(mproc_strerror(codes[i]), "unknown error") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(mproc_strerror(codes[i]), mproc_strerror(codes[j])) != 0);
    }
    /* errno codes worded for what they mean in this library */
    CHECK(strcmp(mproc_strerror(-ETIMEDOUT), "timed out") == 0);
    CHECK(strcmp(mproc_strerror(-EBUSY), "still running (cancel requested)") == 0);
    CHECK(strcmp(mproc_strerror(-EINTR), "interrupted by a signal") == 0);
    CHECK(strcmp(mproc_strerror(-EAGAIN), "not ready (would block)") == 0);
    CHECK(strcmp(mproc_strerror(-EALREADY), "already done") == 0);
    CHECK(strcmp(mproc_strerror(MPROC_EEND), "no more results") == 0);
    CHECK(strstr(mproc_strerror(MPROC_ETIMELIMIT), "time limit") != NULL);
    CHECK(strcmp(mproc_strerror(MPROC_EREMOTE), "the remote side raised an exception") == 0);
    CHECK(strcmp(mproc_strerror(-ENOENT), "No such file or directory") == 0); /* the C library's */
    CHECK(strcmp(mproc_strerror(0), "success") == 0);
    CHECK(strcmp(mproc_strerror(-999999), "unknown error") == 0);
    CHECK(strcmp(mproc_strerror(5), "unknown error") == 0);
}
