/* mproc: process-aware logging.
 *
 * One call sets up console and file logging with sane defaults, and every process of the family
 * (mproc processes, pool workers, plain fork() children) then logs to the same sinks under its own
 * name with no set-up. A program started by exec joins through the environment variable
 * MPROC_LOG_CONFIG, which mproc_log_init exports.
 *
 * Line format (text sinks):
 *   2026-11-25T13:51:49.247979+00:00 - APP - PROCESS_NAME - file.c - 12 - func - ERROR - message
 * Local time with microseconds and UTC offset; the process name is mproc_current_name(), read for
 * every record. Each record is formatted into one buffer and written with one write() to each sink
 * (the file is opened O_APPEND), so lines never tear or interleave between processes or threads,
 * and nothing is buffered in user space: a line logged right before a crash is in the file.
 *
 * A message stays one line: '\n' is written as the two characters "\n", '\r' as "\r", and other
 * control characters (except tab) as "\xHH". A record is at most MPROC_LOG_RECORD_MAX bytes
 * including its newline; a longer message is cut (at a UTF-8 boundary) and ends with the marker
 * "... [cut: N bytes]" (N: the full length of the message).
 *
 * Before mproc_log_init (and after mproc_log_shutdown) records at WARNING and above go to stderr,
 * unless MPROC_LOG_CONFIG is set in the environment: then the first record joins that log.
 * See docs/logging.md.
 */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include <time.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels: the numeric values of Python's logging module. Any int works as a level. */
enum {
    MPROC_LOG_DEBUG = 10,
    MPROC_LOG_INFO = 20,
    MPROC_LOG_WARNING = 30,
    MPROC_LOG_ERROR = 40,
    MPROC_LOG_CRITICAL = 50,
    MPROC_LOG_OFF = 1000, /* as a sink level: the sink takes nothing (file: not even opened) */
};

/* Longest record, newline included; longer messages are cut. */
#define MPROC_LOG_RECORD_MAX 16384
/* Longest line kept in the ring; longer ones are cut there (the sinks get them whole). */
#define MPROC_LOG_RING_LINE_MAX 1024

/* What an on_error callback sees. Pointers are valid during the call only. */
typedef struct mproc_log_record {
    int level;
    const char *level_name; /* "ERROR", ..., or "Level N" */
    struct timespec time;   /* CLOCK_REALTIME */
    const char *time_text;  /* ISO 8601, as in the line */
    const char *app;
    const char *process; /* mproc_current_name() of the logging process */
    pid_t pid;
    const char *file; /* basename */
    int line;
    const char *func;
    const char *message; /* the formatted message, raw (newlines not escaped), maybe cut */
    const char *text;    /* the whole text line, without its newline */
} mproc_log_record;

/* Zero value = default for every field. */
struct mproc_log_config {
    const char *app_name; /* default: program_invocation_short_name; no '/' */
    const char *author;   /* informational (kept for parity with the Python package) */
    bool verbose;         /* console INFO and file DEBUG instead of WARNING and INFO */
    const char *log_dir;  /* default $XDG_STATE_HOME/APP/log, else ~/.local/state/APP/log;
                             created with its parents */
    bool delete_existing; /* remove APP.log and its backups first */
    size_t max_bytes;     /* rotate when the file would pass this; default 100 MB;
                             SIZE_MAX: never rotate */
    int backup_count;     /* APP.log.1 ... APP.log.N kept; default 3; negative: none kept */
    int console_level;    /* 0: WARNING (INFO if verbose); MPROC_LOG_OFF: no console */
    int file_level;       /* 0: INFO (DEBUG if verbose); MPROC_LOG_OFF: no file */
    bool json;            /* the file gets one JSON object per line instead of text */
    /* Called for records at ERROR and above, after they are written, synchronously in the
     * process and thread that logged them (children started by fork inherit it; a program
     * started by exec does not). Records logged from inside the callback do not call it again. */
    void (*on_error)(const mproc_log_record *rec, void *arg);
    void *arg;
    size_t ring_lines; /* keep the last N text lines of the whole family in memory; 0: no ring */
};

/* Set up logging (NULL: all defaults) for this process and every process it starts afterwards,
 * and export MPROC_LOG_CONFIG for programs it execs. Calling it again replaces the set-up.
 * The set-up is also published in the family arena: a process of the family that did not
 * inherit it by fork (a forkserver child, one started earlier) adopts it at its next record.
 * A log directory or file that cannot be made falls back to console only, with one warning on
 * stderr, and still returns 0 (mproc_log_file_path() is then NULL).
 * Returns 0, -EINVAL (bad config: app name with '/', bad levels), -ENOMEM. */
int mproc_log_init(const mproc_log_config *cfg);

/* Join the log described by MPROC_LOG_CONFIG (set by an ancestor's mproc_log_init).
 * Returns 0, -ENOENT (not set) or -EINVAL (malformed). The file is not deleted even if the
 * ancestor asked for delete_existing; on_error is not inherited. */
int mproc_log_init_from_env(void);

/* Close the log file and return to the pre-init state (stderr at WARNING); unsets
 * MPROC_LOG_CONFIG. No other thread of this process may be logging meanwhile. */
void mproc_log_shutdown(void);

/* Path of the log file this process writes, or NULL when there is none. */
const char *mproc_log_file_path(void);

/* Whether a record at this level would go anywhere. */
bool mproc_log_enabled(int level);

/* "DEBUG" ... "CRITICAL"; other values: NULL. */
const char *mproc_log_level_name(int level);

/* The ring, oldest first: *lines is one malloc'd block (free() it) holding *n pointers to
 * NUL-terminated lines. 0 lines when there is no ring. Returns 0 or -EINVAL / -ENOMEM. */
int mproc_log_ring_get(char ***lines, size_t *n);

/* What the macros call. file may be a full path: its basename is recorded. */
void mproc_log_write(int level, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define MPROC_LOG(level, ...) mproc_log_write((level), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define MPROC_DEBUG(...) MPROC_LOG(MPROC_LOG_DEBUG, __VA_ARGS__)
#define MPROC_INFO(...) MPROC_LOG(MPROC_LOG_INFO, __VA_ARGS__)
#define MPROC_WARNING(...) MPROC_LOG(MPROC_LOG_WARNING, __VA_ARGS__)
#define MPROC_ERROR(...) MPROC_LOG(MPROC_LOG_ERROR, __VA_ARGS__)
#define MPROC_CRITICAL(...) MPROC_LOG(MPROC_LOG_CRITICAL, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
