#include <fcntl.h>
#include <pthread.h>
#include <ftw.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "log/log.h"
#include "log_util.h"

/* ---- helpers (the ones the rotation suite needs too are in log_util.c) ------------------- */

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int count_substr(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

static char *path_join(const char *dir, const char *name)
{
    char *p;
    CHECK(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

/* stderr redirected to a file for the duration. */
typedef struct {
    int saved;
    char *path;
} capture;

static void capture_begin(capture *c, const char *dir)
{
    c->path = path_join(dir, "stderr.txt");
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    c->saved = dup(STDERR_FILENO);
    CHECK(c->saved >= 0);
    CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

/* What was written since capture_begin (or the last capture_take); truncates. */
static char *capture_take(capture *c)
{
    char *s = slurp(c->path, NULL);
    CHECK(s);
    CHECK(ftruncate(STDERR_FILENO, 0) == 0);
    CHECK(lseek(STDERR_FILENO, 0, SEEK_SET) == 0);
    return s;
}

static char *capture_end(capture *c)
{
    char *s = capture_take(c);
    CHECK(dup2(c->saved, STDERR_FILENO) == STDERR_FILENO);
    close(c->saved);
    free(c->path);
    return s;
}

/* ---- cases ------------------------------------------------------------------------------- */

TEST(format_line)
{
    /* A POSIX TZ string needs no tz database: UTC+05:30. */
    setenv("TZ", "XYZ-5:30", 1);
    tzset();
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "fmtapp", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    CHECK(mproc_log_file_path());
    time_t before = time(NULL);
    int line = __LINE__ + 1;
    MPROC_ERROR("hello %s %d", "world", 42);
    time_t after = time(NULL);
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK(text);
    CHECK_EQ(count_lines(text), 1);

    regex_t re;
    CHECK(
        regcomp(
            &re,
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}[+-][0-9]{2}:[0-9]{2}"
            " - fmtapp - MainProcess - test_log\\.c - [0-9]+ - test_format_line - ERROR - "
            "hello world 42\n$",
            REG_EXTENDED | REG_NOSUB) == 0);
    CHECK(regexec(&re, text, 0, NULL, 0) == 0);
    regfree(&re);

    parsed p;
    CHECK(parse_line(text, &p));
    CHECK(strcmp(p.offset, "+05:30") == 0);
    CHECK_EQ(p.line, line);
    CHECK(strcmp(p.level, "ERROR") == 0);
    CHECK(strcmp(p.msg, "hello world 42\n") == 0);
    /* The local time, back to epoch through the offset, is now. */
    struct tm tm = {0};
    CHECK(strptime(p.time, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t local = timegm(&tm) - (5 * 3600 + 30 * 60);
    CHECK_BETWEEN((double)local, (double)before - 1, (double)after + 1);

    /* A negative offset. */
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(negative_offset)
{
    setenv("TZ", "ABC+3", 1);
    tzset();
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "off", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    MPROC_WARNING("x");
    char *text = slurp(mproc_log_file_path(), NULL);
    parsed p;
    CHECK(parse_line(text, &p));
    CHECK(strcmp(p.offset, "-03:00") == 0);
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

static void log_each_level(const char *tag)
{
    MPROC_DEBUG("%s-debug", tag);
    MPROC_INFO("%s-info", tag);
    MPROC_WARNING("%s-warning", tag);
    MPROC_ERROR("%s-error", tag);
    MPROC_CRITICAL("%s-critical", tag);
}

static void check_levels(const char *text, const char *tag, int lowest)
{
    static const char *names[] = {"debug", "info", "warning", "error", "critical"};
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s-%s\n", tag, names[i]);
        int present = strstr(text, want) != NULL;
        if (present != ((i + 1) * 10 >= lowest))
            harness_fail(__FILE__, __LINE__, "%s: '%s' %s", tag, names[i],
                         present ? "present" : "missing");
    }
}

TEST(level_filtering)
{
    char *dir = tmpdir_make();
    capture c;
    capture_begin(&c, dir);
    struct {
        const char *tag;
        mproc_log_config cfg;
        int console, file;
    } cases[] = {
        {"default", {.app_name = "lv"}, MPROC_LOG_WARNING, MPROC_LOG_INFO},
        {"verbose", {.app_name = "lv", .verbose = true}, MPROC_LOG_INFO, MPROC_LOG_DEBUG},
        {"override",
         {.app_name = "lv",
          .verbose = true,
          .console_level = MPROC_LOG_ERROR,
          .file_level = MPROC_LOG_WARNING},
         MPROC_LOG_ERROR,
         MPROC_LOG_WARNING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cases[i].cfg.log_dir = dir;
        cases[i].cfg.delete_existing = true;
        CHECK_OK(mproc_log_init(&cases[i].cfg));
        CHECK(mproc_log_enabled(cases[i].file) && !mproc_log_enabled(cases[i].file - 1));
        log_each_level(cases[i].tag);
        char *file = slurp(mproc_log_file_path(), NULL);
        char *console = capture_take(&c);
        check_levels(file, cases[i].tag, cases[i].file);
        check_levels(console, cases[i].tag, cases[i].console);
        free(file);
        free(console);
    }
    /* A sink can be switched off: no file at all. */
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "lv", .log_dir = dir, .file_level = MPROC_LOG_OFF}));
    CHECK(mproc_log_file_path() == NULL);
    mproc_log_shutdown();
    free(capture_end(&c));
    tmpdir_remove(dir);
}

TEST(before_init_goes_to_stderr_at_warning)
{
    unsetenv("MPROC_LOG_CONFIG");
    char *dir = tmpdir_make();
    capture c;
    capture_begin(&c, dir);
    CHECK(mproc_log_file_path() == NULL);
    MPROC_INFO("pre-info");
    MPROC_WARNING("pre-warning");
    char *out = capture_end(&c);
    CHECK(!strstr(out, "pre-info"));
    CHECK_EQ(count_lines(out), 1);
    parsed p;
    CHECK(parse_line(out, &p));
    CHECK(strcmp(p.app, "test_log") == 0);
    CHECK(strcmp(p.level, "WARNING") == 0);
    free(out);
    tmpdir_remove(dir);
}

static int log_child_body(void *arg)
{
    MPROC_INFO("from %s", (const char *)arg);
    return 0;
}

static int log_grandparent(void *arg)
{
    (void)arg;
    MPROC_INFO("from middle");
    mproc_process *g = harness_start_opts(
        &(mproc_process_opts){.name = "grandchild", .run = log_child_body, .arg = "grandchild"});
    return harness_join(g);
}

TEST(children_log_with_their_own_name)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "kids", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    mproc_process *a = harness_start_opts(
        &(mproc_process_opts){.name = "alpha", .run = log_child_body, .arg = "alpha"});
    mproc_process *b =
        harness_start_opts(&(mproc_process_opts){.run = log_child_body, .arg = "default"});
    char bname[64];
    snprintf(bname, sizeof bname, "%s", mproc_process_name(b));
    mproc_process *m =
        harness_start_opts(&(mproc_process_opts){.name = "middle", .run = log_grandparent});
    CHECK_EQ(harness_join(a), 0);
    CHECK_EQ(harness_join(b), 0);
    CHECK_EQ(harness_join(m), 0);
    MPROC_INFO("from main");
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK_EQ(count_lines(text), 5);
    int seen = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        parsed p;
        CHECK(parse_line(l, &p));
        const char *want = strncmp(p.msg, "from ", 5) == 0 ? p.msg + 5 : "?";
        if (strcmp(want, "default") == 0) want = bname;
        if (strcmp(want, "main") == 0) want = "MainProcess";
        if (strcmp(p.process, want) != 0)
            harness_fail(__FILE__, __LINE__, "line by '%s' says '%s'", p.process, p.msg);
        seen++;
    }
    CHECK_EQ(seen, 5);
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

/* A forkserver child is forked by a helper that may predate mproc_log_init: it adopts the set-up
 * the family published, with no set-up of its own. */
TEST(forkserver_child_started_before_init_joins)
{
    char *dir = tmpdir_make();
    capture c;
    capture_begin(&c, dir);
    /* Starts the helper, before the log exists. */
    CHECK_EQ(
        harness_join(harness_start_opts(&(mproc_process_opts){
            .name = "early", .run = log_child_body, .arg = "early", .start_method = "forkserver"})),
        0);
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "fsrv", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    CHECK_EQ(
        harness_join(harness_start_opts(&(mproc_process_opts){
            .name = "late", .run = log_child_body, .arg = "late", .start_method = "forkserver"})),
        0);
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK_EQ(count_lines(text), 1);
    CHECK(strstr(text, " - fsrv - late - test_log.c - ") && strstr(text, "from late\n"));
    free(text);
    /* After shutdown this process does not pick the family's set-up up again. */
    mproc_log_shutdown();
    CHECK(mproc_log_file_path() == NULL);
    MPROC_INFO("after shutdown");
    CHECK(mproc_log_file_path() == NULL);
    free(capture_end(&c));
    tmpdir_remove(dir);
}

TEST(thread_processes_log_with_their_own_name)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "thr", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    mproc_process *a = harness_start_opts(&(mproc_process_opts){
        .name = "tone", .run = log_child_body, .arg = "tone", .start_method = "thread"});
    mproc_process *b = harness_start_opts(&(mproc_process_opts){
        .name = "ttwo", .run = log_child_body, .arg = "ttwo", .start_method = "thread"});
    CHECK_EQ(harness_join(a), 0);
    CHECK_EQ(harness_join(b), 0);
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK(strstr(text, " - tone - ") && strstr(text, "from tone\n"));
    CHECK(strstr(text, " - ttwo - ") && strstr(text, "from ttwo\n"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(delete_existing)
{
    char *dir = tmpdir_make();
    char *path = path_join(dir, "del.log");
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("old content\n", f);
    fclose(f);
    mproc_log_config cfg = {.app_name = "del", .log_dir = dir, .console_level = MPROC_LOG_OFF};
    CHECK_OK(mproc_log_init(&cfg));
    MPROC_INFO("new one");
    char *text = slurp(path, NULL);
    CHECK(strstr(text, "old content") && strstr(text, "new one"));
    free(text);
    cfg.delete_existing = true;
    CHECK_OK(mproc_log_init(&cfg));
    MPROC_INFO("after delete");
    text = slurp(path, NULL);
    CHECK(!strstr(text, "old content") && !strstr(text, "new one") && strstr(text, "after delete"));
    free(text);
    free(path);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(default_directory)
{
    char *xdg = tmpdir_make(), *home = tmpdir_make();
    setenv("XDG_STATE_HOME", xdg, 1);
    CHECK_OK(
        mproc_log_init(&(mproc_log_config){.app_name = "dflt", .console_level = MPROC_LOG_OFF}));
    char *want;
    CHECK(asprintf(&want, "%s/dflt/log/dflt.log", xdg) > 0);
    CHECK(mproc_log_file_path() && strcmp(mproc_log_file_path(), want) == 0);
    free(want);
    unsetenv("XDG_STATE_HOME");
    setenv("HOME", home, 1);
    CHECK_OK(
        mproc_log_init(&(mproc_log_config){.app_name = "dflt", .console_level = MPROC_LOG_OFF}));
    CHECK(asprintf(&want, "%s/.local/state/dflt/log/dflt.log", home) > 0);
    CHECK(mproc_log_file_path() && strcmp(mproc_log_file_path(), want) == 0);
    free(want);
    mproc_log_shutdown();
    tmpdir_remove(xdg);
    tmpdir_remove(home);
}

static int log_then_die(void *arg)
{
    (void)arg;
    MPROC_INFO("last words");
    raise(SIGKILL);
    return 0;
}

TEST(line_survives_sigkill_right_after)
{
    SKIP_IN_THREAD_MODE("SIGKILL ends the whole process");
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "crash", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    CHECK_EQ(harness_join(
                 harness_start_opts(&(mproc_process_opts){.name = "doomed", .run = log_then_die})),
             -SIGKILL);
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK(strstr(text, " - doomed - ") && strstr(text, "last words\n"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(unwritable_directory_falls_back_to_console)
{
    char *dir = tmpdir_make();
    capture c;
    capture_begin(&c, dir);
    /* A path under a regular file: fails even for root. */
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "nodir", .log_dir = "/dev/null/x"}));
    CHECK(mproc_log_file_path() == NULL);
    MPROC_ERROR("still here");
    MPROC_INFO("not on the console");
    MPROC_ERROR("still here");
    char *out = capture_end(&c);
    CHECK_EQ(count_substr(out, "cannot open a log file in /dev/null/x"), 1);
    CHECK_EQ(count_substr(out, "still here\n"), 2);
    CHECK(!strstr(out, "not on the console"));
    CHECK_EQ(count_lines(out), 3);
    free(out);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

static int log_many(void *arg)
{
    for (int i = 0; i < (int)(intptr_t)arg; i++)
        MPROC_INFO("line %d", i);
    return 0;
}

TEST(disk_full_reported_once)
{
    char *dir = tmpdir_make();
    /* The log file is /dev/full: every write fails with ENOSPC. */
    char *link = path_join(dir, "full.log");
    CHECK(symlink("/dev/full", link) == 0);
    capture c;
    capture_begin(&c, dir);
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "full", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    CHECK(mproc_log_file_path());
    log_many((void *)(intptr_t)100);
    CHECK_EQ(harness_join(harness_start_opts(&(mproc_process_opts){
                 .name = "filler", .run = log_many, .arg = (void *)(intptr_t)100})),
             0);
    char *out = capture_end(&c);
    CHECK_EQ(count_substr(out, "cannot write the log file"), 1);
    CHECK_EQ(count_substr(out, "No space left on device"), 1);
    CHECK_EQ(count_lines(out), 1);
    free(out);
    free(link);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(json_lines)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){
        .app_name = "js\"on", .log_dir = dir, .console_level = MPROC_LOG_OFF, .json = true}));
    MPROC_WARNING("q\"b\\s\nnl\ttab\x01"
                  "ctl \xc3\xa9 bad\xff end");
    MPROC_INFO("plain");
    const char *path = mproc_log_file_path();
    char *text = slurp(path, NULL);
    CHECK_EQ(count_lines(text), 2);
    CHECK(strncmp(text, "{\"time\":\"", 9) == 0);
    CHECK(strstr(text,
                 "\"message\":\"q\\\"b\\\\s\\nnl\\ttab\\u0001ctl \xc3\xa9 bad\\ufffd end\"}\n"));
    CHECK(strstr(text, "\"app\":\"js\\\"on\""));
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        CHECK(*p >= 0x20 || *p == '\n');
    /* And a real JSON parser agrees, field by field (skipped when there is no python3). */
    static const char script[] =
        "import json, sys\n"
        "ls = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]\n"
        "a = ls[0]\n"
        "assert a['message'] == 'q\"b\\\\s\\nnl\\ttab\\x01ctl \\u00e9 bad\\ufffd end', a\n"
        "assert a['level'] == 'WARNING' and a['app'] == 'js\"on', a\n"
        "assert a['process'] == 'MainProcess' and a['file'] == 'test_log.c', a\n"
        "assert a['func'] == 'test_json_lines' and isinstance(a['line'], int), a\n"
        "assert a['pid'] > 0 and a['time'][26] in '+-', a\n"
        "assert ls[1]['message'] == 'plain' and ls[1]['level'] == 'INFO', ls[1]\n";
    char *spath = path_join(dir, "check.py");
    FILE *sf = fopen(spath, "w");
    CHECK(sf);
    fputs(script, sf);
    fclose(sf);
    char *cmd;
    CHECK(asprintf(&cmd, "python3 '%s' '%s'", spath, path) > 0);
    int st = system(cmd);
    free(cmd);
    free(spath);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 127)) CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(newlines_stay_one_record)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "nl", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    MPROC_INFO("first\nsecond\r\nthird\x1b[0m");
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK_EQ(count_lines(text), 1);
    CHECK(strstr(text, " - INFO - first\\nsecond\\r\\nthird\\x1b[0m\n"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(long_messages_are_cut_into_one_record)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(
        &(mproc_log_config){.app_name = "long", .log_dir = dir, .console_level = MPROC_LOG_OFF}));
    size_t n = 100000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    MPROC_INFO("%s", big);
    /* Two-byte characters: the cut must not split one. */
    for (size_t i = 0; i + 1 < n; i += 2)
        big[i] = '\xc3', big[i + 1] = '\xa9';
    MPROC_INFO("%s", big);
    /* Newlines double in size when escaped: the cut accounts for that too. */
    memset(big, '\n', n);
    MPROC_INFO("%s", big);
    size_t len;
    char *text = slurp(mproc_log_file_path(), &len);
    CHECK_EQ(count_lines(text), 3);
    char *save, *l = strtok_r(text, "\n", &save);
    for (int i = 0; i < 3; i++, l = strtok_r(NULL, "\n", &save)) {
        CHECK(l);
        size_t ll = strlen(l);
        CHECK(ll + 1 <= MPROC_LOG_RECORD_MAX && ll + 1 > MPROC_LOG_RECORD_MAX - 100);
        const char *mark = "... [cut: 100000 bytes]";
        CHECK(ll > strlen(mark) && strcmp(l + ll - strlen(mark), mark) == 0);
        if (i == 1) CHECK((unsigned char)l[ll - strlen(mark) - 1] == 0xa9);
        if (i == 2) CHECK(l[ll - strlen(mark) - 1] == 'n' && l[ll - strlen(mark) - 2] == '\\');
    }
    free(text);
    free(big);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

typedef struct {
    int calls;
    int last_level;
    int line;
    char process[64], file[64], message[64];
} cb_state;

static void on_error(const mproc_log_record *rec, void *arg)
{
    cb_state *s = arg;
    s->calls++;
    s->last_level = rec->level;
    s->line = rec->line;
    snprintf(s->process, sizeof s->process, "%s", rec->process);
    snprintf(s->file, sizeof s->file, "%s", rec->file);
    snprintf(s->message, sizeof s->message, "%s", rec->message);
    MPROC_ERROR("from the callback"); /* logged, but does not call back again */
}

TEST(error_callback)
{
    char *dir = tmpdir_make();
    cb_state s = {0};
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "cb",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_OFF,
                                                .on_error = on_error,
                                                .arg = &s}));
    MPROC_WARNING("just a warning");
    CHECK_EQ(s.calls, 0);
    int line = __LINE__ + 1;
    MPROC_ERROR("bad %d", 1);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.last_level, MPROC_LOG_ERROR);
    CHECK_EQ(s.line, line);
    CHECK(strcmp(s.process, "MainProcess") == 0 && strcmp(s.file, "test_log.c") == 0);
    CHECK(strcmp(s.message, "bad 1") == 0);
    MPROC_CRITICAL("worse");
    CHECK_EQ(s.calls, 2);
    CHECK_EQ(s.last_level, MPROC_LOG_CRITICAL);
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK_EQ(count_substr(text, "from the callback"), 2);
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(ring_of_last_lines_family_wide)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){
        .app_name = "ring", .log_dir = dir, .console_level = MPROC_LOG_OFF, .ring_lines = 8}));
    for (int i = 0; i < 20; i++)
        MPROC_INFO("r%02d", i);
    CHECK_EQ(harness_join(harness_start_opts(&(mproc_process_opts){
                 .name = "ringchild", .run = log_child_body, .arg = "ringchild"})),
             0);
    char **lines;
    size_t n;
    CHECK_OK(mproc_log_ring_get(&lines, &n));
    CHECK_EQ(n, 8);
    for (size_t i = 0; i < 7; i++) {
        char want[16];
        snprintf(want, sizeof want, "- r%02zu", 13 + i);
        size_t l = strlen(lines[i]);
        CHECK(l > 5 && strcmp(lines[i] + l - 5, want) == 0);
    }
    CHECK(strstr(lines[7], " - ringchild - ") && strstr(lines[7], "from ringchild"));
    free(lines);
    /* Long lines are cut in the ring only. */
    char big[3000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    MPROC_INFO("%s", big);
    CHECK_OK(mproc_log_ring_get(&lines, &n));
    CHECK_EQ(n, 8);
    CHECK_EQ(strlen(lines[7]), MPROC_LOG_RING_LINE_MAX - 1);
    free(lines);
    CHECK_RC(mproc_log_ring_get(NULL, &n), -EINVAL);
    mproc_log_shutdown();
    /* No ring: zero lines. */
    CHECK_OK(mproc_log_ring_get(&lines, &n));
    CHECK_EQ(n, 0);
    free(lines);
    tmpdir_remove(dir);
}

TEST(environment_config_round_trip)
{
    char *dir = tmpdir_make();
    CHECK_OK(mproc_log_init(&(mproc_log_config){.app_name = "env;a=b%",
                                                .author = "me",
                                                .log_dir = dir,
                                                .console_level = MPROC_LOG_ERROR,
                                                .max_bytes = 12345,
                                                .backup_count = 7,
                                                .json = true,
                                                .ring_lines = 4}));
    const char *s = getenv("MPROC_LOG_CONFIG");
    CHECK(s && strstr(s, "app=env%3Ba%3Db%25"));
    mproc__log_env_cfg e;
    CHECK_OK(mproc__log_env_decode(s, &e));
    CHECK(strcmp(e.cfg.app_name, "env;a=b%") == 0 && strcmp(e.cfg.author, "me") == 0);
    CHECK(strcmp(e.cfg.log_dir, dir) == 0);
    CHECK_EQ(e.cfg.console_level, MPROC_LOG_ERROR);
    CHECK_EQ(e.cfg.file_level, MPROC_LOG_INFO);
    CHECK_EQ(e.cfg.max_bytes, 12345);
    CHECK_EQ(e.cfg.backup_count, 7);
    CHECK(e.cfg.json);
    CHECK_EQ(e.cfg.ring_lines, 4);
    CHECK_RC(mproc__log_env_decode("app=x", &e), -EINVAL); /* no version */
    CHECK_RC(mproc__log_env_decode("v=1;app=x;max=zz", &e), -EINVAL);
    CHECK_RC(mproc__log_env_decode("v=1;app=%4", &e), -EINVAL);
    mproc_log_shutdown();
    CHECK(getenv("MPROC_LOG_CONFIG") == NULL);
    CHECK_RC(mproc_log_init_from_env(), -ENOENT);
    setenv("MPROC_LOG_CONFIG", "garbage", 1);
    CHECK_RC(mproc_log_init_from_env(), -EINVAL);
    unsetenv("MPROC_LOG_CONFIG");
    CHECK_RC(mproc_log_init(&(mproc_log_config){.app_name = "a/b"}), -EINVAL);
    tmpdir_remove(dir);
}

TEST(exec_program_joins_through_environment)
{
    char *dir = tmpdir_make();
    CHECK(chdir("/tmp") == 0);
    CHECK_OK(mproc_log_init(&(mproc_log_config){
        .app_name = "execd", .log_dir = dir + 5, .console_level = MPROC_LOG_OFF}));
    /* Relative paths are made absolute, so the exec'd program finds the same file. */
    CHECK(mproc_log_file_path()[0] == '/');
    run_exec_helper("explicit");
    run_exec_helper("auto");
    MPROC_INFO("parent after");
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK_EQ(count_lines(text), 3);
    CHECK(strstr(text, " - execd - MainProcess - test_log.c - ") &&
          strstr(text, "helper explicit"));
    CHECK(strstr(text, "helper auto"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

TEST(mproc_init_sets_up_the_log)
{
    char *dir = tmpdir_make();
    mproc_log_config lc = {.app_name = "viainit", .log_dir = dir, .console_level = MPROC_LOG_OFF};
    CHECK_OK(mproc_init(&(mproc_config){.log = &lc}));
    CHECK(mproc_log_file_path() && strstr(mproc_log_file_path(), "/viainit.log"));
    MPROC_INFO("set up by mproc_init");
    char *text = slurp(mproc_log_file_path(), NULL);
    CHECK(strstr(text, "set up by mproc_init"));
    free(text);
    mproc_log_shutdown();
    tmpdir_remove(dir);
}

/* Every out-of-range value is refused (0 would have meant "default" and v=0 any version), with a
 * reason naming the key, the value and what is allowed. */
TEST(environment_config_refuses_bad_values)
{
    static const struct {
        const char *cfg, *key, *value, *allowed;
    } bad[] = {
        {"v=0;app=x", "'v'", "'0'", "allowed: 1"},
        {"v=2;app=x", "'v'", "'2'", "allowed: 1"},
        {"v=1;app=x;console=0", "'console'", "'0'", "allowed: a level 1..1000"},
        {"v=1;app=x;file=0", "'file'", "'0'", "allowed: a level 1..1000"},
        {"v=1;app=x;file=1001", "'file'", "'1001'", "allowed: a level 1..1000"},
        {"v=1;app=x;max=0", "'max'", "'0'", "allowed: bytes, 1 or more"},
        {"v=1;app=x;max=-1", "'max'", "'-1'", "allowed: bytes, 1 or more"},
        {"v=1;app=x;max= 5", "'max'", "' 5'", "allowed: bytes"},
        {"v=1;app=x;json=2", "'json'", "'2'", "allowed: 0 or 1"},
        {"v=1;app=x;backups=-2", "'backups'", "'-2'", "allowed: -1..1000000"},
        {"v=1;app=x;ring=70000", "'ring'", "'70000'", "allowed: 0..65536"},
        {"v=1;app=%4", "'app'", "'%4'", "allowed: a string"},
        {"app=x", "no key 'v'", "", "allowed: v=1"},
        {"v=1;app=", "no key 'app'", "", "allowed: a non-empty app=NAME"},
        {"garbage", "not key=value: 'garbage'", "", ""},
    };
    mproc__log_env_cfg e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(mproc__log_env_decode(bad[i].cfg, &e), -EINVAL);
        if (!strstr(e.err, bad[i].key) || !strstr(e.err, bad[i].value) ||
            !strstr(e.err, bad[i].allowed))
            harness_fail(__FILE__, __LINE__, "%s: reason '%s'", bad[i].cfg, e.err);
    }
    CHECK_OK(mproc__log_env_decode("v=1;app=x;console=1000;file=10;max=1;backups=-1", &e));
    CHECK_EQ(e.cfg.max_bytes, 1);
}

/* mproc_log_init_from_env says why, on stderr, once per process however often it is called. */
TEST(environment_config_bad_value_is_reported_once)
{
    int p[2];
    CHECK(pipe(p) == 0);
    int saved = dup(STDERR_FILENO);
    CHECK(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
    setenv("MPROC_LOG_CONFIG", "v=1;app=x;max=0", 1);
    CHECK_RC(mproc_log_init_from_env(), -EINVAL);
    CHECK_RC(mproc_log_init_from_env(), -EINVAL);
    MPROC_WARNING("after"); /* the first record tries to join too */
    unsetenv("MPROC_LOG_CONFIG");
    CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    close(p[1]);
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    CHECK(n > 0);
    buf[n] = '\0';
    const char *want = "mproc: MPROC_LOG_CONFIG not used: key 'max' has the bad value '0'; "
                       "allowed: bytes, 1 or more\n";
    CHECK(strncmp(buf, want, strlen(want)) == 0);
    CHECK(strstr(buf + strlen(want), "MPROC_LOG_CONFIG") == NULL); /* once */
    CHECK(strstr(buf, "after"));
}
