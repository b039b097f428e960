/* Log rotation: by size across processes and threads with nothing lost or torn, the backups
 * kept, and other processes (of this family or another program's) following a rotation. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log/log.h"
#include "log_util.h"

/* 8 processes x N lines into one file rotated at a small size during the run. */
static int bulk_lines(void)
{
    const char *s = getenv("MPROC_LOG_TEST_LINES");
    int n = s ? atoi(s) : 50000;
    return n > 0 ? n : 50000;
}

static int bulk_writer(void *arg)
{
    int n = bulk_lines();
    (void)arg;
    for (int i = 0; i < n; i++)
        MPROC_INFO("seq %d", i);
    return 0;
}

TEST_T(eight_processes_rotating_lose_nothing, 280)
{
    enum { NPROC = 8, BACKUPS = 5000 };
    const size_t max_bytes = 1 << 20;
    int n = bulk_lines();
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "bulk",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .max_bytes = max_bytes,
                                                .backup_count = BACKUPS}));
    mproc_process *w[NPROC];
    for (int k = 0; k < NPROC; k++) {
        char name[16];
        snprintf(name, sizeof name, "W%d", k);
        w[k] = harness_start_opts(&(mproc_process_opts){.name = name, .run = bulk_writer});
    }
    for (int k = 0; k < NPROC; k++)
        CHECK_EQ(harness_join(w[k]), 0);

    unsigned char *seen = calloc((size_t)NPROC * (size_t)n, 1);
    CHECK(seen);
    long total = 0;
    int files = 0;
    for (int i = 0; i <= BACKUPS; i++) {
        char *path;
        if (i == 0)
            path = strdup(mproc_log_file_path());
        else
            CHECK(asprintf(&path, "%s.%d", mproc_log_file_path(), i) > 0);
        size_t len;
        char *text = slurp(path, &len);
        free(path);
        if (!text) break;
        files++;
        /* Bounded: every process moved to the new file. Full: nobody rotated a second time
         * when another had just done it. */
        CHECK(len <= 2 * max_bytes);
        if (i > 0) CHECK(len >= max_bytes - MPROC_LOG_RECORD_MAX);
        CHECK(len == 0 || text[len - 1] == '\n'); /* no torn tail */
        for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            parsed p;
            int k, seq;
            char extra;
            if (!parse_line(l, &p) || strcmp(p.app, "bulk") != 0 ||
                sscanf(p.process, "W%d%c", &k, &extra) != 1 || k < 0 || k >= NPROC ||
                sscanf(p.msg, "seq %d%c", &seq, &extra) != 1 || seq < 0 || seq >= n ||
                strcmp(p.func, "bulk_writer") != 0)
                harness_fail(__FILE__, __LINE__, "bad line in file %d: %.200s", i, l);
            if (seen[(size_t)k * (size_t)n + (size_t)seq]++)
                harness_fail(__FILE__, __LINE__, "W%d seq %d twice", k, seq);
            total++;
        }
        free(text);
    }
    CHECK_EQ(total, (long)NPROC * n);
    /* Rotation happened during the run (the data is several times max_bytes). */
    if ((size_t)NPROC * (size_t)n * 100 > 4 * max_bytes) CHECK(files >= 3);
    free(seen);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

static void *thread_writer(void *arg)
{
    for (int i = 0; i < 20000; i++)
        MPROC_INFO("t%d seq %d", (int)(intptr_t)arg, i);
    return NULL;
}

TEST_T(threads_rotating_lose_nothing, 120)
{
    enum { NT = 4, N = 20000 };
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "thr",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .max_bytes = 200000,
                                                .backup_count = 1000}));
    pthread_t th[NT];
    for (int t = 0; t < NT; t++)
        CHECK(pthread_create(&th[t], NULL, thread_writer, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    static unsigned char seen[NT][N];
    long total = 0;
    for (int i = 0; i <= 1000; i++) {
        char *path;
        CHECK(asprintf(&path, i ? "%s.%d" : "%s", mproc_log_file_path(), i) > 0);
        char *text = slurp(path, NULL);
        free(path);
        if (!text) break;
        for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            parsed p;
            int t, seq;
            if (!parse_line(l, &p) || sscanf(p.msg, "t%d seq %d", &t, &seq) != 2 || t < 0 ||
                t >= NT || seq < 0 || seq >= N || seen[t][seq]++)
                harness_fail(__FILE__, __LINE__, "bad or repeated line: %.200s", l);
            total++;
        }
        free(text);
    }
    CHECK_EQ(total, NT * N);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

static int wait_then_log(void *arg)
{
    CHECK_OK(mproc_event_wait(arg, MPROC_FOREVER));
    MPROC_INFO("after the rotation");
    return 0;
}

/* A process that did not rotate follows at its next record (generation counter), so its line
 * is in the new file, not in the backup. */
TEST(other_processes_follow_rotation_at_once)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "follow",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .max_bytes = 4096,
                                                .backup_count = 5}));
    mproc_event *go;
    CHECK_OK(mproc_event_new(&go));
    MPROC_INFO("before");
    mproc_process *p = harness_start_opts(
        &(mproc_process_opts){.name = "follower", .run = wait_then_log, .arg = go});
    char *backup;
    CHECK(asprintf(&backup, "%s.1", mproc_log_file_path()) > 0);
    struct stat st;
    for (int i = 0; stat(backup, &st) < 0; i++) {
        CHECK(i < 1000);
        MPROC_INFO("filler %d padding padding padding padding", i);
    }
    CHECK_OK(mproc_event_set(go));
    CHECK_EQ(harness_join(p), 0);
    mproc_event_free(go);
    char *live = slurp(mproc_log_file_path(), NULL), *old = slurp(backup, NULL);
    CHECK(strstr(live, "after the rotation") && !strstr(old, "after the rotation"));
    CHECK(strstr(old, "before"));
    free(live);
    free(old);
    free(backup);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(rotation_keeps_backup_count)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "rot",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .max_bytes = 1000,
                                                .backup_count = 2}));
    for (int i = 0; i < 100; i++)
        MPROC_INFO("line %03d padding padding padding", i);
    const char *path = mproc_log_file_path();
    char name[4096];
    struct stat st;
    for (int i = 0; i <= 3; i++) {
        if (i == 0)
            snprintf(name, sizeof name, "%s", path);
        else
            snprintf(name, sizeof name, "%s.%d", path, i);
        int r = stat(name, &st);
        if (i == 3) {
            CHECK(r < 0);
        } else {
            CHECK(r == 0);
            CHECK(st.st_size > 0 && st.st_size <= 1000);
        }
    }
    /* The newest line is in the live file, the ones just before in .1. */
    char *text = slurp(path, NULL);
    CHECK(strstr(text, "line 099"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

/* A program joined through the environment is another family: when it rotates, this process
 * notices by path within MPROC__LOG_RECHECK_NS and moves to the new file. */
TEST(rotation_by_an_exec_program_is_followed)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "xrot",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .max_bytes = 4096,
                                                .backup_count = 1000}));
    MPROC_INFO("parent first");
    run_exec_helper("rotate");
    double t0 = harness_now();
    bool moved = false;
    for (int i = 0; !moved; i++) {
        CHECK(harness_now() - t0 < 5 * harness_slow());
        MPROC_INFO("parent probe %d", i);
        char *live = slurp(mproc_log_file_path(), NULL);
        moved = strstr(live, "parent probe") != NULL;
        free(live);
        if (!moved) usleep(10000);
    }
    CHECK(harness_now() - t0 < 2.0 * harness_slow());
    mproc_log_shutdown();
    tmpdir_remove(dir);
}
