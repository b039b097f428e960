/* mproc-demo end to end: on a generated directory tree (nested directories, an empty file, binary
 * files, names that sort differently bytewise than in a locale, symlinks and a FIFO that must not
 * be followed or read), its SHA-256 (of the files' digests), file count and byte count equal what
 * coreutils compute with
 * `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | cut -c1-64 | sha256sum`,
 * in both modes and with every start method; pool mode's status lines come from the map's
 * progress callback; unreadable entries are skipped, counted and logged; bad input exits 2. */
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "harness_run.h"

/* ---- the tree ------------------------------------------------------------------------------ */

typedef struct {
    char base[64];            /* the test's private directory */
    char tree[PATH_MAX];      /* what the demo scans: base/tree */
    char state_env[PATH_MAX]; /* XDG_STATE_HOME=base/state: the demo's log goes there */
    char log_path[PATH_MAX];
} fixture;

static void put_file(const char *dir, const char *rel, const void *data, size_t len)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) harness_fail(__FILE__, __LINE__, "open %s: %s", p, strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        CHECK(n > 0);
        off += (size_t)n;
    }
    CHECK(close(fd) == 0);
}

static void put_dir(const char *dir, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    CHECK(mkdir(p, 0755) == 0);
}

static void put_symlink(const char *dir, const char *rel, const char *target)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    CHECK(symlink(target, p) == 0);
}

static void make_tree(fixture *fx)
{
    umask(022);
    snprintf(fx->base, sizeof fx->base, "/tmp/mproc-demo-test.XXXXXX");
    CHECK(mkdtemp(fx->base) != NULL);
    CHECK(chmod(fx->base, 0755) == 0); /* the skip test runs the demo as another user */
    snprintf(fx->tree, sizeof fx->tree, "%s/tree", fx->base);
    char state[PATH_MAX];
    snprintf(state, sizeof state, "%s/state", fx->base);
    CHECK(mkdir(state, 0777) == 0 && chmod(state, 0777) == 0);
    snprintf(fx->state_env, sizeof fx->state_env, "XDG_STATE_HOME=%s", state);
    snprintf(fx->log_path, sizeof fx->log_path, "%s/mproc-demo/log/mproc-demo.log", state);
    put_file(fx->base, "outside.txt", "outside the tree\n", 17);

    const char *t = fx->tree;
    CHECK(mkdir(t, 0755) == 0);
    put_dir(t, "a");
    put_dir(t, "a/b");
    put_dir(t, "a/b/c");
    put_dir(t, "emptydir");
    put_dir(t, "bin");
    put_file(t, "a.txt", "hello\n", 6);
    put_file(t, "a-b", "dash sorts before dot and slash\n", 32);
    put_file(t, "B.txt", "upper case sorts first in C\n", 28);
    put_file(t, "\xc3\xa9t\xc3\xa9.txt", "high bytes sort last\n", 21);
    put_file(t, ".hidden", "hidden files count\n", 19);
    put_file(t, "name with spaces.txt", "spaces\n", 7);
    put_file(t, "a/b/empty", "", 0);
    put_file(t, "a/b/c/deep.txt", "three levels down\n", 18);
    put_file(t, "a/zzz", "after a/b/...\n", 14);
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    put_file(t, "bin/all-bytes", all, sizeof all);
    /* 3 MB of xorshift noise: crosses the demo's read chunks, no two of them alike. */
    size_t big = 3u << 20;
    uint32_t *noise = malloc(big);
    CHECK(noise != NULL);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < big / 4; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise[i] = x;
    }
    put_file(t, "bin/noise.bin", noise, big);
    free(noise);
    /* A sparse 32 MB file: costs nothing to make, takes the demo long enough to print status. */
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/bin/zeros", t);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 32 << 20) == 0 && close(fd) == 0);
    /* Not regular files: never followed, never read (a FIFO would block a reader forever). */
    put_symlink(t, "link-to-outside", "../outside.txt");
    put_symlink(t, "link-to-dir", "a");
    put_symlink(t, "dangling", "does-not-exist");
    snprintf(p, sizeof p, "%s/fifo", t);
    CHECK(mkfifo(p, 0644) == 0);
}

static void remove_tree(fixture *fx)
{
    harness_run_result r =
        harness_run((char *[]){"/bin/chmod", "-R", "u+rwx", fx->base, NULL}, NULL);
    harness_run_free(&r);
    r = harness_run((char *[]){"/bin/rm", "-rf", fx->base, NULL}, NULL);
    CHECK_EQ(r.status, 0);
    harness_run_free(&r);
}

/* ---- what coreutils say -------------------------------------------------------------------- */

typedef struct {
    char sha256[65];
    unsigned long long files, bytes;
} summary;

static summary coreutils(const char *dir, uid_t uid)
{
    static const char script[] =
        "cd \"$1\" || exit 9\n"
        "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum 2>/dev/null |"
        " cut -c1-64 | sha256sum\n"
        "find . -type f -print0 | tr -cd '\\000' | wc -c\n"
        "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | wc -c\n";
    harness_run_result r = harness_run_as(
        (char *[]){"/bin/sh", "-c", (char *)script, "sh", (char *)dir, NULL}, NULL, uid);
    summary s = {0};
    if (sscanf(r.out, "%64s -\n%llu\n%llu", s.sha256, &s.files, &s.bytes) != 3)
        harness_fail(__FILE__, __LINE__, "coreutils said:\n%s\n%s", r.out, r.err);
    harness_run_free(&r);
    return s;
}

/* ---- what the demo says -------------------------------------------------------------------- */

static void demo_path(char *buf, size_t cap)
{
    harness_built_path("demo", "mproc-demo", buf, cap);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

#define CHECK_HAS(text, needle)                                                                    \
    do {                                                                                           \
        if (!strstr(text, needle))                                                                 \
            harness_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", needle, text);                   \
    } while (0)

static void check_exit(const harness_run_result *r, int code)
{
    if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != code)
        harness_fail(__FILE__, __LINE__, "status %#x, expected exit %d\nstdout:\n%s\nstderr:\n%s",
                     r->status, code, r->out, r->err);
}

/* Every result object in the JSON has these counts and this digest: want->files found (as find
 * counts them), of which `unread` could not be read, `skipped` entries in all (files and
 * directories); complete only when nothing was skipped. */
static void check_json(const char *json, const summary *want, unsigned long long unread,
                       unsigned long long skipped, int modes)
{
    char needle[320];
    snprintf(needle, sizeof needle,
             "\"files_found\":%llu,\"files\":%llu,\"bytes\":%llu,\"skipped\":%llu,"
             "\"sha256\":\"%s\"",
             want->files, want->files - unread, want->bytes, skipped, want->sha256);
    if (count(json, needle) != modes)
        harness_fail(__FILE__, __LINE__, "expected %d x %s in:\n%s", modes, needle, json);
    CHECK_EQ(count(json, "\"ok\":true"), modes);
    CHECK_EQ(count(json, skipped ? "\"complete\":false" : "\"complete\":true"), modes);
    CHECK_EQ(count(json, "\"mode\":"), modes);
    /* e came back from the e worker. */
    const char *e = strstr(json, "\"e\":");
    CHECK(e != NULL);
    CHECK_BETWEEN(strtod(e + 4, NULL), 2.718281828459044, 2.718281828459046);
}

/* ---- tests --------------------------------------------------------------------------------- */

TEST_T(json_matches_coreutils_in_both_modes, 120)
{
    fixture fx;
    make_tree(&fx);
    summary want = coreutils(fx.tree, (uid_t)-1);
    CHECK_EQ(want.files, 12); /* the tree as built: symlinks and the FIFO are not files */
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    harness_run_result r =
        harness_run((char *[]){demo, "--json", "--interval", "0.05", fx.tree, NULL},
                    (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    check_json(r.out, &want, 0, 0, 2);
    CHECK_HAS(r.out, "\"mode\":\"process\"");
    CHECK_HAS(r.out, "\"mode\":\"pool\"");
    /* stdout is the JSON alone, one line; status lines went to stderr. */
    CHECK_EQ(count(r.out, "\n"), 1);
    CHECK(r.out[0] == '{' && strcmp(r.out + r.out_len - 2, "}\n") == 0);
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "\"log_file\":\"%s\"", fx.log_path);
    CHECK_HAS(r.out, log);
    harness_run_free(&r);
    remove_tree(&fx);
}

TEST_T(every_start_method_gives_the_same_digest, 240)
{
    fixture fx;
    make_tree(&fx);
    summary want = coreutils(fx.tree, (uid_t)-1);
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    const char *methods[] = {"fork", "forkserver", "thread"};
    for (int i = 0; i < 3; i++) {
        harness_run_result r =
            harness_run((char *[]){demo, "--json", "--start", (char *)methods[i], fx.tree, NULL},
                        (char *[]){fx.state_env, NULL});
        check_exit(&r, 0);
        check_json(r.out, &want, 0, 0, 2);
        char sm[64];
        snprintf(sm, sizeof sm, "\"start_method\":\"%s\"", methods[i]);
        CHECK_HAS(r.out, sm);
        harness_run_free(&r);
    }
    /* --start beats MPROC_START. */
    harness_run_result r = harness_run(
        (char *[]){demo, "--json", "--mode", "process", "--start", "thread", fx.tree, NULL},
        (char *[]){fx.state_env, "MPROC_START=fork", NULL});
    check_exit(&r, 0);
    CHECK_HAS(r.out, "\"start_method\":\"thread\"");
    check_json(r.out, &want, 0, 0, 1);
    harness_run_free(&r);
    remove_tree(&fx);
}

TEST_T(text_output_status_lines_and_per_process_log, 120)
{
    fixture fx;
    make_tree(&fx);
    summary want = coreutils(fx.tree, (uid_t)-1);
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    harness_run_result r =
        harness_run((char *[]){demo, "--verbose", "--interval", "0.005", fx.tree, NULL},
                    (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    CHECK_HAS(r.out, "process mode:\n");
    CHECK_HAS(r.out, "pool mode:\n");
    char line[128];
    snprintf(line, sizeof line, "  sha256:   %s\n", want.sha256);
    CHECK_EQ(count(r.out, line), 2);
    snprintf(line, sizeof line, "  dir info: %llu files, %llu bytes in ", want.files, want.bytes);
    CHECK_EQ(count(r.out, line), 2);
    CHECK_EQ(count(r.out, "  e = 2.71828182845904"), 2);
    /* The verdict, from the times (process mode) and from the pool's stats (pool mode): a tree
     * this small may be hashed before the second worker is up, so either verdict may hold. */
    CHECK_EQ(count(r.out, "the two workers ran in parallel\n") +
                 count(r.out, "the two workers did not run in parallel\n"),
             2);
    CHECK_EQ(count(r.out, "  pool: 2 workers busy "), 1);
    CHECK_HAS(r.out, " %\n  total ");
    /* Not a terminal: plain status lines, each a whole line, no escape codes. */
    CHECK_HAS(r.out, "waiting on dir info for ");
    CHECK(!strchr(r.out, '\r') && !strchr(r.out, '\033'));
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "log file: %s\n", fx.log_path);
    CHECK_HAS(r.out, log);
    /* --verbose: INFO on the console, with each worker's name. */
    CHECK_HAS(r.err, " - mproc-demo - DirInfo - dirinfo.c - ");
    CHECK_HAS(r.err, " - mproc-demo - CalculateE - e.c - ");
    harness_run_free(&r);

    /* The file has every process's lines under its own name. */
    FILE *f = fopen(fx.log_path, "r");
    CHECK(f != NULL);
    char *text = NULL;
    size_t len = 0;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        harness_append(&text, &len, buf, n);
    fclose(f);
    CHECK(text != NULL);
    CHECK_HAS(text, " - mproc-demo - MainProcess - main.c - ");
    CHECK_HAS(text, " - mproc-demo - DirInfo - dirinfo.c - ");
    CHECK_HAS(text, " - mproc-demo - CalculateE - e.c - ");
    CHECK_HAS(text, " - mproc-demo - DemoPool-");
    snprintf(line, sizeof line, "INFO - %llu files, %llu bytes, 0 skipped, sha256 %s", want.files,
             want.bytes, want.sha256);
    CHECK_EQ(count(text, line), 2);
    free(text);
    remove_tree(&fx);
}

/* The status lines of one pool-mode run: the files done in each, in order, and the total. */
static int pool_status_lines(const char *out, unsigned long long *done, int cap,
                             unsigned long long *total)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, "waiting on dir info for ")); p++) {
        const char *dots = strstr(p, " ... ");
        unsigned long long d, t;
        if (!dots || sscanf(dots, " ... %llu/%llu files, ", &d, &t) != 2)
            harness_fail(__FILE__, __LINE__, "not a status line with files: %.120s", p);
        if (n < cap) done[n] = d;
        *total = t;
        n++;
    }
    return n;
}

/* Pool mode hashes the files with mproc_pool_map, and its status lines are the map's progress
 * callback: at most one per interval while the count moves, and always one at the end with every
 * file done, however fast the tree was hashed (a wait loop with a timeout prints none then). */
TEST_T(pool_status_lines_are_the_map_progress, 120)
{
    fixture fx;
    make_tree(&fx);
    summary want = coreutils(fx.tree, (uid_t)-1);
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    unsigned long long done[4096], total = 0;

    /* An interval longer than the run: the end's call only. */
    harness_run_result r =
        harness_run((char *[]){demo, "--mode", "pool", "--interval", "100", fx.tree, NULL},
                    (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    CHECK_EQ(pool_status_lines(r.out, done, 4096, &total), 1);
    CHECK_EQ(done[0], want.files);
    CHECK_EQ(total, want.files);
    char line[160];
    snprintf(line, sizeof line, " ... %llu/%llu files, %.1f/%.1f MB hashed (100%%)\npool mode:\n",
             want.files, want.files, (double)want.bytes / 1e6, (double)want.bytes / 1e6);
    CHECK_HAS(r.out, line);
    harness_run_free(&r);

    /* A short one: lines as the chunks end, the count never going down, ending at every file. */
    r = harness_run((char *[]){demo, "--mode", "pool", "--interval", "0.001", fx.tree, NULL},
                    (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    int n = pool_status_lines(r.out, done, 4096, &total);
    CHECK(n >= 1 && n <= 4096);
    CHECK_EQ(total, want.files);
    for (int i = 1; i < n; i++)
        CHECK(done[i] >= done[i - 1]);
    CHECK_EQ(done[n - 1], want.files);
    CHECK_HAS(r.out, line);
    harness_run_free(&r);
    remove_tree(&fx);
}

/* On a terminal the status is one line rewritten in place, with a bar (script(1) gives the demo a
 * pseudo-terminal). */
TEST_T(terminal_gets_one_updating_line_with_a_bar, 120)
{
    if (access("/usr/bin/script", X_OK) != 0) harness_skip("no script(1) to make a terminal");
    fixture fx;
    make_tree(&fx);
    summary want = coreutils(fx.tree, (uid_t)-1);
    char demo[PATH_MAX], cmd[3 * PATH_MAX];
    demo_path(demo, sizeof demo);
    snprintf(cmd, sizeof cmd, "stty cols 100; '%s' --mode process --interval 0.002 '%s'", demo,
             fx.tree);
    harness_run_result r =
        harness_run((char *[]){"/usr/bin/script", "-qec", cmd, "/dev/null", NULL},
                    (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    CHECK_HAS(r.out, "\r\033[Kwaiting on dir info for ");
    CHECK_HAS(r.out, " s ... [");
    CHECK_HAS(r.out, " files, ");
    /* The updating line never ends a line of its own: no "\n" until it is erased. */
    CHECK(!strstr(r.out, "MB\r\n") && !strstr(r.out, "MB\n"));
    CHECK_HAS(r.out, "\r\033[Kprocess mode:");
    char line[128];
    snprintf(line, sizeof line, "  sha256:   %s", want.sha256);
    CHECK_HAS(r.out, line);
    harness_run_free(&r);
    remove_tree(&fx);
}

/* Unreadable entries are skipped, counted and logged, and the digest covers the rest, as
 * sha256sum's does. Root reads everything, so as root the demo (and coreutils) run as nobody. */
TEST_T(unreadable_entries_are_skipped_counted_and_logged, 120)
{
    fixture fx;
    make_tree(&fx);
    char p[PATH_MAX];
    put_file(fx.tree, "secret.txt", "you cannot read me\n", 19);
    put_dir(fx.tree, "locked");
    put_file(fx.tree, "locked/inside.txt", "nor me\n", 7);
    snprintf(p, sizeof p, "%s/secret.txt", fx.tree);
    CHECK(chmod(p, 0) == 0);
    snprintf(p, sizeof p, "%s/locked", fx.tree);
    CHECK(chmod(p, 0) == 0);
    uid_t as = geteuid() == 0 ? 65534 : (uid_t)-1;
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    harness_run_result probe = harness_run_as((char *[]){demo, "--help", NULL}, NULL, as);
    bool can_run = WIFEXITED(probe.status) && WEXITSTATUS(probe.status) == 0;
    harness_run_free(&probe);
    if (!can_run || (as == (uid_t)-1 && access(p, R_OK) == 0)) {
        remove_tree(&fx);
        harness_skip(!can_run ? "the demo binary cannot run as nobody here"
                              : "this user reads mode-000 files (CAP_DAC_OVERRIDE)");
    }

    summary want = coreutils(fx.tree, as);
    CHECK_EQ(want.files, 13); /* secret.txt is listed (its directory is readable), inside.txt not */
    harness_run_result r = harness_run_as((char *[]){demo, "--json", fx.tree, NULL},
                                          (char *[]){fx.state_env, NULL}, as);
    check_exit(&r, 0);
    /* ok (the run worked) but not complete: secret.txt is found but not hashed, locked/ not
     * listed. */
    check_json(r.out, &want, 1, 2, 2);
    /* Logged as warnings: on the console and in the file. */
    CHECK_EQ(count(r.err, "WARNING - skipping secret.txt: Permission denied"), 2);
    CHECK_EQ(count(r.err, "WARNING - skipping directory locked: Permission denied"), 2);
    harness_run_free(&r);

    /* The text says where the warnings are: the log file when there is one... */
    r = harness_run_as((char *[]){demo, "--mode", "process", fx.tree, NULL},
                       (char *[]){fx.state_env, NULL}, as);
    check_exit(&r, 0);
    char line[PATH_MAX + 128];
    snprintf(line, sizeof line, "  dir info: %llu files, %llu bytes in ", want.files - 1,
             want.bytes);
    CHECK_HAS(r.out, line);
    CHECK_HAS(r.out, " (incomplete: of what could be read)\n");
    snprintf(
        line, sizeof line,
        "  skipped:  2 unreadable files or directories of %llu files found (see the log: %s)\n",
        want.files, fx.log_path);
    CHECK_HAS(r.out, line);
    harness_run_free(&r);
    /* ...and the console when the log has no file (its directory cannot be made). */
    char no_file[PATH_MAX + 32];
    snprintf(no_file, sizeof no_file, "XDG_STATE_HOME=%s/outside.txt", fx.base);
    r = harness_run_as((char *[]){demo, "--mode", "process", fx.tree, NULL},
                       (char *[]){no_file, NULL}, as);
    check_exit(&r, 0);
    CHECK_HAS(r.out, "log file: (none: console only)");
    CHECK_HAS(r.out, " files found (see the warnings above)\n");
    CHECK(!strstr(r.out, "see the log"));
    CHECK_HAS(r.err, "WARNING - skipping secret.txt: Permission denied");
    harness_run_free(&r);
    remove_tree(&fx);
}

TEST(bad_input_exits_2_with_a_message)
{
    fixture fx;
    make_tree(&fx);
    char demo[PATH_MAX], missing[PATH_MAX], file[PATH_MAX];
    demo_path(demo, sizeof demo);
    snprintf(missing, sizeof missing, "%s/no-such-dir", fx.base);
    snprintf(file, sizeof file, "%s/outside.txt", fx.base);
    char *env[] = {fx.state_env, NULL};

    harness_run_result r = harness_run((char *[]){demo, missing, NULL}, env);
    check_exit(&r, 2);
    char msg[PATH_MAX + 64];
    snprintf(msg, sizeof msg, "mproc-demo: cannot read directory '%s': No such file or directory",
             missing);
    CHECK_HAS(r.err, msg);
    CHECK_EQ(r.out_len, 0);
    harness_run_free(&r);

    r = harness_run((char *[]){demo, "--json", file, NULL}, env);
    check_exit(&r, 2);
    CHECK_HAS(r.err, "Not a directory");
    harness_run_free(&r);

    char *bad[][4] = {
        {demo, "--mode", "threads", NULL},  {demo, "--interval", "0", NULL},
        {demo, "--interval", "soon", NULL}, {demo, "--start", "spawn", NULL},
        {demo, "--no-such-option", NULL},   {demo, fx.tree, fx.tree, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = harness_run(bad[i], env);
        check_exit(&r, 2);
        CHECK(r.err_len > 0);
        harness_run_free(&r);
    }

    r = harness_run((char *[]){demo, "--help", NULL}, env);
    check_exit(&r, 0);
    CHECK_HAS(r.out, "usage: mproc-demo [options] [DIR]");
    harness_run_free(&r);
    remove_tree(&fx);
}

/* Without DIR the demo hashes the Python standard library, as the talk did. */
TEST_T(default_dir_is_the_newest_python_stdlib, 120)
{
    glob_t g;
    long best = -1;
    char want[64] = "";
    if (glob("/usr/lib/python3.*", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *end;
            const char *v = g.gl_pathv[i] + strlen("/usr/lib/python3.");
            long minor = strtol(v, &end, 10);
            struct stat st;
            if (end == v || *end || stat(g.gl_pathv[i], &st) < 0 || !S_ISDIR(st.st_mode)) continue;
            if (minor > best) {
                best = minor;
                snprintf(want, sizeof want, "%s", g.gl_pathv[i]);
            }
        }
        globfree(&g);
    }
    if (best < 0)
        harness_skip("no /usr/lib/python3.N here (the fallback, /usr/share, is too big "
                     "to hash in a test)");
    fixture fx;
    make_tree(&fx);
    summary sum = coreutils(want, (uid_t)-1);
    char demo[PATH_MAX];
    demo_path(demo, sizeof demo);
    harness_run_result r = harness_run((char *[]){demo, "--json", "--mode", "process", NULL},
                                       (char *[]){fx.state_env, NULL});
    check_exit(&r, 0);
    char dir[128];
    snprintf(dir, sizeof dir, "{\"dir\":\"%s\"", want);
    CHECK_HAS(r.out, dir);
    check_json(r.out, &sum, 0, 0, 1);
    harness_run_free(&r);
    remove_tree(&fx);
}

/* `make demo DIR=...` passes the directory (it used to be dropped: the knob was DEMO_ARGS), and
 * DEMO_ARGS still passes options. make -n prints the commands without running them. */
TEST(make_demo_passes_dir_and_demo_args)
{
    harness_run_result r =
        harness_run((char *[]){"/usr/bin/make", "-n", "-s", "-C", MPROC_SOURCE_DIR, "demo",
                               "BUILD=bx", "DIR=/some/dir", "DEMO_ARGS=--mode pool", NULL},
                    NULL);
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 127) {
        harness_run_free(&r);
        harness_skip("no make");
    }
    check_exit(&r, 0);
    CHECK_HAS(r.out, "bx/demo/mproc-demo --mode pool \"/some/dir\"\n");
    harness_run_free(&r);
}

/* `make demo` and `make test` install only what they need; clang, clang-format and valgrind are
 * CI's and development's (scripts/install-ci-deps). */
TEST(build_deps_leave_out_ci_tools)
{
    harness_run_result r =
        harness_run((char *[]){MPROC_SOURCE_DIR "/scripts/install-deps", "--list", NULL}, NULL);
    check_exit(&r, 0);
    CHECK_HAS(r.out, "libssl-dev");
    CHECK_HAS(r.out, "cmake");
    static const char *const ci_only[] = {"clang", "clang-format", "valgrind"};
    for (size_t i = 0; i < 3; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s", ci_only[i]);
        if (strstr(r.out, word)) harness_fail(__FILE__, __LINE__, "%s in: %s", ci_only[i], r.out);
    }
    harness_run_free(&r);
    r = harness_run((char *[]){MPROC_SOURCE_DIR "/scripts/install-ci-deps", "--list", NULL}, NULL);
    check_exit(&r, 0);
    CHECK_HAS(r.out, "libssl-dev");
    CHECK_HAS(r.out, " clang clang-format valgrind");
    CHECK_HAS(r.out, " libclang-rt-dev"); /* libFuzzer, for scripts/fuzz */
    harness_run_free(&r);
}
