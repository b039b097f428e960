/* Logging: set-up, the record path and the sinks.
 *
 * A record is formatted whole into a buffer on the stack and written with one write() per sink,
 * so it is one line in the file however many processes and threads log at once, and it is in the
 * kernel (not in a user-space buffer) when the call returns. The set-up is plain process memory:
 * a fork child inherits it, fd included, and reads its own name per record. */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "platform/platform.h"

mproc__log_state mproc__log = {.fd = -1};

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static _Thread_local int in_callback;

/* Records forwarded to another process's log (log.h), and the writer of such a record here. */
bool (*mproc__log_forward)(int level, const char *process, pid_t pid, const char *file, int line,
                           const char *func, const char *msg, size_t len);
static _Thread_local int in_forward;
static _Thread_local const char *as_process;
static _Thread_local pid_t as_pid;

const char *mproc_log_level_name(int level)
{
    switch (level) {
    case MPROC_LOG_DEBUG:
        return "DEBUG";
    case MPROC_LOG_INFO:
        return "INFO";
    case MPROC_LOG_WARNING:
        return "WARNING";
    case MPROC_LOG_ERROR:
        return "ERROR";
    case MPROC_LOG_CRITICAL:
        return "CRITICAL";
    default:
        return NULL;
    }
}

static void release_state(void)
{
    mproc__log_state *S = &mproc__log;
    if (S->fd >= 0) close(S->fd);
    free(S->dir);
    free(S->path);
    memset(S, 0, sizeof *S);
    S->fd = -1;
}

void mproc_log_shutdown(void)
{
    mproc__log_family *f = mproc__log.family ? mproc__log.family : mproc__log_family_peek();
    release_state();
    /* Not the family's set-up either, until the family publishes a new one. */
    if (f) mproc__log.cfg_gen = atomic_load(&f->cfg_gen);
    unsetenv("MPROC_LOG_CONFIG");
}

const char *mproc_log_file_path(void)
{
    return mproc__log.active ? mproc__log.path : NULL;
}

static char *default_dir(const char *app)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    char *out = NULL;
    /* The XDG spec ignores relative values. */
    if (xdg && xdg[0] == '/') {
        if (asprintf(&out, "%s/%s/log", xdg, app) < 0) return NULL;
        return out;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res) home = res->pw_dir;
    }
    if (!home || !*home) home = "/tmp";
    if (asprintf(&out, "%s/.local/state/%s/log", home, app) < 0) return NULL;
    return out;
}

static void delete_existing(const char *path, int backups)
{
    unlink(path);
    size_t n = strlen(path) + 16;
    char b[n];
    for (int i = 1; i <= backups; i++) {
        snprintf(b, n, "%s.%d", path, i);
        unlink(b);
    }
}

/* Make the directory and open the file; on failure, console only with one warning. */
static int open_sink(const mproc_log_config *cfg, bool from_env)
{
    mproc__log_state *S = &mproc__log;
    char *dir = cfg->log_dir && *cfg->log_dir ? strdup(cfg->log_dir) : default_dir(S->app);
    if (!dir) return -ENOMEM;
    int r = mproc__log_mkdirs(dir);
    if (r == 0) {
        /* Absolute, so that an exec'd program in another directory finds the same file. */
        char *abs = realpath(dir, NULL);
        if (abs) {
            free(dir);
            dir = abs;
        }
        S->dir = dir;
        if (asprintf(&S->path, "%s/%s.log", dir, S->app) < 0) {
            S->path = NULL;
            return -ENOMEM;
        }
        if (cfg->delete_existing && !from_env) delete_existing(S->path, S->backup_count);
        r = mproc__log_open_file();
    } else {
        S->dir = dir;
    }
    if (r < 0) {
        MPROC__LOG_SELF(MPROC_LOG_WARNING,
                        "cannot open a log file in %s: %s; logging to the console only", S->dir,
                        strerror(-r));
        free(S->path);
        S->path = NULL;
    }
    return 0;
}

enum { BY_INIT, BY_ENV, BY_ADOPT };

/* Make the set-up visible to the family: a process that did not inherit it by fork (a forkserver
 * child, a process started earlier) adopts it at its next record. */
static void publish(const char *enc)
{
    mproc__log_state *S = &mproc__log;
    mproc__log_family *f = S->family;
    if (f == mproc__log_family_peek() && strlen(enc) < sizeof f->cfg) {
        mproc__log_family_lock(f);
        strcpy(f->cfg, enc);
        atomic_store(&f->ring, S->ring);
        S->cfg_gen = atomic_load(&f->cfg_gen) + 1;
        atomic_store_explicit(&f->cfg_gen, S->cfg_gen, memory_order_release);
        pthread_mutex_unlock(&f->mu);
    }
}

static int init_common(const mproc_log_config *cfg, int by, uint64_t cfg_gen)
{
    static const mproc_log_config defaults;
    if (!cfg) cfg = &defaults;
    const char *app =
        cfg->app_name && *cfg->app_name ? cfg->app_name : program_invocation_short_name;
    if (!app || !*app || strchr(app, '/') || strlen(app) >= MPROC__LOG_APP_MAX ||
        strcmp(app, ".") == 0 || strcmp(app, "..") == 0)
        return -EINVAL;
    if (cfg->author && strlen(cfg->author) >= MPROC__LOG_APP_MAX) return -EINVAL;
    if (cfg->console_level < 0 || cfg->file_level < 0) return -EINVAL;
    if (cfg->ring_lines > ((size_t)1 << 16)) return -EINVAL;

    mproc__log_family *fam = mproc__log_family_get();
    mproc__log_ring *ring = NULL;
    if (by == BY_ADOPT) {
        ring = atomic_load(&fam->ring);
    } else if (cfg->ring_lines) {
        int r = mproc__log_ring_new(&ring, cfg->ring_lines);
        if (r < 0) return r;
    }
    release_state();
    mproc__log_state *S = &mproc__log;
    snprintf(S->app, sizeof S->app, "%s", app);
    snprintf(S->author, sizeof S->author, "%s", cfg->author ? cfg->author : "");
    S->verbose = cfg->verbose;
    S->json = cfg->json;
    S->console_level = cfg->console_level ? cfg->console_level
                       : cfg->verbose     ? MPROC_LOG_INFO
                                          : MPROC_LOG_WARNING;
    S->file_level = cfg->file_level ? cfg->file_level
                    : cfg->verbose  ? MPROC_LOG_DEBUG
                                    : MPROC_LOG_INFO;
    S->max_bytes = cfg->max_bytes ? cfg->max_bytes : MPROC__LOG_DEFAULT_MAX_BYTES;
    S->backup_count = cfg->backup_count > 0   ? cfg->backup_count
                      : cfg->backup_count < 0 ? -1
                                              : MPROC__LOG_DEFAULT_BACKUPS;
    S->ring_lines = cfg->ring_lines;
    S->ring = ring;
    S->on_error = by == BY_INIT ? cfg->on_error : NULL;
    S->arg = cfg->arg;
    S->family = fam;
    S->fd = -1;
    S->cfg_gen = cfg_gen;
    int r = 0;
    if (S->file_level < MPROC_LOG_OFF) r = open_sink(cfg, by != BY_INIT);
    if (r < 0) {
        release_state();
        return r;
    }
    S->active = true;
    char *env = mproc__log_env_encode();
    if (env) {
        if (by != BY_ADOPT) publish(env);
        setenv("MPROC_LOG_CONFIG", env, 1);
        free(env);
    }
    return 0;
}

int mproc_log_init(const mproc_log_config *cfg)
{
    return init_common(cfg, BY_INIT, 0);
}

int mproc_log_init_from_env(void)
{
    const char *s = getenv("MPROC_LOG_CONFIG");
    if (!s || !*s) return -ENOENT;
    mproc__log_env_cfg *e = malloc(sizeof *e);
    if (!e) return -ENOMEM;
    int r = mproc__log_env_decode(s, e);
    if (r == -EINVAL) mproc__log_env_report(e);
    if (r == 0) r = init_common(&e->cfg, BY_ENV, 0);
    free(e);
    return r;
}

/* A program started by exec with MPROC_LOG_CONFIG joins the log at its first record. */
static void join_from_env(void)
{
    if (!mproc__log.active && getenv("MPROC_LOG_CONFIG")) mproc_log_init_from_env();
}

/* Follow the family's published set-up when it is not the one we have. One load per record. */
static void follow_family(void)
{
    static atomic_flag busy = ATOMIC_FLAG_INIT;
    mproc__log_state *S = &mproc__log;
    mproc__log_family *f = S->family ? S->family : mproc__log_family_peek();
    if (!f) return;
    uint64_t g = atomic_load_explicit(&f->cfg_gen, memory_order_acquire);
    if (g == 0 || g == S->cfg_gen) return;
    /* Another thread of this process is at it: this record goes by the old set-up. */
    if (atomic_flag_test_and_set(&busy)) return;
    mproc__log_env_cfg *e = malloc(sizeof *e);
    char *enc = malloc(MPROC__LOG_CONFIG_MAX);
    if (e && enc) {
        mproc__log_family_lock(f);
        g = atomic_load(&f->cfg_gen);
        memcpy(enc, f->cfg, MPROC__LOG_CONFIG_MAX);
        pthread_mutex_unlock(&f->mu);
        if (mproc__log_env_decode(enc, e) == 0) init_common(&e->cfg, BY_ADOPT, g);
        S->cfg_gen = g; /* even if it failed: do not retry every record */
    }
    free(e);
    free(enc);
    atomic_flag_clear(&busy);
}

static int threshold(void)
{
    const mproc__log_state *S = &mproc__log;
    if (!S->active) return MPROC_LOG_WARNING;
    int t = S->console_level;
    if (S->path && S->file_level < t) t = S->file_level;
    return t;
}

bool mproc_log_enabled(int level)
{
    pthread_once(&env_once, join_from_env);
    follow_family();
    return level >= threshold();
}

/* Fill the fields common to every record; the message stays the caller's. */
static void fields_init(mproc__log_fields *f, int level, const char *file, int line,
                        const char *func, char *level_buf, size_t level_cap)
{
    clock_gettime(CLOCK_REALTIME, &f->ts);
    mproc__log_time_text(&f->ts, f->time_text, sizeof f->time_text);
    f->app = mproc__log.active ? mproc__log.app : program_invocation_short_name;
    f->process = as_process ? as_process : mproc_current_name();
    const char *slash = file ? strrchr(file, '/') : NULL;
    f->file = slash ? slash + 1 : file ? file : "?";
    f->func = func ? func : "?";
    f->line = line;
    f->pid = as_process ? as_pid : getpid();
    f->level_name = mproc_log_level_name(level);
    if (!f->level_name) {
        snprintf(level_buf, level_cap, "Level %d", level);
        f->level_name = level_buf;
    }
}

static void write_all_once(int fd, const char *buf, size_t n)
{
    ssize_t w;
    do
        w = write(fd, buf, n);
    while (w < 0 && errno == EINTR);
}

static void vwrite_record(int level, const char *file, int line, const char *func, const char *fmt,
                          va_list ap)
{
    mproc__log_state *S = &mproc__log;
    char msg[MPROC_LOG_RECORD_MAX], text[MPROC_LOG_RECORD_MAX], level_buf[24];
    mproc__log_fields f;
    fields_init(&f, level, file, line, func, level_buf, sizeof level_buf);
    int full = vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    if (full < 0) full = 0;
    f.full_len = (size_t)full;
    f.msg_len = f.full_len < sizeof msg ? f.full_len : sizeof msg - 1;
    f.msg = msg;
    size_t tn = mproc__log_format_text(&f, text, sizeof text);

    bool active = S->active;
    int console = active ? S->console_level : MPROC_LOG_WARNING;
    bool forwarded = false;
    if (mproc__log_forward && level >= MPROC_LOG_WARNING && !in_forward) {
        in_forward = 1;
        forwarded =
            mproc__log_forward(level, f.process, f.pid, f.file, line, f.func, msg, f.msg_len);
        in_forward = 0;
    }
    /* A forwarded record reaches the console through the other process's log. */
    if (level >= console && !forwarded) write_all_once(STDERR_FILENO, text, tn);
    if (active && S->path && level >= S->file_level) {
        int64_t now = (int64_t)f.ts.tv_sec * 1000000000 + f.ts.tv_nsec;
        if (S->json) {
            char js[MPROC_LOG_RECORD_MAX];
            size_t jn = mproc__log_format_json(&f, js, sizeof js);
            mproc__log_file_write(js, jn, now);
        } else {
            mproc__log_file_write(text, tn, now);
        }
    }
    if (active && S->ring) mproc__log_ring_push(S->ring, text, tn - 1);
    if (active && S->on_error && level >= MPROC_LOG_ERROR && !in_callback) {
        text[tn - 1] = '\0';
        mproc_log_record rec = {
            .level = level,
            .level_name = f.level_name,
            .time = f.ts,
            .time_text = f.time_text,
            .app = f.app,
            .process = f.process,
            .pid = f.pid,
            .file = f.file,
            .line = f.line,
            .func = f.func,
            .message = msg,
            .text = text,
        };
        in_callback = 1;
        S->on_error(&rec, S->arg);
        in_callback = 0;
    }
}

void mproc__log_write_as(int level, const char *process, pid_t pid, const char *file, int line,
                         const char *func, const char *msg, size_t len)
{
    as_process = process;
    as_pid = pid;
    mproc_log_write(level, file, line, func, "%.*s", (int)len, msg);
    as_process = NULL;
}

void mproc_log_write(int level, const char *file, int line, const char *func, const char *fmt, ...)
{
    if (!mproc_log_enabled(level)) return;
    int saved = errno; /* logging must not disturb the caller's errno (it may log strerror) */
    va_list ap;
    va_start(ap, fmt);
    vwrite_record(level, file, line, func, fmt, ap);
    va_end(ap);
    errno = saved;
}

void mproc__log_internal(int level, const char *file, int line, const char *func, const char *fmt,
                         ...)
{
    char msg[1024], text[2048], level_buf[24];
    mproc__log_fields f;
    fields_init(&f, level, file, line, func, level_buf, sizeof level_buf);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    f.full_len = (size_t)n;
    f.msg_len = f.full_len < sizeof msg ? f.full_len : sizeof msg - 1;
    f.msg = msg;
    write_all_once(STDERR_FILENO, text, mproc__log_format_text(&f, text, sizeof text));
}
